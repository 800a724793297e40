"""Single-Head Self-Attention (SHSA), from SHViT.

Paper: Yun & Ro, "SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design", CVPR 2024
(https://arxiv.org/abs/2401.16456). Official code: ysj9909/SHViT, ``model/shvit.py`` (class ``SHSA``).

One attention head over the first ``pdim`` channels only (GroupNorm(1) first, queries/keys of ``qk_dim`` channels,
global softmax attention over all H·W tokens); the other channels pass through untouched; both parts are mixed by
ReLU + 1×1 Conv+BN whose BatchNorm scale starts at 0, so the branch outputs exactly 0 at initialisation.

Faithful: ``SHSA(c1, ...).attn`` has the official ``SHSA(dim=c1, qk_dim, pdim)`` state_dict and outputs, at any H×W.

Differs: the residual (in SHViT it lives in the enclosing block) is part of this layer; attention over many tokens
runs through ``scaled_dot_product_attention`` (see ``attention.py``): at P3 of a 640 input that is 6,400 tokens,
whose explicit score matrix would take 164 MB per image in fp32. Small maps use the explicit form on channels-first
tokens (no transposed copies). Reference formulation (:class:`SHSAReference`, ``spec.reference``): the official
module restated, with its explicit N×N attention matrix, which the fast path is tested against;
``yolo_attn.layers.fuse_layers`` folds both Conv+BN pairs and the GroupNorm affine into the 1×1 convolutions;
traced (export), the GroupNorm left without affine is written with unit scale and zero shift, which pnnx/NCNN accept.

Memory bound: on CUDA the attention is always SDPA with 4-D inputs, so a fused kernel runs and no N×N score matrix is
held, in training either (memory linear in tokens: the 4-D call took 0.21 GB for the layer at P3 of YOLOv8n, batch
16, on an H200, against 10.1 GB for the 3-D call this package made before, which CUDA ran in its math kernel). On
CPU a score matrix is held only within ``CPU_GRAD_EXPLICIT_MAX_BYTES`` (training) or ``CHUNK_BYTES`` per problem
(inference); see ``attention.py``.

GPU path (profiled with ``scripts/profile_layers.py``): one forward is 8 operators that launch kernels (fused, batch
1, at every YOLOv8n level; was 10–11 with the 3-D call): two 1×1 convolutions, the GroupNorm, one transposed copy of
q, k and v together (``attention.token_major``), the fused attention kernel, concat, ReLU, residual add. At batch 1
the layer is launch-bound on a GPU (0.54 ms of host time for 0.05 ms of kernels at P5, H200, before these changes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import LayerArgumentError, check_int
from .attention import channels_first_attention
from .conv_bn import ConvBN
from .registry import LayerTests, OfficialName, OfficialResidual, register_module

__all__ = ["SHSA", "SingleHeadSelfAttention", "SHSAReference"]


class SingleHeadSelfAttention(nn.Module):
    """The official ``SHSA(dim, qk_dim, pdim)`` token mixer (no residual)."""

    def __init__(self, dim: int, qk_dim: int, pdim: int):
        super().__init__()
        self.scale = qk_dim**-0.5
        self.qk_dim = qk_dim
        self.dim = dim
        self.pdim = pdim
        self.pre_norm = nn.GroupNorm(1, pdim)
        self.qkv = ConvBN(pdim, qk_dim * 2 + pdim)
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(dim, dim, bn_weight_init=0))

    @torch.no_grad()
    def fold_norm(self) -> int:
        """Fold the GroupNorm's affine into the (already BatchNorm-fused) qkv 1×1 convolution; returns 1 if done.

        ``conv(γ ⊙ n + β) = (W · diag γ) n + (W β + b)``: exact for a 1×1 convolution (no padding). Called by
        :func:`yolo_attn.layers.fuse_layers` after the ConvBN blocks are fused; a no-op before or when done.
        """
        conv, norm = self.qkv, self.pre_norm
        if not (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and norm.affine and conv.groups == 1):
            return 0
        w = conv.weight  # (out, pdim, 1, 1)
        bias = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True, device=w.device, dtype=w.dtype)
        fused.weight.copy_(w * norm.weight.view(1, -1, 1, 1))
        fused.bias.copy_(bias + w[:, :, 0, 0] @ norm.bias)
        self.qkv = fused.requires_grad_(False)
        self.pre_norm = nn.GroupNorm(1, self.pdim, eps=norm.eps, affine=False)
        return 1

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """``pre_norm``; under ``torch.jit.trace`` an affine-free GroupNorm (left by ``fold_norm``) is written with
        unit scale and zero shift, since pnnx cannot rebuild a GroupNorm without its affine parameters."""
        norm = self.pre_norm
        if norm.affine or not torch.jit.is_tracing():
            return norm(x)
        ones = torch.ones(norm.num_channels, dtype=x.dtype, device=x.device)
        return F.group_norm(x, norm.num_groups, ones, torch.zeros_like(ones), norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        x1, x2 = x.split([self.pdim, self.dim - self.pdim], dim=1)  # attended | passed through
        q, k, v = self.qkv(self._norm(x1)).flatten(2).split([self.qk_dim, self.qk_dim, self.pdim], dim=1)
        x1 = channels_first_attention(q, k, v, self.scale)  # (B, pdim, N); textbook: explicit N×N matrix
        return self.proj(torch.cat([x1.reshape(B, self.pdim, H, W), x2], dim=1))


class SHSA(nn.Module):
    """Residual single-head self-attention block: ``x + attn(x)``; output channels = input channels.

    Args:
        c1 (int): Input channels (filled in from the model YAML).
        qk_dim (int): Query/key channels.
        pdim (int | None): Channels that take part in attention, 1..c1; default ``max(c1 // 4, 1)``.

    YAML row: ``[-1, 1, SHSA, [16, 64]]`` (qk_dim, pdim; both optional)

    Examples:
        >>> m = SHSA(256)
        >>> m(torch.randn(1, 256, 20, 20)).shape
        torch.Size([1, 256, 20, 20])
    """

    def __init__(self, c1: int, qk_dim: int = 16, pdim: int | None = None):
        super().__init__()
        c1 = check_int("SHSA", "c1 (input channels)", c1)
        qk_dim = check_int("SHSA", "qk_dim", qk_dim, high=1024)
        if pdim is None:
            pdim = max(c1 // 4, 1)
        pdim = check_int("SHSA", "pdim", pdim)
        if pdim > c1:
            raise LayerArgumentError(
                f"SHSA: pdim={pdim} exceeds the input channels c1={c1}; pdim is the number of channels that take "
                f"part in attention, use 1..{c1} (default c1 // 4 = {max(c1 // 4, 1)})."
            )
        self.attn = SingleHeadSelfAttention(c1, qk_dim, pdim)

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return f"c1={self.attn.dim}, qk_dim={self.attn.qk_dim}, pdim={self.attn.pdim}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The softmax attention of each query cell (row, column) over all positions (its single head): H×W maps.
        x: (1, C, H, W)."""
        H, W = x.shape[-2:]
        weights = []
        _shsa_reference(self).attn(x, maps=weights)
        return [weights[0][0, r * W + c].view(H, W) for r, c in cells]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class SHSAReference(nn.Module):
    """The official ``SHSA(dim, qk_dim, pdim)`` token mixer restated: same attribute names (so its state_dict loads
    strictly), the official forward written plainly with its explicit attention matrix; any H×W.
    ``forward(x, maps=list)`` appends the attention weights (B, N_query, N_key) to ``maps`` (``yolo-attn show``)."""

    def __init__(self, dim: int, qk_dim: int, pdim: int):
        super().__init__()
        self.scale = qk_dim**-0.5
        self.qk_dim = qk_dim
        self.dim = dim
        self.pdim = pdim
        self.pre_norm = nn.GroupNorm(1, pdim)
        self.qkv = ConvBN(pdim, qk_dim * 2 + pdim)
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(dim, dim, bn_weight_init=0))

    def forward(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        x1, x2 = x[:, :self.pdim], x[:, self.pdim:]  # attended | passed through
        qkv = self.qkv(self.pre_norm(x1)).flatten(2)  # (B, 2·qk_dim + pdim, N)
        q, k, v = qkv.split([self.qk_dim, self.qk_dim, self.pdim], dim=1)
        attn = (q.transpose(1, 2) @ k) * self.scale  # (B, N, N): query × key
        attn = attn.softmax(dim=-1)
        if maps is not None:
            maps.append(attn)
        x1 = (v @ attn.transpose(1, 2)).reshape(B, self.pdim, H, W)  # (B, pdim, N) -> map
        return self.proj(torch.cat([x1, x2], dim=1))


def _shsa_reference(layer: SHSA) -> OfficialResidual:
    """``spec.reference``: ``x + SHSAReference(x)`` with ``layer``'s weights."""
    a = layer.attn
    return OfficialResidual(SHSAReference(a.dim, a.qk_dim, a.pdim), a)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _shsa_plausible(c1: int, kw: dict) -> str | None:
    if kw["qk_dim"] > max(c1 // 2, 16):
        return f"qk_dim={kw['qk_dim']} is wider than half the input channels (c1={c1}; SHViT uses 16)"
    return None


def _official_shsa_module(ns, layer: SHSA) -> OfficialResidual:
    """``x + SHSA(x)``: the official module (class from the namespace ``ns``) with ``layer``'s weights
    (``official_module``: ``yolo-attn bench --official``)."""
    a = layer.attn
    return OfficialResidual(ns.SHSA(a.dim, a.qk_dim, a.pdim), a)


register_module(
    SHSA,
    pickled=(SingleHeadSelfAttention, ConvBN),
    official={"SingleHeadSelfAttention": OfficialName(("dim", "qk_dim", "pdim"), lambda g: {
        k: g[k] for k in ("qk_dim", "pdim") if k in g})},
    defaults=lambda grid: [16],
    plausible=_shsa_plausible,
    summary="Single-Head Self-Attention (residual)",
    paper="SHViT, CVPR 2024",
    official_code="ysj9909/SHViT `model/shvit.py` `SHSA`",
    reference=_shsa_reference,
    textbook_bytes=lambda c, side, batch, train: batch * (side * side) ** 2 * 4 * (3 if train else 2),
    official_module=_official_shsa_module,
    maps_caption="softmax attention of the query point",
    tests=LayerTests(
        small=lambda: SHSA(16, qk_dim=8),
        sizes=((9, 13), (1, 1)),
        trace=((20, 20), ((16, 24), (1, 1))),
        int_args={"c1": 16, "qk_dim": 8, "pdim": 4},
        bad_args=(({"c1": 16, "pdim": 17}, "pdim"), ({"c1": 1, "pdim": 2}, "pdim"), ({"c1": 16, "pdim": -4}, "pdim")),
        folds=3,  # qkv and proj Conv+BN, and the GroupNorm affine into qkv
    ),
    order=40,
    builtin=True,
)
