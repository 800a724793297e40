"""Cascaded Group Attention (CGA) in local windows, from EfficientViT.

Paper: Liu et al., "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention", CVPR 2023
(https://arxiv.org/abs/2305.07027). Official code: microsoft/Cream, ``EfficientViT/downstream/efficientvit.py``.

Each head sees its own channel split of the input, plus the previous head's output (the cascade); queries get a
depthwise convolution; every head has a learned bias per relative offset (|dy|, |dx|) inside the window.

Faithful: ``CGA(c1, ...).attn`` has the state_dict of the official ``LocalWindowAttention(dim=c1, key_dim, num_heads,
attn_ratio=c1 / (key_dim * num_heads), resolution=window, window_resolution=window, kernels=[kernel] * num_heads)``
and gives the same outputs when both sides of the map are multiples of the window, and when both sides exceed the
window (the detection copy pads bottom/right with zeros, and the padded tokens take part in attention, as here).

Differs:

* Along an axis where the map is no larger than the window, the window shrinks to the map's size (2×2 at P5 of a
  64 px input; 3×7 windows for a 3×16 map), with the bias of the real offsets read from the same table. The
  official code pads such an axis up to the window with zero tokens (3×16 → 7×21), so outputs differ there, and
  it fails outright when both sides are below the window unless H = W = window. Here no zero rows dilute attention.
* The bias index is computed from the runtime window size (no cached ``ab`` attribute that ``.to()``/``.half()``
  would not move, no ``train()`` override); ``attention_bias_idxs`` stays as a buffer for checkpoint compatibility.
* Large windows use ``scaled_dot_product_attention`` with the bias as an additive mask (see ``attention.py``).

Fast path (default): padding once, every window of every image in one batch (no Python loop over windows), the
attention on channels-first tokens (scale and bias fused into one ``baddbmm``, no transposed copies), the offset
index cached per window size. Reference formulation (:class:`LocalWindowAttentionReference`, ``spec.reference``):
the official modules restated — the official window partition and token-major explicit attention per head, with the
window rule above — which the fast path is tested against (outputs and gradients, eval and train mode). The cascade
over heads is sequential by construction (head i needs head i-1's output) and stays a loop in both.

Export form (``torch.jit.trace``: ONNX, TorchScript, OpenVINO, CoreML, NCNN through pnnx; eval mode): the same math
with no tensor above 4-D and the batch axis never merged with another, as pnnx/NCNN need (NCNN has no batch axis and
at most 4-D blobs; the eager partition above is a 6-D permute). The 1×1 projections and the cascade run on the whole
padded map (they act per token, so windows do not matter); the queries' depthwise convolution runs on a map whose
windows are spread apart by ``kernel // 2`` zero rows and columns (each window then sees its own zero padding, as on
its own); only the attention itself runs on windows, laid out (B, windows, channels, tokens). Under
``torch.compile`` the eager form is compiled (the offset-index cache is skipped while Dynamo traces).

GPU path (profiled with ``scripts/profile_layers.py``): per forward, 9 convolutions (per head a 1×1 qkv and a
depthwise on q; the output projection), and per head one fused SDPA kernel (the bias as its additive mask,
converted to the scores' dtype once per forward) with two transposed copies (q; k and v together) — 33 operators
that launch kernels at batch 1, fused, whatever the level. Before, fp16 ran each head's attention in fp32 (three
casts in, one out: 53 operators with ``.half()``, more under autocast, where the host time of ~100 launches and 40
dtype copies was 2.5 ms for 0.19 ms of kernels at P5 on an H200); the fused kernels form the scores in fp32
themselves, so half precision needs no round trip on CUDA (the explicit forms on CPU still take it). The cascade
over heads is sequential by construction, so at batch 1 the layer stays launch-bound on a GPU; ``torch.compile``
(``mode="reduce-overhead"``: CUDA graphs) is what removes the launches. Memory: the scores are window-sized
(49×49 per window and head), so training memory is linear in tokens on every device.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import LayerArgumentError, check_divisible, check_int, check_odd_kernel
from .attention import _is_compiling, channels_first_attention, prepare_bias
from .conv_bn import ConvBN
from .registry import LayerTests, OfficialName, OfficialResidual, register_module

__all__ = ["CGA", "CascadedGroupAttention", "LocalWindowAttention", "CascadedGroupAttentionReference",
           "LocalWindowAttentionReference", "relative_offset_index"]


def _at_most(size, limit: int):
    """``min(size, limit)`` that also works on the traced sizes of ``torch.jit.trace`` (no Python branch)."""
    return size - (size - limit) * (size > limit)


def relative_offset_index(h: int, w: int, resolution: int, device=None) -> torch.Tensor:
    """Index into a (resolution²)-entry offset table for every token pair of an h×w window: (h·w, h·w) int64.

    The official table numbers offsets in order of first appearance while scanning token pairs row-major, which
    gives offset (|dy|, |dx|) the entry ``|dy| * resolution + |dx|``.
    """
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    dy = (ys[:, None] - ys[None, :]).abs()  # (h, h)
    dx = (xs[:, None] - xs[None, :]).abs()  # (w, w)
    idx = dy[:, None, :, None] * resolution + dx[None, :, None, :]  # (h, w, h, w)
    return idx.reshape(h * w, h * w)


_OFFSET_INDEX: dict[tuple, torch.Tensor] = {}  # (h, w, resolution, device) -> index: plain tensors only
_FAKE_OFFSET_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fake tensor mode -> its own dict


def _cached_offset_index(h: int, w: int, resolution: int, x: torch.Tensor) -> torch.Tensor:
    """:func:`relative_offset_index` for ``x``'s window, memoised per window size and device (read-only; not used
    while tracing; at most 64 sizes kept).

    Built outside inference mode: a cached index first made under ``torch.inference_mode()`` (predict, val) would
    be an inference tensor, which autograd refuses to save when the same process trains afterwards. An index made
    for a fake tensor (``FakeTensorMode``: shapes without data, as the benchmark's and tests' operator traces run
    the layer) is fake; it goes to that mode's own cache, never to the one real calls read (a real call that then
    indexed the biases with it would return a fake tensor).
    """
    mode = getattr(x, "fake_mode", None)
    cache = _OFFSET_INDEX if mode is None else _FAKE_OFFSET_INDEX.setdefault(mode, {})
    key = (h, w, resolution, x.device)
    idx = cache.get(key)
    if idx is None:
        with torch.inference_mode(False):
            idx = relative_offset_index(h, w, resolution, x.device)
        if len(cache) < 64 and (cache is not _OFFSET_INDEX or type(idx) is torch.Tensor):  # (a real input under
            cache[key] = idx  # an active fake mode gets a fake index: not kept)
    return idx


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention over a window of at most ``resolution``×``resolution`` tokens.

    Args:
        dim (int): Channels; split evenly over the heads.
        key_dim (int): Query/key channels per head.
        num_heads (int): Heads.
        attn_ratio (float): Value channels per head = ``int(attn_ratio * key_dim)``; must equal ``dim / num_heads``.
        resolution (int): Window side the bias table is sized for.
        kernels (list[int]): Depthwise kernel on the queries of each head.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int, kernels):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(round(attn_ratio * key_dim))
        self.attn_ratio = attn_ratio
        self.resolution = resolution
        if self.d * num_heads != dim:
            raise LayerArgumentError(
                f"CascadedGroupAttention: value channels per head ({self.d}) times num_heads ({num_heads}) must "
                f"equal dim ({dim}) for the cascade; set attn_ratio = dim / (key_dim * num_heads)."
            )
        self.qkvs = nn.ModuleList(ConvBN(dim // num_heads, 2 * key_dim + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(ConvBN(key_dim, key_dim, k, 1, k // 2, g=key_dim) for k in kernels)
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.d * num_heads, dim, bn_weight_init=0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_offset_index(resolution, resolution, resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape  # one window per batch entry, H, W <= resolution
        if torch.jit.is_tracing() or _is_compiling():
            idx = relative_offset_index(H, W, self.resolution, x.device)
        else:
            idx = _cached_offset_index(H, W, self.resolution, x)
        bias = self.attention_biases[:, idx]  # (heads, N, N)
        chunks = x.chunk(self.num_heads, dim=1)  # heads × (B, C/heads, H, W)
        outs = []
        feat = chunks[0]
        for i, (qkv, dw) in enumerate(zip(self.qkvs, self.dws)):
            if i > 0:  # cascade: this head's split plus the previous head's output
                feat = feat + chunks[i]
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q, k, v = dw(q).flatten(2), k.flatten(2), v.flatten(2)  # (B, key_dim | d, N)
            if i == 0:  # the bias in the scores' dtype once, not once per head (autocast: fp16 q, fp32 table)
                bias = prepare_bias(bias, q, k, v, fp32_scores=True)
            # channels-first tokens in and out (the explicit form inside textbook() and traced). Scores
            # of fp16 inputs in float32: the logits of large activations overflow fp16 (|q·k| > 65504 gave inf,
            # then NaN after softmax, for inputs ×100); CUDA's fused kernels form them in float32 anyway.
            feat = channels_first_attention(q, k, v, self.scale, bias[i], fp32_scores=True).reshape(B, self.d, H, W)
            outs.append(feat)
        return self.proj(torch.cat(outs, dim=1))


class LocalWindowAttention(nn.Module):
    """Split B×C×H×W into windows (padding bottom/right with zeros), run :class:`CascadedGroupAttention` on each.

    Args are those of the official module; ``resolution`` is unused beyond being recorded, as there.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int = 8, attn_ratio: float = 4, resolution: int = 14,
                 window_resolution: int = 7, kernels=(5, 5, 5, 5)):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.resolution = resolution
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, attn_ratio, window_resolution, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() and not self.training:
            return self.forward_export(x)
        B, C, H, W = x.shape
        wh = _at_most(H, self.window_resolution)  # window height: the map's own height when it is smaller
        ww = _at_most(W, self.window_resolution)
        pad_b = (wh - H % wh) % wh
        pad_r = (ww - W % ww) % ww
        if pad_b or pad_r:  # F.pad copies even when there is nothing to pad
            x = F.pad(x, (0, pad_r, 0, pad_b))  # (B, C, pH, pW)
        pH, pW = H + pad_b, W + pad_r
        nH, nW = pH // wh, pW // ww
        # window partition: B C (nH wh) (nW ww) -> (B nH nW) C wh ww
        x = x.view(B, C, nH, wh, nW, ww).permute(0, 2, 4, 1, 3, 5).reshape(B * nH * nW, C, wh, ww)
        x = self.attn(x)
        # window reverse: (B nH nW) C wh ww -> B C (nH wh) (nW ww)
        x = x.view(B, nH, nW, C, wh, ww).permute(0, 3, 1, 4, 2, 5).reshape(B, C, pH, pW)
        return x[:, :, :H, :W]

    def forward_export(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode forward with tensors of at most 4 dimensions, batch kept apart (see the module docstring)."""
        cga = self.attn
        B, C, H, W = x.shape
        wh = _at_most(H, self.window_resolution)
        ww = _at_most(W, self.window_resolution)
        x = F.pad(x, (0, (ww - W % ww) % ww, 0, (wh - H % wh) % wh))  # (B, C, pH, pW)
        grid = (B, x.shape[2] // wh, x.shape[3] // ww, wh, ww)
        bias = cga.attention_biases[:, relative_offset_index(wh, ww, cga.resolution, x.device)]  # (heads, N, N)
        chunks = x.chunk(cga.num_heads, dim=1)
        outs = []
        feat = chunks[0]
        for i, (qkv, dw) in enumerate(zip(cga.qkvs, cga.dws)):
            if i > 0:
                feat = feat + chunks[i]
            q, k, v = qkv(feat).split([cga.key_dim, cga.key_dim, cga.d], dim=1)
            q, k, v = (_windows(t, grid) for t in (_windowed_conv(dw, q, grid), k, v))  # (B, nWin, c, N)
            attn = ((q.transpose(2, 3) @ k) * cga.scale + bias[i]).softmax(dim=-1)  # (B, nWin, N, N)
            feat = _unwindows(v @ attn.transpose(2, 3), grid)  # (B, d, pH, pW)
            outs.append(feat)
        return cga.proj(torch.cat(outs, dim=1))[:, :, :H, :W]


def _windows(x: torch.Tensor, grid) -> torch.Tensor:
    """(B, c, nH·wh, nW·ww) -> (B, nH·nW, c, wh·ww), windows row-major, through 4-D reshapes/permutes only."""
    B, nH, nW, wh, ww = grid
    c = x.shape[1]
    x = x.reshape(B, c * nH * wh, nW, ww).permute(0, 2, 1, 3)  # (B, nW, c·nH·wh, ww)
    x = x.reshape(B, nW * c, nH, wh * ww).permute(0, 2, 1, 3)  # (B, nH, nW·c, N)
    return x.reshape(B, nH * nW, c, wh * ww)


def _unwindows(x: torch.Tensor, grid) -> torch.Tensor:
    """Inverse of :func:`_windows`: (B, nH·nW, c, wh·ww) -> (B, c, nH·wh, nW·ww)."""
    B, nH, nW, wh, ww = grid
    c = x.shape[2]
    x = x.reshape(B, nH, nW * c, wh * ww).permute(0, 2, 1, 3)  # (B, nW·c, nH, N)
    x = x.reshape(B, nW, c * nH * wh, ww).permute(0, 2, 1, 3)  # (B, c·nH·wh, nW, ww)
    return x.reshape(B, c, nH * wh, nW * ww)


def _windowed_conv(conv: nn.Module, x: torch.Tensor, grid) -> torch.Tensor:
    """``conv`` (stride 1, 'same' padding p) applied to every window of ``x`` (B, c, nH·wh, nW·ww) on its own.

    The windows are spread apart by 2p zero rows/columns (4-D reshapes and pads), so the convolution of the whole
    spread map sees, around each window, exactly the zero padding it would see alone; then the gaps are cut away.
    """
    B, nH, nW, wh, ww = grid
    c = x.shape[1]
    p = (conv.c if isinstance(conv, ConvBN) else conv).padding[0]
    x = F.pad(x.reshape(B, c * nH, wh, nW * ww), (0, 0, p, p))  # rows: (B, c·nH, wh + 2p, nW·ww)
    x = F.pad(x.reshape(B, c * nH * (wh + 2 * p), nW, ww), (p, p))  # columns: (..., nW, ww + 2p)
    x = conv(x.reshape(B, c, nH * (wh + 2 * p), nW * (ww + 2 * p)))
    x = x.reshape(B, c * nH * (wh + 2 * p), nW, ww + 2 * p)[..., p:p + ww]
    x = x.reshape(B, c * nH, wh + 2 * p, nW * ww)[:, :, p:p + wh]
    return x.reshape(B, c, nH * wh, nW * ww)


class CGA(nn.Module):
    """Residual cascaded group attention block: ``x + attn(x)``; output channels = input channels.

    At initialisation the output projection's BatchNorm scale is 0, so the block is the identity until trained.

    Args:
        c1 (int): Input channels (filled in from the model YAML); divisible by ``num_heads``.
        num_heads (int): Heads; each gets ``c1 / num_heads`` channels.
        key_dim (int): Query/key channels per head.
        window (int): Window side (tokens); maps are padded to multiples of it.
        kernel (int): Depthwise kernel on the queries.

    YAML row: ``[-1, 1, CGA, [4, 16, 7, 5]]`` (num_heads, key_dim, window, kernel; all optional)

    Examples:
        >>> m = CGA(64)
        >>> m(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(self, c1: int, num_heads: int = 4, key_dim: int = 16, window: int = 7, kernel: int = 5):
        super().__init__()
        c1 = check_int("CGA", "c1 (input channels)", c1)
        num_heads = check_int("CGA", "num_heads", num_heads, high=c1)
        key_dim = check_int("CGA", "key_dim", key_dim, high=1024)
        window = check_int("CGA", "window", window, high=32)  # bias index buffer is window⁴ int64 entries
        kernel = check_odd_kernel("CGA", "kernel", kernel)
        check_divisible("CGA", c1, "num_heads", num_heads)
        self.attn = LocalWindowAttention(
            c1,
            key_dim,
            num_heads,
            attn_ratio=c1 / (key_dim * num_heads),
            resolution=window,
            window_resolution=window,
            kernels=[kernel] * num_heads,
        )

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included (read from the modules, so checkpoints of any release show them)."""
        lwa, cga = self.attn, self.attn.attn
        dw = cga.dws[0]
        kernel = (dw.c if isinstance(dw, ConvBN) else dw).kernel_size[0]
        return (f"c1={lwa.dim}, num_heads={lwa.num_heads}, key_dim={cga.key_dim}, window={lwa.window_resolution}, "
                f"kernel={kernel}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The attention weights of each query cell (row, column) over its window, mean over the cascaded heads,
        placed on the H×W map (zero outside the window). x: (1, C, H, W)."""
        H, W = x.shape[-2:]
        weights: list = []
        _cga_reference(self).attn(x, maps=weights)  # per head: (windows, n, n), windows row-major
        lwa = self.attn
        wh, ww = min(H, lwa.window_resolution), min(W, lwa.window_resolution)
        n_cols = -(-W // ww)
        out = []
        for r, c in cells:
            i, j = r // wh, c // ww  # the query's window
            row = torch.stack([w[i * n_cols + j, (r - i * wh) * ww + (c - j * ww)] for w in weights]).mean(0)
            full = x.new_zeros(-(-H // wh) * wh, n_cols * ww)
            full[i * wh:(i + 1) * wh, j * ww:(j + 1) * ww] = row.view(wh, ww)
            out.append(full[:H, :W])
        return out


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official modules restated
# ----------------------------------------------------------------------------------------------------------------------
class CascadedGroupAttentionReference(nn.Module):
    """The official ``CascadedGroupAttention`` restated: same attribute names (so its state_dict loads strictly), the
    official forward written plainly (token-major, explicit attention matrix) over one window of at most
    ``resolution``² tokens, with the bias of its real offsets. ``forward(x, maps=list)`` appends each head's
    attention weights (B, N_query, N_key).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int = 8, attn_ratio: float = 4, resolution: int = 14,
                 kernels=(5, 5, 5, 5)):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.attn_ratio = attn_ratio
        self.resolution = resolution
        self.qkvs = nn.ModuleList(ConvBN(dim // num_heads, key_dim * 2 + self.d) for _ in range(num_heads))
        self.dws = nn.ModuleList(ConvBN(key_dim, key_dim, k, 1, k // 2, g=key_dim) for k in kernels[:num_heads])
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.d * num_heads, dim, bn_weight_init=0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_offset_index(resolution, resolution, resolution))

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        B, C, H, W = x.shape  # one window
        bias = self.attention_biases[:, relative_offset_index(H, W, self.resolution, x.device)]  # (heads, N, N)
        splits = x.chunk(len(self.qkvs), dim=1)
        feats = []
        feat = splits[0]
        for i, qkv in enumerate(self.qkvs):
            if i > 0:  # the cascade: this head's split plus the previous head's output
                feat = feat + splits[i]
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.d], dim=1)
            q = self.dws[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B, c, N)
            attn = (q.transpose(-2, -1) @ k) * self.scale + bias[i]  # (B, N, N)
            attn = attn.softmax(dim=-1)
            if maps is not None:
                maps.append(attn)
            feat = (v @ attn.transpose(-2, -1)).view(B, self.d, H, W)
            feats.append(feat)
        return self.proj(torch.cat(feats, dim=1))


class LocalWindowAttentionReference(nn.Module):
    """The official ``LocalWindowAttention`` restated: same attribute names, the windows of all images as one batch
    (as there: train-mode BatchNorm statistics are over all windows). The map is padded with zeros bottom/right to
    whole windows (the padded tokens take part in attention, as in the official detection copy), except along an
    axis no larger than the window, where the window is the map's own size (see the module docstring; the official
    module pads it up, and fails when both sides are below the window)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int = 8, attn_ratio: float = 4, resolution: int = 14,
                 window_resolution: int = 7, kernels=(5, 5, 5, 5)):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.resolution = resolution
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttentionReference(dim, key_dim, num_heads, attn_ratio, window_resolution, kernels)

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        wh, ww = min(H, self.window_resolution), min(W, self.window_resolution)
        x = F.pad(x, (0, -W % ww, 0, -H % wh))  # zeros bottom/right, to whole windows
        pH, pW = x.shape[2:]
        nH, nW = pH // wh, pW // ww
        # window partition, as the official module: B C (nH wh) (nW ww) -> (B nH nW) C wh ww
        x = x.view(B, C, nH, wh, nW, ww).permute(0, 2, 4, 1, 3, 5).reshape(B * nH * nW, C, wh, ww)
        x = self.attn(x, maps)  # every window of every image as one batch
        x = x.view(B, nH, nW, C, wh, ww).permute(0, 3, 1, 4, 2, 5).reshape(B, C, pH, pW)  # window reverse
        return x[:, :, :H, :W]


def _cga_reference(layer: CGA) -> OfficialResidual:
    """``spec.reference``: ``x + LocalWindowAttentionReference(x)`` with ``layer``'s weights."""
    return _official_cga_module(LocalWindowAttentionReference, layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _cga_plausible(c1: int, kw: dict) -> str | None:
    width = c1 // kw["num_heads"]
    if width < 4:
        return f"num_heads={kw['num_heads']} gives heads of {c1 / kw['num_heads']:g} channels (fewer than 4)"
    return None


def _official_cga(given: dict, window_key: str) -> dict:
    """``CascadedGroupAttention``/``LocalWindowAttention`` arguments (official names) as CGA's."""
    ours = {k: given[k] for k in ("key_dim", "num_heads") if k in given}
    if window_key in given:
        ours["window"] = given[window_key]
    if "kernels" in given:
        kernels = given["kernels"]
        kernels = list(kernels) if isinstance(kernels, (list, tuple)) else [kernels]
        if len(set(kernels)) != 1:
            raise LayerArgumentError(
                f"kernels={kernels}: CGA uses one query kernel for every head; write a single size, e.g. [{kernels[0]}]."
            )
        ours["kernel"] = kernels[0]
    if "attn_ratio" in given:
        dim, ratio = given.get("dim"), given["attn_ratio"]
        heads, key_dim = given.get("num_heads", 8), given.get("key_dim", 16)
        if dim is None or abs(ratio * key_dim * heads - dim) > 1e-6:
            raise LayerArgumentError(
                f"attn_ratio={ratio}: CGA sets each head's value channels to c1 / num_heads (the cascade needs "
                f"attn_ratio * key_dim * num_heads = dim), and attn_ratio={ratio} with key_dim={key_dim}, "
                f"num_heads={heads} does not give dim={dim}; leave attn_ratio out."
            )
    return ours


def _official_lwa(ns, layer: CGA) -> OfficialResidual:
    """``x + LocalWindowAttention(x)``: the official module (class from the namespace ``ns``) with ``layer``'s weights
    (``official_module``: ``yolo-attn bench --official``)."""
    return _official_cga_module(ns.LocalWindowAttention, layer)


def _official_cga_module(cls: type, layer: CGA) -> OfficialResidual:
    """``x + cls(x)`` with ``layer``'s weights, ``cls`` taking the official ``LocalWindowAttention`` arguments."""
    lwa, cga = layer.attn, layer.attn.attn
    return OfficialResidual(cls(
        dim=lwa.dim, key_dim=cga.key_dim, num_heads=cga.num_heads,
        attn_ratio=lwa.dim / (cga.key_dim * cga.num_heads), resolution=lwa.window_resolution,
        window_resolution=lwa.window_resolution, kernels=[dw.c.kernel_size[0] for dw in cga.dws]), lwa)


_CGA_PARAMS = ("dim", "key_dim", "num_heads", "attn_ratio", "resolution")
register_module(
    CGA,
    pickled=(LocalWindowAttention, CascadedGroupAttention, ConvBN),
    official={
        # resolution: CascadedGroupAttention attends over a resolution × resolution map (our window);
        # LocalWindowAttention windows at window_resolution and does not use resolution for the attention.
        "CascadedGroupAttention": OfficialName((*_CGA_PARAMS, "kernels"), lambda g: _official_cga(g, "resolution")),
        "LocalWindowAttention": OfficialName((*_CGA_PARAMS, "window_resolution", "kernels"),
                                             lambda g: _official_cga(g, "window_resolution")),
    },
    defaults=lambda grid: [4, 16, 7, 5],
    plausible=_cga_plausible,
    summary="Cascaded Group Attention in local windows (residual)",
    paper="EfficientViT, CVPR 2023",
    official_code="microsoft/Cream `EfficientViT/downstream/efficientvit.py` `LocalWindowAttention`",
    reference=_cga_reference,
    official_module=_official_lwa,
    maps_caption="window attention of the query point, mean over heads",
    tests=LayerTests(
        small=lambda: CGA(16, num_heads=2, key_dim=8, window=7, kernel=3),
        sizes=((15, 17), (7, 7), (3, 5)),  # several windows with padding, one window, one smaller than the window
        trace=((14, 14), ((21, 28), (7, 7), (10, 16), (3, 5))),
        int_args={"c1": 16, "num_heads": 2, "key_dim": 8, "window": 7, "kernel": 3},
        bad_args=(({"c1": 30, "num_heads": 4}, "num_heads"), ({"c1": 6, "num_heads": 4}, "num_heads"),
                  ({"c1": 16, "num_heads": 2, "kernel": 4}, "kernel"), ({"c1": 16, "num_heads": 2, "kernel": 2},
                                                                        "kernel")),
        folds=5,  # 2 heads × (qkv, dw) Conv+BN and the output projection
        scale_robust=False,  # nothing normalises the input before the softmax: ×100 inputs saturate it
    ),
    order=10,
    builtin=True,
)
