"""Coordinate Attention (CoordAtt).

Paper: Hou, Zhou & Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021
(https://arxiv.org/abs/2103.02907). Official code: houqb/CoordAttention, ``coordatt.py`` (class ``CoordAtt``, with
its ``h_sigmoid``/``h_swish`` helpers).

The input is averaged along W (one value per row) and along H (one value per column); both strips go through one
shared 1×1 convolution + BatchNorm + h-swish (``mip = max(8, c1 // reduction)`` channels, the BatchNorm statistics
taken over the rows and columns together), then each through its own 1×1 convolution back to ``c1`` channels and a
sigmoid: a per-row gate ``a_h`` (B, C, H, 1) and a per-column gate ``a_w`` (B, C, 1, W). Output:
``x * a_w * a_h``.

Faithful: the official ``CoordAtt(inp=c1, oup=c1, reduction)`` state_dict loads into this layer with
``strict=True`` and this layer's into it (keys ``conv1.weight``, ``conv1.bias``, ``bn1.*``, ``conv_h.*``,
``conv_w.*``; see below), with equal outputs in eval and train mode (the train-mode BatchNorm sees the rows and the
columns of the batch as one set, as in the official module) at any H×W, 1×1 included; same constructor default
(``reduction=32``), same initialisation (PyTorch defaults, drawn in the official order, so the same seed gives the
same weights); same input and parameter gradients (see ``conv1.bias`` below).

Differs: output channels are the input channels (the official ``oup`` is a separate argument; in the official
MobileNetV2 it always equals ``inp``); constructor arguments are checked (non-integers, 0 and negatives are refused
with a message naming the layer and the argument). ``conv1`` + ``bn1`` are one :class:`~.conv_bn.ConvBN` block so
that :func:`~.conv_bn.fuse_layers` folds the BatchNorm. The official ``conv1.bias`` is kept as a *buffer* of
``conv1.c`` (same value, same state_dict key, applied and folded as a bias): it feeds ``bn1``, so in train mode its
gradient is zero in exact arithmetic and the official parameter never moves unless weight decay is applied to it
(Ultralytics does not decay biases); as a buffer it is not handed to the optimiser. The state_dict has the official
keys: ``state_dict()`` writes ``conv1.c.*`` as ``conv1.*`` and ``conv1.bn.*`` as ``bn1.*``, and loading reads either
spelling (parameter *names*, as ``named_parameters()`` gives them, are ``conv1.c.weight`` ...). Inside an
Ultralytics model the BatchNorm gets Ultralytics' ``eps=1e-3, momentum=0.03``, as every BatchNorm there (the
official module's too). The adaptive poolings are written as means (``AdaptiveAvgPool2d((None, 1))`` is a mean over
W), which every exporter handles at any map size; h-swish is ``F.hardswish`` (the same formula,
``y * relu6(y + 3) / 6``, as one operator).

Fast path: in eval mode (inference, export) the shared convolution runs on the row strip (B, C, H, 1) and on the
column strip (B, C, 1, W) separately — exact, since it is 1×1 and the eval BatchNorm is per channel — so there is no
concatenation, no split by the map size and no permute; in train mode the strips are concatenated as in the official
module (the batch statistics need both). Without autograd the second gate multiplies in place into the first
product (one map-sized allocation fewer). Reference formulation (:class:`CoordAttReference`, ``spec.reference``): the
official module restated — adaptive poolings, permute, concatenation, split, plain h-swish — which the fast path is
tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int
from .conv_bn import ConvBN
from .registry import LayerTests, load_weights, register_module

__all__ = ["CoordAtt", "CoordAttReference"]

_TO_OFFICIAL = (("conv1.c.", "conv1."), ("conv1.bn.", "bn1."))
"""Our state_dict key prefixes (the ConvBN block) -> the official module's (a plain conv ``conv1``, ``bn1``)."""


def _shared_conv(c1: int, mip: int) -> ConvBN:
    """The official ``conv1`` (1×1, with bias) + ``bn1`` as one foldable block, initialised as the official pair (the
    convolution's weight, then its bias, drawn as ``nn.Conv2d`` draws them; BatchNorm scale 1, shift 0).

    The bias is a buffer, not a parameter: it feeds a BatchNorm, which in train mode subtracts the batch mean, so its
    gradient is zero in exact arithmetic (the official parameter never moves under an optimiser that does not decay
    biases, as Ultralytics' does not); it still shifts the eval-mode output against the running mean, and it is in the
    state_dict (``conv1.bias``) and folded by ``fuse``.
    """
    block = ConvBN(c1, mip)  # Conv2d(bias=False): its weight is drawn as nn.Conv2d draws it
    conv = block.c
    bound = 1 / conv.weight[0].numel() ** 0.5  # nn.Conv2d.reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    del conv.bias  # the registered (None) parameter slot
    conv.register_buffer("bias", torch.empty(mip).uniform_(-bound, bound))
    return block


class _OfficialKeys(nn.Module):
    """The official state_dict keys for a module whose ``conv1`` is a :class:`ConvBN` (``conv1.c``, ``conv1.bn``):
    written as ``conv1.*``/``bn1.*``, read in either spelling. A fused ``conv1`` (a plain ``Conv2d``) already has the
    official names and no ``bn1``. Methods of the class, not hooks: nothing extra is pickled with a checkpoint."""

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        given = dict(zip(("destination", "prefix", "keep_vars"), args))  # torch's deprecated positional form
        destination, prefix = given.get("destination", destination), given.get("prefix", prefix)
        keep_vars = given.get("keep_vars", keep_vars)
        start = len(destination) if destination is not None else 0
        out = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        if isinstance(self.conv1, ConvBN):
            mine = list(out.items())[start:]  # this module's entries, appended last: renamed in place, order kept
            for key, _ in mine:
                del out[key]
            for key, value in mine:
                out[_rename(key, prefix, _TO_OFFICIAL)] = value
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if isinstance(self.conv1, ConvBN):  # the official spelling -> ours (our own spelling passes unchanged)
            for key in [k for k in state_dict if k.startswith(prefix)]:
                rest = key[len(prefix):]
                if rest in ("conv1.weight", "conv1.bias"):
                    state_dict[prefix + "conv1.c." + rest[len("conv1."):]] = state_dict.pop(key)
                elif rest.startswith("bn1."):
                    state_dict[prefix + "conv1.bn." + rest[len("bn1."):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _rename(key: str, prefix: str, table) -> str:
    """``key`` with the first matching ``(old, new)`` prefix (after the module's ``prefix``) replaced."""
    for old, new in table:
        if key.startswith(prefix + old):
            return prefix + new + key[len(prefix + old):]
    return key


class CoordAtt(_OfficialKeys):
    """Coordinate attention gate: ``x * a_w * a_h``, per-column and per-row gates from direction-wise average pools.

    Args:
        c1 (int): Input channels (filled in from the model YAML); output channels are the same.
        reduction (int): Hidden width of the shared 1×1 convolution is ``max(8, c1 // reduction)``.

    YAML row: ``[-1, 1, CoordAtt, [32]]`` (reduction; optional)

    Examples:
        >>> m = CoordAtt(64)
        >>> m(torch.randn(1, 64, 20, 12)).shape
        torch.Size([1, 64, 20, 12])
        >>> sorted(m.state_dict())[:3]  # the official module's keys
        ['bn1.bias', 'bn1.num_batches_tracked', 'bn1.running_mean']
    """

    def __init__(self, c1: int, reduction: int = 32):
        super().__init__()
        c1 = check_int("CoordAtt", "c1 (input channels)", c1)
        self.reduction = check_int("CoordAtt", "reduction", reduction)
        self.c1, self.mip = c1, max(8, c1 // self.reduction)
        self.conv1 = _shared_conv(c1, self.mip)  # official conv1 + bn1
        self.conv_h = nn.Conv2d(self.mip, c1, 1)
        self.conv_w = nn.Conv2d(self.mip, c1, 1)

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return f"c1={self.c1}, reduction={self.reduction}, mip={self.mip}"

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The row gate ``a_h`` (B, C, H, 1) and the column gate ``a_w`` (B, C, 1, W)."""
        x_h = x.mean(3, keepdim=True)  # (B, C, H, 1): average over W
        x_w = x.mean(2, keepdim=True)  # (B, C, 1, W): average over H
        if self.training:  # BatchNorm statistics over rows and columns together: one concatenated strip
            h = x_h.shape[2]
            y = F.hardswish(self.conv1(torch.cat([x_h, x_w.transpose(2, 3)], dim=2)))  # (B, mip, H + W, 1)
            y_h, y_w = y[:, :, :h], y[:, :, h:].transpose(2, 3)
        else:  # 1×1 conv and eval BatchNorm act per position: each strip on its own (no concat, split, permute)
            y_h, y_w = F.hardswish(self.conv1(x_h)), F.hardswish(self.conv1(x_w))
        return self.conv_h(y_h).sigmoid(), self.conv_w(y_w).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h, a_w = self.gates(x)
        out = x * a_w
        if out.requires_grad or torch.jit.is_tracing():
            return out * a_h
        return out.mul_(a_h)  # in place into the first product (no autograd record needs it)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The gate ``x`` is multiplied by, ``a_h · a_w``, mean over channels (one map: a gate has no query).
        x: (1, C, H, W)."""
        a_h, a_w = self.gates(x)
        return [(a_h * a_w)[0].mean(0)]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class CoordAttReference(_OfficialKeys):
    """The official ``CoordAtt(inp, oup, reduction=32)`` restated: the official forward written plainly (adaptive
    poolings, permute, concatenation, shared conv + BatchNorm + h-swish, split, two convs + sigmoid,
    ``identity * a_w * a_h``), with the official state_dict keys and the layer's parameter names (``conv1`` + ``bn1``
    as one ConvBN block, see :class:`_OfficialKeys`). ``forward(x, maps=True)`` returns the gate ``a_w * a_h``."""

    def __init__(self, inp: int, oup: int, reduction: int = 32):
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // reduction)
        self.conv1 = _shared_conv(inp, mip)  # conv1 (with bias) then bn1
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)  # (n, c, h, 1)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)  # (n, c, w, 1)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.conv1.c(y)  # official conv1
        y = self.conv1.bn(y)  # official bn1
        y = y * F.relu6(y + 3) / 6  # official h_swish: x * h_sigmoid(x), h_sigmoid = relu6(x + 3) / 6
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        if maps:
            return a_w * a_h
        return identity * a_w * a_h


def _coordatt_reference(layer: CoordAtt) -> CoordAttReference:
    """``spec.reference``: :class:`CoordAttReference` with ``layer``'s weights (the same keys: a gate, no residual)."""
    return load_weights(CoordAttReference(layer.c1, layer.c1, layer.reduction), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _official_coordatt(ns, layer: CoordAtt) -> nn.Module:
    """The official ``CoordAtt(inp, oup, reduction)`` (class from the namespace ``ns``) with ``layer``'s weights
    (``strict=True``; our state_dict has its keys; a gate, no residual): ``official_module``,
    ``yolo-attn bench --official``."""
    return load_weights(ns.CoordAtt(layer.c1, layer.c1, layer.reduction), layer)


def _coordatt_plausible(c1: int, kw: dict) -> str | None:
    if kw["reduction"] > 32 and kw["reduction"] >= c1:  # above the official default and no smaller than c1
        return (f"reduction={kw['reduction']} squeezes c1={c1} channels to the 8-channel minimum (the official "
                f"default is 32; an official row's first argument is oup)")
    return None


register_module(
    CoordAtt,
    plausible=_coordatt_plausible,
    pickled=(ConvBN,),
    summary="Coordinate Attention (gating `x * a_w * a_h`)",
    paper="Coordinate Attention, CVPR 2021",
    official_code="houqb/CoordAttention `coordatt.py` `CoordAtt`",
    reference=_coordatt_reference,
    official_module=_official_coordatt,
    maps_caption="gate map a_h·a_w (x is multiplied by it), mean over channels",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: CoordAtt(16, reduction=2),
        # not 1×1 here: train-mode BatchNorm over 2 images × 2 strip cells leaves conv1's weight gradient ~1e-2 of the
        # largest, cancelled from O(1) terms, so fp32 rounding alone moves it by ~5e-5 relative (1×1 runs in the
        # trace, fuzz and precision tests)
        sizes=((9, 13), (2, 3), (5, 1)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "reduction": 32},
        bad_args=(({"c1": 16, "reduction": -32}, "reduction"), ({"c1": 16, "reduction": 2.0}, "reduction"),
                  ({"c1": -16}, "c1")),
        folds=1,  # conv1 + bn1
    ),
    order=80,
    builtin=True,
)
