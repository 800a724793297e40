"""Large Separable Kernel Attention (LSKA).

Paper: Lau, Po & Rehman, "Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
Expert Systems with Applications 2024 (https://arxiv.org/abs/2309.01439). Official code:
StevenLauHKHK/Large-Separable-Kernel-Attention, ``models/van.py`` (class ``LSKA``).

A k×k large-kernel depthwise attention decomposed into a 1-D horizontal and a 1-D vertical depthwise convolution,
then a dilated horizontal and vertical pair, then a 1×1 convolution; the result gates the input: ``x * attn``.

Faithful: same parameter names (``conv0h``, ``conv0v``, ``conv_spatial_h``, ``conv_spatial_v``, ``conv1``), shapes,
initialisation (PyTorch defaults) and output; ``k_size`` takes the paper's values only.

Differs: an unsupported ``k_size`` is refused at construction (the official module builds and then fails in
``forward``); no defensive ``clone()`` of the input.

Fast path: the depthwise separable chain on the contiguous channels-first map as it arrives (no copy, no clone), and
without autograd the gate multiplies into the 1×1 convolution's fresh output in place (one map-sized allocation
fewer). Reference formulation (:class:`LSKAReference`, ``spec.reference``): the official module restated — the
defensive clone, the chain, ``u * attn`` — which the fast path is tested against.

GPU path (profiled with ``scripts/profile_layers.py``): six kernels per forward (five convolutions and the gate);
under autocast each convolution's weight and bias are cast to half per call (Ultralytics' AMP training, the official
module alike; a ``.half()`` model has none). Measured at 0.87–0.99× the official time on an H200.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_choice, check_int
from .registry import LayerTests, load_weights, register_module

__all__ = ["LSKA", "LSKA_KERNELS", "LSKAReference"]

LSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    # k_size: (local kernel, dilated kernel, dilation); effective receptive field ≈ k_size
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}


class LSKA(nn.Module):
    """Large separable kernel attention gate: ``x * conv1(dilated_v(dilated_h(local_v(local_h(x)))))``.

    Args:
        c1 (int): Input channels (filled in from the model YAML); output channels are the same.
        k_size (int): Equivalent large kernel, one of 7, 11, 23, 35, 41, 53.

    YAML row: ``[-1, 1, LSKA, [23]]``

    Examples:
        >>> m = LSKA(64, k_size=23)
        >>> m(torch.randn(1, 64, 20, 20)).shape
        torch.Size([1, 64, 20, 20])
    """

    def __init__(self, c1: int, k_size: int = 7):
        super().__init__()
        c1 = check_int("LSKA", "c1 (input channels)", c1)
        self.k_size = check_choice("LSKA", "k_size", k_size, tuple(LSKA_KERNELS))
        k0, ks, d = LSKA_KERNELS[self.k_size]
        p0, ps = (k0 - 1) // 2, (ks - 1) * d // 2
        self.conv0h = nn.Conv2d(c1, c1, (1, k0), padding=(0, p0), groups=c1)
        self.conv0v = nn.Conv2d(c1, c1, (k0, 1), padding=(p0, 0), groups=c1)
        self.conv_spatial_h = nn.Conv2d(c1, c1, (1, ks), padding=(0, ps), groups=c1, dilation=d)
        self.conv_spatial_v = nn.Conv2d(c1, c1, (ks, 1), padding=(ps, 0), groups=c1, dilation=d)
        self.conv1 = nn.Conv2d(c1, c1, 1)

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return f"c1={self.conv1.in_channels}, k_size={self.k_size}"

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``x`` is multiplied by (B, C, H, W)."""
        attn = self.conv0v(self.conv0h(x))  # local separable k0×k0
        attn = self.conv_spatial_v(self.conv_spatial_h(attn))  # dilated separable ks×ks
        return self.conv1(attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.gate(x)  # (B, C, H, W)
        if attn.requires_grad or x.requires_grad or torch.jit.is_tracing():
            return x * attn  # gate (autograd needs attn unmodified)
        return attn.mul_(x)  # gate, in place into conv1's fresh output

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The gate map ``x`` is multiplied by, mean over channels (one map: the gate has no query). x: (1, C, H, W)."""
        return [_lska_reference(self)(x, maps=True)[0].mean(0)]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class LSKAReference(nn.Module):
    """The official ``LSKA(dim, k_size)`` restated: same attribute names (so its state_dict loads strictly), the
    official forward written plainly. ``forward(x, maps=True)`` returns the gate itself (``yolo-attn show``)."""

    def __init__(self, dim: int, k_size: int):
        super().__init__()
        self.k_size = k_size
        k0, ks, d = LSKA_KERNELS[k_size]  # KeyError for other sizes (the official module leaves its convs undefined)
        self.conv0h = nn.Conv2d(dim, dim, (1, k0), padding=(0, (k0 - 1) // 2), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, (k0, 1), padding=((k0 - 1) // 2, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(dim, dim, (1, ks), padding=(0, (ks - 1) // 2 * d), groups=dim, dilation=d)
        self.conv_spatial_v = nn.Conv2d(dim, dim, (ks, 1), padding=((ks - 1) // 2 * d, 0), groups=dim, dilation=d)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        u = x.clone()
        attn = self.conv0h(x)  # local 1×k0, then k0×1
        attn = self.conv0v(attn)
        attn = self.conv_spatial_h(attn)  # dilated 1×ks, then ks×1
        attn = self.conv_spatial_v(attn)
        attn = self.conv1(attn)  # 1×1 channel mixing: the gate
        return attn if maps else u * attn


def _lska_reference(layer: LSKA) -> LSKAReference:
    """``spec.reference``: :class:`LSKAReference` with ``layer``'s weights (the same keys: LSKA is the official
    module's structure itself, a gate with no residual)."""
    return load_weights(LSKAReference(layer.conv1.in_channels, layer.k_size), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
_LSKA_BY_GRID = ((20, 23), (40, 41))  # map side (at 640: P5 20, P4 40) -> smallest kernel covering it; larger: 53


def _lska_defaults(grid: int | None) -> list:
    """The smallest kernel covering the map (23 at P5, 41 at P4, 53 at P3 of a 640 input); 23 when unknown."""
    if grid is None:
        return [23]
    return [next((k for side, k in _LSKA_BY_GRID if grid <= side), 53)]


def _lska_plausible(c1: int, kw: dict) -> str | None:
    if kw["k_size"] not in LSKA_KERNELS:
        return f"k_size={kw['k_size']} is not one of {', '.join(map(str, LSKA_KERNELS))}"
    return None


def _official_lska(ns, layer: LSKA) -> nn.Module:
    """The official ``LSKA(dim, k_size)`` (class from the namespace ``ns``) with ``layer``'s weights (``strict=True``;
    the same keys; a gate, no residual): ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(ns.LSKA(layer.conv1.in_channels, layer.k_size), layer)


register_module(
    LSKA,
    defaults=_lska_defaults,
    plausible=_lska_plausible,
    summary="Large Separable Kernel Attention (gating `x * attn`)",
    paper="LSKA, ESWA 2024",
    official_code="StevenLauHKHK/Large-Separable-Kernel-Attention `models/van.py` `LSKA`",
    reference=_lska_reference,
    official_module=_official_lska,
    maps_caption="gate map (x is multiplied by it), mean over channels",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: LSKA(16, k_size=11),
        sizes=((9, 13), (1, 3)),
        trace=((20, 20), ((16, 24), (1, 1))),
        int_args={"c1": 16, "k_size": 7},
        bad_args=(({"c1": 16, "k_size": 5}, "k_size"), ({"c1": 16, "k_size": 13}, "k_size"),
                  ({"c1": -8, "k_size": 7}, "c1")),
        folds=0,  # no BatchNorm
    ),
    order=30,
    builtin=True,
)
