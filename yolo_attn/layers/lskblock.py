"""Large Selective Kernel block (LSKBlock): the spatial selection gate of LSKNet.

Paper: Li, Hou, Wang, Gao, Xu & Yang, "Large Selective Kernel Network for Remote Sensing Object Detection", ICCV 2023
(https://arxiv.org/abs/2303.09030). Official code: zcablii/LSKNet, ``mmrotate/models/backbones/lsknet.py`` (class
``LSKblock``; only this gate, not the ``Attention``/``Block`` wrappers around it).

Two depthwise kernels in sequence give two receptive fields: ``conv0`` (5×5) and, on its output, ``conv_spatial``
(7×7, dilation 3: together a 23×23 field). Each goes through its own 1×1 convolution to ``c1 // 2`` channels
(``conv1``, ``conv2``). Over the channels of both together the mean and the maximum at each position form a 2-channel
descriptor; ``conv_squeeze`` (7×7, 2 -> 2) and a sigmoid turn it into two spatial selection maps, one per kernel. The
selected features ``s0 · conv1(...) + s1 · conv2(...)`` go through the 1×1 convolution ``conv`` back to ``c1``
channels, and the result gates the input: ``x * attn``.

Faithful: the official ``LSKblock(dim=c1)`` state_dict loads into this layer with ``strict=True`` and this layer's
into it (the same submodules ``conv0``, ``conv_spatial``, ``conv1``, ``conv2``, ``conv_squeeze``, ``conv``: keys
``<name>.weight``/``<name>.bias``, same shapes), with equal outputs and gradients in eval and train mode (no
BatchNorm: nothing depends on the mode) at any H×W, 1×1 included; same constructor (``dim`` is the only argument,
here ``c1``: output channels = input channels), same initialisation (PyTorch's convolution defaults, drawn in the
official order, so the same seed gives the same weights; the LSKNet backbone's own ``init_weights`` belongs to the
backbone, not to this block). ``LSKblock`` (the official class name) is accepted in YAMLs with the official
arguments: ``[-1, 1, LSKblock, []]`` or ``[-1, 1, LSKblock, [256]]`` (``dim``, replaced by the input channels).

Differs: constructor arguments are checked — ``c1`` must be an integer >= 2 (non-integers, 0, 1 and negatives are
refused with a message naming the layer and the argument; the official module builds at ``dim = 1`` and fails only
in ``forward``). An odd ``c1`` builds as the official module does: its two halves have ``c1 // 2`` channels each,
so the channel mean and maximum run over ``c1 - 1`` channels.

Half precision: the output ``x * attn(x)`` grows with the square of the input (``attn`` is linear in ``x``, with no
normalisation), as in the official block. Stacked three times in a YOLOv8n neck with random weights, the fp32
activations reach 1e7 (28 → 283 → 1.1e4 → 1.0e7), beyond fp16's 65504: fp16 and fp16 autocast overflow there, the
official block alike (bf16 has fp32's range). Declared ``scale_robust=False``.

Fast path: the channel mean and maximum are taken over the two halves without concatenating them (the official
forward copies both halves into one ``c1``-channel map first): the mean of the two halves' means (each half has
``c1 // 2`` channels, so that is the mean over all ``c1``; equal to rounding) and the larger of the two halves'
maxima (exact). Without autograd the selection and the gate are computed in place (the selected sum into
``conv1``'s fresh output, the gate into ``conv``'s fresh output): three map-sized allocations fewer per forward.
Reference formulation (:class:`LSKblockReference`, ``spec.reference``): the official module restated — the
concatenation, ``torch.mean``/``torch.max`` over it, the per-branch products — which the fast path is tested
against.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_int
from .registry import LayerTests, OfficialName, load_weights, register_module

__all__ = ["LSKBlock", "LSKblock", "LSKblockReference"]


def _check_c1(c1) -> int:
    """``c1`` as an integer >= 2 (``conv1`` and ``conv2`` each map it to ``c1 // 2`` channels, at least one)."""
    return check_int("LSKBlock", "c1 (input channels)", c1, low=2)


class LSKBlock(nn.Module):
    """Large selective kernel gate: ``x * conv(s0 · conv1(conv0(x)) + s1 · conv2(conv_spatial(conv0(x))))``, with
    ``s = sigmoid(conv_squeeze([channel mean, channel max]))`` the spatial selection of the two kernels.

    Args:
        c1 (int): Input channels (filled in from the model YAML), at least 2; output channels are the same.

    YAML row: ``[-1, 1, LSKBlock, []]`` (official name ``LSKblock``: ``[-1, 1, LSKblock, [dim]]``, dim replaced by
    the input channels)

    Examples:
        >>> m = LSKBlock(64)
        >>> m(torch.randn(1, 64, 20, 12)).shape
        torch.Size([1, 64, 20, 12])
        >>> m.conv_spatial
        Conv2d(64, 64, kernel_size=(7, 7), stride=(1, 1), padding=(9, 9), dilation=(3, 3), groups=64)
        >>> m.selection(torch.randn(1, 64, 20, 12)).shape  # one spatial map per kernel
        torch.Size([1, 2, 20, 12])
    """

    def __init__(self, c1: int):
        super().__init__()
        c1 = _check_c1(c1)
        c_ = c1 // 2
        self.conv0 = nn.Conv2d(c1, c1, 5, padding=2, groups=c1)  # 5×5 depthwise
        self.conv_spatial = nn.Conv2d(c1, c1, 7, stride=1, padding=9, groups=c1, dilation=3)  # 7×7 depthwise, d=3
        self.conv1 = nn.Conv2d(c1, c_, 1)
        self.conv2 = nn.Conv2d(c1, c_, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(c_, c1, 1)

    def extra_repr(self) -> str:
        """The resolved arguments."""
        return f"c1={self.conv0.in_channels}"

    def _branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two branches ``a1``, ``a2`` (B, c1/2, H, W) and their selection maps (B, 2, H, W)."""
        attn1 = self.conv0(x)
        attn2 = self.conv_spatial(attn1)
        a1, a2 = self.conv1(attn1), self.conv2(attn2)
        # mean and max over the channels of [a1, a2] without concatenating them (equal halves: mean of the means)
        avg = (a1.mean(1, keepdim=True) + a2.mean(1, keepdim=True)) * 0.5
        mx = torch.maximum(a1.amax(1, keepdim=True), a2.amax(1, keepdim=True))
        sig = self.conv_squeeze(torch.cat([avg, mx], dim=1)).sigmoid()  # (B, 2, H, W)
        return a1, a2, sig

    def selection(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial selection maps (B, 2, H, W): channel 0 weighs the 5×5 branch (``conv1``), channel 1 the
        large-kernel branch (``conv2``, 7×7 dilation 3 after the 5×5: a 23×23 field)."""
        return self._branches(x)[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, a2, sig = self._branches(x)
        s0, s1 = sig[:, 0:1], sig[:, 1:2]  # (B, 1, H, W) each
        if a1.requires_grad or x.requires_grad or torch.jit.is_tracing():
            return x * self.conv(a1 * s0 + a2 * s1)
        attn = self.conv(a1.mul_(s0).addcmul_(a2, s1))  # selected sum in place into conv1's fresh output
        return attn.mul_(x)  # gate, in place into conv's fresh output

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The spatial selection weight of the large-kernel branch, ``sigmoid(conv_squeeze(...))[1]`` (one map: the
        gate has no query; :meth:`selection` gives both). x: (1, C, H, W)."""
        return [self.selection(x)[0, 1]]


LSKblock = LSKBlock
"""The official class name."""


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class LSKblockReference(nn.Module):
    """The official ``LSKblock(dim)`` restated: same attribute names, shapes and defaults (so its state_dict loads
    strictly), the official forward written plainly. ``forward(x, maps=True)`` returns the selection maps
    ``sigmoid(conv_squeeze(...))`` (B, 2, H, W)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        attn1 = self.conv0(x)  # 5×5 depthwise
        attn2 = self.conv_spatial(attn1)  # then 7×7 depthwise, dilation 3
        attn1 = self.conv1(attn1)
        attn2 = self.conv2(attn2)
        attn = torch.cat([attn1, attn2], dim=1)
        avg_attn = torch.mean(attn, dim=1, keepdim=True)
        max_attn, _ = torch.max(attn, dim=1, keepdim=True)
        agg = torch.cat([avg_attn, max_attn], dim=1)
        sig = self.conv_squeeze(agg).sigmoid()
        if maps:
            return sig
        attn = attn1 * sig[:, 0, :, :].unsqueeze(1) + attn2 * sig[:, 1, :, :].unsqueeze(1)
        attn = self.conv(attn)
        return x * attn


def _lskblock_reference(layer: LSKBlock) -> LSKblockReference:
    """``spec.reference``: :class:`LSKblockReference` with ``layer``'s weights (the same keys: LSKBlock is the
    official module's structure itself, a gate with no residual)."""
    return load_weights(LSKblockReference(layer.conv0.in_channels), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _lskblock_plausible(c1: int, kw: dict) -> str | None:
    """No argument besides ``c1``, so nothing to judge; declared so that a channel count written first (as the
    tutorials write ``[-1, 1, LSKBlock, [256]]``) is recognised and dropped when the model is parsed."""
    return None


def _official_lskblock(ns, layer: LSKBlock) -> nn.Module:
    """The official ``LSKblock(dim)`` (class from the namespace ``ns``) with ``layer``'s weights (``strict=True``;
    the same keys; a gate, no residual): ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(ns.LSKblock(layer.conv0.in_channels), layer)


register_module(
    LSKBlock,
    official={"LSKblock": OfficialName(("dim",), lambda given: {})},
    plausible=_lskblock_plausible,
    summary="Large Selective Kernel block (gating `x * conv(spatially selected 5×5 / 23×23 depthwise branches)`)",
    paper="LSKNet, ICCV 2023",
    official_code="zcablii/LSKNet `mmrotate/models/backbones/lsknet.py` `LSKblock`",
    reference=_lskblock_reference,
    official_module=_official_lskblock,
    maps_caption="spatial selection weight of the large-kernel branch, sigmoid(conv_squeeze(...))[1] (the weight of "
                 "conv2(conv_spatial(conv0(x))) in the selected sum)",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: LSKBlock(16),
        sizes=((9, 13), (1, 1), (1, 5), (3, 2), (20, 20)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16},
        bad_args=(({"c1": 1}, "c1"), ({"c1": -8}, "c1")),
        folds=0,  # no BatchNorm
        # inputs ×100 scale the selection logits ×100 (mean and max are homogeneous, the sigmoid is not): where they
        # cross 0 they are differences of large terms, and fp16/bf16 rounding of the *input* alone moves the fp64
        # output by 1.6e-3/1.3e-2; the official form in half precision is off by the same 7.9e-3/3.8e-2 as ours
        scale_robust=False,
    ),
    order=120,
    builtin=True,
)
