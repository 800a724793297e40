"""Independent restatements of the four official attention modules, used as test oracles.

Each class below is written from the math of the official code (not copied), and keeps *exactly* the official
attribute names, so that ``state_dict()`` keys, shapes and dtypes match the official modules key for key. That lets a
test randomise a reference, load its weights into the project's layer with ``strict=True`` and compare outputs.

Sources (read at the pinned mirror commits):

* EfficientViT, detection copy: ``microsoft/Cream: EfficientViT/downstream/efficientvit.py`` ->
  ``Conv2d_BN``, ``CascadedGroupAttention``, ``LocalWindowAttention``.
* LSKA: ``StevenLauHKHK/Large-Separable-Kernel-Attention: models/van.py`` -> ``LSKA``.
* FLatten: ``LeapLabTHU/FLatten-Transformer: models/flatten_swin.py`` -> ``FocusedLinearAttention``.
* SHViT: ``ysj9909/SHViT: model/shvit.py`` -> ``SHSA`` (and its ``Conv2d_BN`` / ``GroupNorm``).

Deliberate differences from the official code, none of which changes a number or a state_dict key:

* ``CascadedGroupAttention`` gathers its relative-position bias in every forward instead of caching it as ``self.ab``
  in ``train(False)`` (the official ``train`` override also returns ``None``; the inherited one here returns ``self``).
* ``FocusedLinearAttention`` does not print in ``__init__`` and has no ``eval()`` override (the official one prints
  ``'eval'`` and returns ``None``).
* The official constructors' unused ``resolution`` argument of ``Conv2d_BN`` is accepted and ignored, as there.

Behaviours of the official code kept on purpose (the tests only use it where it is defined):

* ``LocalWindowAttention`` runs the attention directly when ``H <= window`` and ``W <= window``; the bias table is
  ``window**2 x window**2``, so that path only works at exactly ``window x window`` (anything smaller fails to
  broadcast in the official code, and here too). Otherwise it zero-pads bottom/right to window multiples; the padded
  zeros are real tokens inside the attention of the border windows, and are cropped away afterwards.
* ``FocusedLinearAttention`` assumes a square token grid ``H = W = int(sqrt(N))`` for its depthwise conv.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Conv2d_BN",
    "CascadedGroupAttention",
    "LocalWindowAttention",
    "LSKA",
    "FocusedLinearAttention",
    "focused_linear_attention",
    "SHSA",
    "relative_offset_index",
]


# ----------------------------------------------------------------------------------------------------------------------
# Shared: convolution (no bias) followed by BatchNorm, children named ``c`` and ``bn``.
# ----------------------------------------------------------------------------------------------------------------------
class Conv2d_BN(nn.Sequential):
    """``Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False)`` then ``BatchNorm2d(b)``.

    BatchNorm scale starts at ``bn_weight_init`` and shift at 0, as in EfficientViT / SHViT.
    """

    def __init__(self, a, b, ks=1, stride=1, pad=0, dilation=1, groups=1, bn_weight_init=1, resolution=-10000):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)


# ----------------------------------------------------------------------------------------------------------------------
# 1. EfficientViT: cascaded group attention inside a local-window wrapper.
# ----------------------------------------------------------------------------------------------------------------------
def relative_offset_index(resolution: int) -> torch.Tensor:
    """``(R*R, R*R)`` int64 table: for flattened (row-major) positions i=(yi, xi), j=(yj, xj) of an R x R window, the
    column of ``attention_biases`` to use.

    The official code numbers the distinct offsets ``(|dy|, |dx|)`` in the order it first meets them while looping
    over all position pairs; the first query position (0, 0) already meets every offset, in row-major order, so offset
    ``(a, b)`` gets the number ``a * R + b``.
    """
    ys, xs = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    return (dy * resolution + dx).to(torch.int64)


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention over one ``resolution x resolution`` window (input B x dim x H x W, H*W == R*R).

    The channels are cut into ``num_heads`` equal groups. Head i sees its own group plus the output of head i-1
    (cascade). Per head: a 1x1 Conv-BN gives q (key_dim), k (key_dim), v (d = int(attn_ratio * key_dim)); q goes
    through a depthwise kxk Conv-BN; attention = softmax(q^T k * key_dim^-0.5 + bias_i) where ``bias_i`` is a
    learned scalar per (|dy|, |dx|) offset; output v @ attn^T. The head outputs are concatenated, passed through
    ReLU and a 1x1 Conv-BN back to ``dim`` channels.
    """

    def __init__(self, dim, key_dim, num_heads=8, attn_ratio=4, resolution=14, kernels=(5, 5, 5, 5)):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)  # same float arithmetic as the official code
        self.attn_ratio = attn_ratio

        group = dim // num_heads
        self.qkvs = nn.ModuleList(Conv2d_BN(group, 2 * key_dim + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(
            Conv2d_BN(key_dim, key_dim, kernels[i], 1, kernels[i] // 2, groups=key_dim) for i in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.d * num_heads, dim, bn_weight_init=0))

        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_offset_index(resolution))  # persistent

    def forward(self, x):
        B, C, H, W = x.shape
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, N, N)
        groups = x.chunk(self.num_heads, dim=1)
        outs = []
        carry = None
        for i in range(self.num_heads):
            inp = groups[i] if carry is None else groups[i] + carry
            qkv = self.qkvs[i](inp)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q = q.reshape(B, self.key_dim, H * W)
            k = k.reshape(B, self.key_dim, H * W)
            v = v.reshape(B, self.d, H * W)
            logits = torch.einsum("bcn,bcm->bnm", q, k) * self.scale + bias[i]
            weights = logits.softmax(dim=-1)  # (B, N_query, N_key)
            carry = torch.einsum("bcm,bnm->bcn", v, weights).reshape(B, self.d, H, W)
            outs.append(carry)
        return self.proj(torch.cat(outs, dim=1))


class LocalWindowAttention(nn.Module):
    """Windowed wrapper of :class:`CascadedGroupAttention` (the detection copy of EfficientViT)."""

    def __init__(self, dim, key_dim, num_heads=8, attn_ratio=4, resolution=14, window_resolution=7,
                 kernels=(5, 5, 5, 5)):
        super().__init__()
        assert window_resolution > 0
        self.dim = dim
        self.num_heads = num_heads
        self.resolution = resolution
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttention(
            dim, key_dim, num_heads, attn_ratio=attn_ratio, resolution=window_resolution, kernels=kernels
        )

    def forward(self, x):
        B, C, H, W = x.shape
        w = self.window_resolution
        if H <= w and W <= w:
            return self.attn(x)  # only defined at exactly w x w (see module docstring)
        pad_b = (-H) % w
        pad_r = (-W) % w
        x = F.pad(x, (0, pad_r, 0, pad_b))  # zeros bottom/right; they take part in attention
        pH, pW = H + pad_b, W + pad_r
        nH, nW = pH // w, pW // w
        # B C (nH w) (nW w) -> (B nH nW) C w w
        win = x.reshape(B, C, nH, w, nW, w).permute(0, 2, 4, 1, 3, 5).reshape(B * nH * nW, C, w, w)
        win = self.attn(win)
        # (B nH nW) C w w -> B C (nH w) (nW w)
        y = win.reshape(B, nH, nW, C, w, w).permute(0, 3, 1, 4, 2, 5).reshape(B, C, pH, pW)
        return y[:, :, :H, :W].contiguous()


# ----------------------------------------------------------------------------------------------------------------------
# 2. LSKA: large separable kernel attention (gating).
# ----------------------------------------------------------------------------------------------------------------------
# k_size -> (local depthwise kernel, dilated depthwise kernel, dilation)
LSKA_GEOMETRY = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}


class LSKA(nn.Module):
    """x * conv1(dilated_v(dilated_h(local_v(local_h(x))))) with depthwise 1-D convolutions, 'same' padding."""

    def __init__(self, dim, k_size):
        super().__init__()
        self.k_size = k_size
        k0, k1, dil = LSKA_GEOMETRY[k_size]  # KeyError for other sizes (the official leaves the convs undefined)
        p0 = (k0 - 1) // 2
        p1 = (k1 - 1) // 2 * dil
        self.conv0h = nn.Conv2d(dim, dim, (1, k0), padding=(0, p0), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, (k0, 1), padding=(p0, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(dim, dim, (1, k1), padding=(0, p1), groups=dim, dilation=dil)
        self.conv_spatial_v = nn.Conv2d(dim, dim, (k1, 1), padding=(p1, 0), groups=dim, dilation=dil)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        a = self.conv0v(self.conv0h(x))
        a = self.conv_spatial_v(self.conv_spatial_h(a))
        return x * self.conv1(a)


# ----------------------------------------------------------------------------------------------------------------------
# 3. FLatten: focused linear attention on tokens (B, N, C).
# ----------------------------------------------------------------------------------------------------------------------
def focused_linear_attention(m: "FocusedLinearAttention", x: torch.Tensor, H: int, W: int,
                             pos: torch.Tensor) -> torch.Tensor:
    """The token math of ``FocusedLinearAttention.forward`` for tokens laid out row-major on an H x W grid.

    ``pos`` is the positional encoding added to the keys, shape (1, H*W, C). The official forward is this function
    with ``pos = m.positional_encoding`` and ``H = W = int(sqrt(N))``.
    """
    B, N, C = x.shape
    heads = m.num_heads
    q, k, v = m.qkv(x).reshape(B, N, 3, C).unbind(2)
    k = k + pos
    s = F.softplus(m.scale)  # (1, 1, C)
    q = (F.relu(q) + 1e-6) / s
    k = (F.relu(k) + 1e-6) / s

    def focus(t):  # raise to the focusing power elementwise, keep the original L2 norm over channels
        n = t.norm(dim=-1, keepdim=True)
        tp = t**m.focusing_factor
        return tp / tp.norm(dim=-1, keepdim=True) * n

    q, k = focus(q), focus(k)

    def heads_first(t):  # (B, N, C) -> (B, heads, N, C/heads)
        return t.reshape(B, N, heads, C // heads).transpose(1, 2)

    q, k, v = heads_first(q), heads_first(k), heads_first(v)
    z = 1.0 / (q @ k.mean(dim=2, keepdim=True).transpose(-2, -1) + 1e-6)  # (B, h, N, 1)
    kv = (k.transpose(-2, -1) * N**-0.5) @ (v * N**-0.5)  # (B, h, d, d)
    out = (q @ kv) * z  # (B, h, N, d)
    out = out.transpose(1, 2).reshape(B, N, C)

    # depthwise conv over v on the H x W grid, one conv shared by all heads
    vmap = v.reshape(B * heads, H, W, C // heads).permute(0, 3, 1, 2)
    local = m.dwc(vmap).reshape(B, C, N).transpose(1, 2)  # channel index = head * d + j, as in ``out``
    out = out + local
    return m.proj_drop(m.proj(out))


class FocusedLinearAttention(nn.Module):
    """Focused linear attention over one window of ``window_size[0] * window_size[1]`` tokens."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                 focusing_factor=3, kernel_size=5):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.focusing_factor = focusing_factor
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)  # defined but unused, as in the official code
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(dim=-1)  # unused, as in the official code
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.positional_encoding = nn.Parameter(torch.zeros(1, window_size[0] * window_size[1], dim))

    def forward(self, x, mask=None):  # mask is ignored, as in the official code
        N = x.shape[1]
        side = int(N**0.5)
        return focused_linear_attention(self, x, side, side, self.positional_encoding)


# ----------------------------------------------------------------------------------------------------------------------
# 4. SHViT: single-head self-attention on the first ``pdim`` channels.
# ----------------------------------------------------------------------------------------------------------------------
class SHSA(nn.Module):
    """Attention on channels [:pdim] (after a 1-group GroupNorm), channels [pdim:] pass through; then ReLU and a
    1x1 Conv-BN over all ``dim`` channels."""

    def __init__(self, dim, qk_dim, pdim):
        super().__init__()
        self.scale = qk_dim**-0.5
        self.qk_dim = qk_dim
        self.dim = dim
        self.pdim = pdim
        self.pre_norm = nn.GroupNorm(1, pdim)
        self.qkv = Conv2d_BN(pdim, 2 * qk_dim + pdim)
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(dim, dim, bn_weight_init=0))

    def forward(self, x):
        B, C, H, W = x.shape
        x1, x2 = x[:, : self.pdim], x[:, self.pdim :]
        q, k, v = self.qkv(self.pre_norm(x1)).flatten(2).split([self.qk_dim, self.qk_dim, self.pdim], dim=1)
        attn = (torch.einsum("bcn,bcm->bnm", q, k) * self.scale).softmax(dim=-1)
        x1 = torch.einsum("bcm,bnm->bcn", v, attn).reshape(B, self.pdim, H, W)
        return self.proj(torch.cat([x1, x2], dim=1))
