"""Convolutional Block Attention Module (CBAM).

Paper: Woo, Park, Lee & Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018
(https://arxiv.org/abs/1807.06521). Official code: Jongchan/attention-module, ``MODELS/cbam.py`` (class ``CBAM``,
with its ``ChannelGate``, ``SpatialGate``, ``ChannelPool``, ``BasicConv``, ``Flatten`` and ``logsumexp_2d``).

Two gates in sequence. Channel gate: each pooled descriptor of the map (``pool_types``: ``avg`` the spatial mean,
``max`` the spatial maximum, ``lp`` the spatial L2 norm ``sqrt(sum x^2)``, ``lse`` the spatial log-sum-exp) goes
through one shared MLP (``Linear(C, C // reduction_ratio)``, ReLU, ``Linear(C // reduction_ratio, C)``); the outputs
are summed, and their sigmoid scales each channel: ``x1 = x * sigmoid(sum_p MLP(pool_p(x)))``. Spatial gate: the
maximum and the mean over the channels of ``x1`` (in that order, as the official ``ChannelPool``) form a 2-channel
map, a 7×7 convolution (2 → 1, no bias) + BatchNorm (``eps=1e-5, momentum=0.01``, no ReLU) and a sigmoid give one
weight per position: ``out = x1 * sigmoid(BN(conv7x7([max_c x1; mean_c x1])))``. With ``no_spatial`` the output is
``x1`` (there is then no spatial gate, and no ``SpatialGate`` parameters).

Faithful: the official ``CBAM(gate_channels=c1, reduction_ratio, pool_types, no_spatial)`` state_dict loads into this
layer with ``strict=True`` and this layer's into it: the same keys (``ChannelGate.mlp.1.weight``,
``ChannelGate.mlp.1.bias``, ``ChannelGate.mlp.3.*``, ``SpatialGate.spatial.conv.weight``,
``SpatialGate.spatial.bn.weight``/``bias``/``running_mean``/``running_var``/``num_batches_tracked``; no
``SpatialGate`` with ``no_spatial``), the same parameter names, shapes and constructor defaults
(``reduction_ratio=16``, ``pool_types=('avg', 'max')``, ``no_spatial=False``), the same initialisation (PyTorch's
defaults, drawn in the official order, so the same seed gives the same weights), and equal outputs and gradients in
eval and train mode at any H×W, 1×1 included, for each of the four pool types and any list of them (a repeated type
counts twice, as in the official sum). The official constructor's own initialisation is PyTorch's; the official
ResNet additionally zeroes every bias and the spatial BatchNorm's scale at model level — not done here (an
Ultralytics model does not run that ResNet initialiser).

Differs:

* Constructor arguments are checked (the official module takes anything): ``c1`` and ``reduction_ratio`` positive
  integers; ``pool_types`` a non-empty list of ``'avg'``, ``'max'``, ``'lp'``, ``'lse'`` (an unknown name makes the
  official forward fail with ``UnboundLocalError`` or silently reuse the previous pool's result; a bare string is
  iterated character by character there); ``no_spatial`` a bool. Each is refused naming CBAM and the argument. In a
  model YAML, ``c1 // reduction_ratio < 1`` (the official builds a zero-width MLP whose channel gate is a constant)
  and ``reduction_ratio == c1`` (one hidden unit: most likely the channel count written first) are refused as
  implausible; from Python they build, as the official module does.
* The default ``pool_types`` is the tuple ``('avg', 'max')`` (the official default is the same list, mutable).
* The spatial convolution + BatchNorm is :class:`CBAMConvBN`, a :class:`~.conv_bn.ConvBN` whose children keep the
  official names ``conv`` and ``bn``, so :func:`~.conv_bn.fuse_layers` folds it (after folding, the keys are
  ``SpatialGate.spatial.weight``/``bias``). Inside an Ultralytics model the BatchNorm gets Ultralytics'
  ``eps=1e-3, momentum=0.03``, as every BatchNorm there (the official module's too).
* The poolings are reductions over the map (``mean``, ``amax``, ``sqrt(sum x^2)``, ``max + log(sum exp(x - max))``)
  rather than pooling windows sized from ``x.size()``: the same values (to float rounding), and a traced graph
  (every exporter) holds no map size, so one trace serves every size. The channel maximum is ``amax`` (the official
  ``torch.max(x, 1)`` also returns the argmax indices, unused).
* Half precision follows the official arithmetic: ``lp``'s sum of squares overflows fp16 once ``|x|`` passes ~256 on
  a single position, as the official ``lp_pool2d`` does.

Not Ultralytics' ``CBAM`` (``ultralytics.nn.modules.conv``, not reachable from a model YAML: ``parse_model`` does not
know it, and this registered name is ours): that one has a channel gate of a single 1×1 convolution (C → C, with
bias) on the average-pooled descriptor only — no MLP hidden layer, no max pooling — and a spatial gate whose 7×7
convolution has no BatchNorm and takes ``[mean; max]`` (the official ``[max; mean]`` swapped); its weights do not
load into this layer.

Fast path: the descriptors are reductions (no pooling windows, no argmax indices), the channel scale is broadcast
without ``expand_as``, the channel maximum and mean are computed with ``keepdim`` (no ``unsqueeze``) and, without
autograd, the spatial gate multiplies in place into the channel-gated map (one map-sized allocation fewer than the
official forward); 0.3–0.5× the official time on one CPU thread at YOLOv8n's P3–P5 maps. The MLP runs once per pool
type on the (B, C) descriptors, as in the official module: stacking them on a new leading axis to run it once is
converted wrongly by NCNN (which has no batch axis). Reference
formulation (:class:`CBAMReference`, ``spec.reference``): the official module restated — pooling windows sized from
the map, the MLP once per pool type, ``expand_as``, ``ChannelPool``'s ``torch.max``/``torch.mean`` and ``cat``,
``BasicConv`` — which the fast path is tested against.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import LayerArgumentError, check_bool, check_int
from .conv_bn import ConvBN
from .registry import LayerTests, load_weights, register_module

__all__ = ["CBAM", "CBAM_POOL_TYPES", "CBAMChannelGate", "CBAMConvBN", "CBAMReference", "CBAMSpatialGate"]

CBAM_POOL_TYPES = ("avg", "max", "lp", "lse")
"""The channel gate's pooled descriptors, as the official ``ChannelGate`` names them."""
CBAM_KERNEL = 7
"""The spatial gate's convolution kernel (fixed in the official ``SpatialGate``)."""


def _check_pool_types(pool_types) -> tuple[str, ...]:
    """``pool_types`` as a tuple if it is a non-empty list/tuple of known pool names, else raise naming CBAM."""
    names = ", ".join(repr(p) for p in CBAM_POOL_TYPES)
    if not isinstance(pool_types, (list, tuple)) or not pool_types:
        raise LayerArgumentError(
            f"CBAM: pool_types must be a non-empty list of pool names ({names}), got {pool_types!r} "
            f"({type(pool_types).__name__}); write e.g. [avg, max] in the YAML args."
        )
    for p in pool_types:
        if not isinstance(p, str) or p not in CBAM_POOL_TYPES:
            raise LayerArgumentError(f"CBAM: pool_types has an unknown pool type {p!r}; choose from {names}.")
    return tuple(pool_types)


# ----------------------------------------------------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------------------------------------------------
def _pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """One pooled descriptor of the map, (B, C): a reduction over H×W (no window sized from the map)."""
    if kind == "avg":
        return x.mean((2, 3))
    if kind == "max":
        return x.amax((2, 3))
    if kind == "lp":  # official lp_pool2d(x, 2, (H, W)): (mean of x^2 · H·W)^(1/2)
        return x.square().sum((2, 3)).sqrt()
    m = x.amax((2, 3))  # lse: the official logsumexp_2d, shifted by the maximum
    return (x - m[:, :, None, None]).exp().sum((2, 3)).log() + m


class CBAMConvBN(ConvBN):
    """The official ``BasicConv(in, out, k, padding=k // 2, relu=False)``: ``Conv2d(bias=False)`` then
    ``BatchNorm2d(eps=1e-5, momentum=0.01)``, children named ``conv`` and ``bn`` as there (so the official keys load),
    and a :class:`~.conv_bn.ConvBN` that :func:`~.conv_bn.fuse_layers` folds."""

    def __init__(self, c1: int, c2: int, k: int, p: int):
        nn.Sequential.__init__(self)  # not ConvBN.__init__, which names the convolution ``c``
        self.add_module("conv", nn.Conv2d(c1, c2, k, 1, p, bias=False))
        self.add_module("bn", nn.BatchNorm2d(c2, eps=1e-5, momentum=0.01, affine=True))


class CBAMChannelGate(nn.Module):
    """The official ``ChannelGate``: shared MLP over the pooled descriptors, summed, sigmoid (attribute ``mlp``:
    ``Flatten, Linear, ReLU, Linear``, keys ``mlp.1.*``, ``mlp.3.*``)."""

    def __init__(self, gate_channels: int, reduction_ratio: int, pool_types: Sequence[str]):
        super().__init__()
        self.gate_channels = gate_channels
        hidden = gate_channels // reduction_ratio
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(gate_channels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, gate_channels))
        self.pool_types = tuple(pool_types)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights ``x`` is multiplied by, (B, C, 1, 1)."""
        _, fc1, act, fc2 = self.mlp  # the Flatten is a no-op on the (B, C) descriptors
        att = None
        for kind in self.pool_types:  # the MLP on each (B, C) descriptor; not stacked on a new leading axis, which
            raw = fc2(act(fc1(_pool(x, kind))))  # NCNN (no batch axis) converts wrongly
            att = raw if att is None else att + raw
        return att.sigmoid()[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x)


class CBAMSpatialGate(nn.Module):
    """The official ``SpatialGate``: ``[max_c; mean_c]`` → 7×7 conv + BatchNorm → sigmoid (attribute ``spatial``, a
    :class:`CBAMConvBN`; the official ``compress`` has no state)."""

    def __init__(self):
        super().__init__()
        self.spatial = CBAMConvBN(2, 1, CBAM_KERNEL, (CBAM_KERNEL - 1) // 2)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-position weights ``x`` is multiplied by, (B, 1, H, W)."""
        pooled = torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), 1)  # official order: max, then mean
        return self.spatial(pooled).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional block attention: a channel gate (shared MLP over pooled descriptors), then a spatial gate (7×7
    conv + BatchNorm over the channel max and mean): ``x1 = x * sigmoid(sum_p MLP(pool_p(x)))``,
    ``out = x1 * sigmoid(BN(conv([max_c x1; mean_c x1])))``.

    Args:
        c1 (int): Input channels (filled in from the model YAML; the official ``gate_channels``); output channels are
            the same.
        reduction_ratio (int): The MLP's hidden width is ``c1 // reduction_ratio`` (paper and official: 16).
        pool_types (list[str]): Pooled descriptors of the channel gate, summed after the MLP: any of ``'avg'``,
            ``'max'``, ``'lp'`` (L2 norm), ``'lse'`` (log-sum-exp); a YAML list, e.g. ``[avg, max]``.
        no_spatial (bool): Channel gate only (no spatial gate, no spatial parameters).

    YAML row: ``[-1, 1, CBAM, [16, [avg, max], False]]`` (all optional)

    Examples:
        >>> m = CBAM(64)
        >>> m(torch.randn(1, 64, 20, 12)).shape
        torch.Size([1, 64, 20, 12])
        >>> sorted(m.state_dict())[:3]  # the official module's keys
        ['ChannelGate.mlp.1.bias', 'ChannelGate.mlp.1.weight', 'ChannelGate.mlp.3.bias']
        >>> CBAM(64, 8, ["avg", "max", "lp", "lse"], no_spatial=True)(torch.randn(2, 64, 5, 5)).shape
        torch.Size([2, 64, 5, 5])
    """

    def __init__(self, c1: int, reduction_ratio: int = 16, pool_types: Sequence[str] = ("avg", "max"),
                 no_spatial: bool = False):
        super().__init__()
        self.c1 = check_int("CBAM", "c1 (input channels)", c1)
        self.reduction_ratio = check_int("CBAM", "reduction_ratio", reduction_ratio)
        self.pool_types = _check_pool_types(pool_types)
        check_bool("CBAM", "no_spatial", no_spatial)
        self.ChannelGate = CBAMChannelGate(self.c1, self.reduction_ratio, self.pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = CBAMSpatialGate()

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included, and the MLP's hidden width."""
        return (f"c1={self.c1}, reduction_ratio={self.reduction_ratio}, pool_types={list(self.pool_types)}, "
                f"no_spatial={self.no_spatial}, hidden={self.c1 // self.reduction_ratio}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.ChannelGate.scale(x)  # channel gate, broadcast over H×W (a fresh tensor)
        if self.no_spatial:
            return y
        g = self.SpatialGate.gate(y)  # (B, 1, H, W)
        if y.requires_grad or g.requires_grad or torch.jit.is_tracing():
            return y * g
        return y.mul_(g)  # in place into the channel-gated map (no autograd record needs it)

    @property
    def has_maps(self) -> bool:
        """Whether there is a spatial map to draw (``yolo-attn show`` skips the layer otherwise)."""
        return not self.no_spatial

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The spatial gate the channel-gated ``x`` is multiplied by (one map: the gate has no query).
        x: (1, C, H, W). Raises for ``no_spatial=True``: its only gate is per channel, there is no spatial map."""
        if self.no_spatial:
            raise ValueError("CBAM(no_spatial=True) has no spatial map to draw: its only attention is the channel "
                             "gate, one weight per channel.")
        return [self.SpatialGate.gate(x * self.ChannelGate.scale(x))[0, 0]]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class BasicConvReference(nn.Module):
    """The official ``BasicConv``: convolution, optional BatchNorm (``eps=1e-5, momentum=0.01``), optional ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, relu: bool = True, bn: bool = True, bias: bool = False):
        super().__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class FlattenReference(nn.Module):
    """The official ``Flatten``: (B, ...) -> (B, -1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


def logsumexp_2d_reference(tensor: torch.Tensor) -> torch.Tensor:
    """The official ``logsumexp_2d``: log-sum-exp over H×W, shifted by the maximum; (B, C, 1)."""
    flat = tensor.view(tensor.size(0), tensor.size(1), -1)
    s, _ = torch.max(flat, dim=2, keepdim=True)
    return s + (flat - s).exp().sum(dim=2, keepdim=True).log()


class ChannelGateReference(nn.Module):
    """The official ``ChannelGate(gate_channels, reduction_ratio=16, pool_types=['avg', 'max'])``."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16, pool_types: Sequence[str] = ("avg", "max")):
        super().__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            FlattenReference(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels),
        )
        self.pool_types = pool_types

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = (x.size(2), x.size(3))  # every pooling window is the whole map
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == "avg":
                channel_att_raw = self.mlp(F.avg_pool2d(x, window, stride=window))
            elif pool_type == "max":
                channel_att_raw = self.mlp(F.max_pool2d(x, window, stride=window))
            elif pool_type == "lp":
                channel_att_raw = self.mlp(F.lp_pool2d(x, 2, window, stride=window))
            elif pool_type == "lse":
                channel_att_raw = self.mlp(logsumexp_2d_reference(x))
            channel_att_sum = channel_att_raw if channel_att_sum is None else channel_att_sum + channel_att_raw
        scale = torch.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPoolReference(nn.Module):
    """The official ``ChannelPool``: ``[max over channels; mean over channels]``, (B, 2, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGateReference(nn.Module):
    """The official ``SpatialGate``: ``ChannelPool``, ``BasicConv(2, 1, 7, padding=3, relu=False)``, sigmoid.
    ``forward(x, maps=True)`` returns the gate itself."""

    def __init__(self):
        super().__init__()
        kernel_size = CBAM_KERNEL
        self.compress = ChannelPoolReference()
        self.spatial = BasicConvReference(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        x_compress = self.compress(x)
        x_out = self.spatial(x_compress)
        scale = torch.sigmoid(x_out)  # (B, 1, H, W), broadcast over the channels
        return scale if maps else x * scale


class CBAMReference(nn.Module):
    """The official ``CBAM(gate_channels, reduction_ratio=16, pool_types=['avg', 'max'], no_spatial=False)``
    restated: the same attribute names (``ChannelGate``, ``SpatialGate``; so its state_dict loads strictly), the
    official forward written plainly. ``forward(x, maps=True)`` returns the spatial gate (B, 1, H, W)."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16, pool_types: Sequence[str] = ("avg", "max"),
                 no_spatial: bool = False):
        super().__init__()
        self.ChannelGate = ChannelGateReference(gate_channels, reduction_ratio, pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGateReference()

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        x_out = self.ChannelGate(x)
        if not self.no_spatial:
            return self.SpatialGate(x_out, maps=maps)
        return x_out


def _cbam_reference(layer: CBAM) -> CBAMReference:
    """``spec.reference``: :class:`CBAMReference` with ``layer``'s weights (the same keys: a gate, no residual)."""
    return load_weights(CBAMReference(layer.c1, layer.reduction_ratio, layer.pool_types, layer.no_spatial), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _cbam_plausible(c1: int, kw: dict) -> str | None:
    r = kw["reduction_ratio"]
    if c1 // r < 1:
        return (f"reduction_ratio={r} leaves c1 // reduction_ratio = 0 hidden units (a zero-width MLP: a constant "
                f"channel gate); use a reduction_ratio of at most c1 (the paper uses 16)")
    if r == c1 > 1:
        return (f"reduction_ratio={r} squeezes c1={c1} channels to a single hidden unit (the paper uses 16; an "
                f"official row's first argument is gate_channels)")
    return None


def _official_cbam(ns, layer: CBAM) -> nn.Module:
    """The official ``CBAM(gate_channels, reduction_ratio, pool_types, no_spatial)`` (class from the namespace ``ns``)
    with ``layer``'s weights (``strict=True``; the same keys; a gate, no residual): ``official_module``,
    ``yolo-attn bench --official``."""
    return load_weights(ns.CBAM(layer.c1, layer.reduction_ratio, list(layer.pool_types), layer.no_spatial), layer)


register_module(
    CBAM,
    plausible=_cbam_plausible,
    pickled=(CBAMChannelGate, CBAMSpatialGate, CBAMConvBN),
    summary="Convolutional Block Attention Module (channel gate, then spatial gate)",
    paper="CBAM, ECCV 2018",
    official_code="Jongchan/attention-module `MODELS/cbam.py` `CBAM`",
    reference=_cbam_reference,
    official_module=_official_cbam,
    maps_caption="spatial gate map (the channel-gated x is multiplied by it)",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: CBAM(16, reduction_ratio=4, pool_types=["avg", "max", "lp", "lse"]),
        sizes=((9, 13), (1, 1), (1, 5), (20, 20)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "reduction_ratio": 4},
        bad_args=(({"c1": 16, "pool_types": ["avg", "min"]}, "pool_types"),
                  ({"c1": 16, "pool_types": "avg"}, "pool_types"),
                  ({"c1": 16, "pool_types": []}, "pool_types"),
                  ({"c1": 16, "pool_types": ["avg", 1]}, "pool_types"),
                  ({"c1": 16, "no_spatial": 1}, "no_spatial"),
                  ({"c1": 16, "no_spatial": "False"}, "no_spatial")),
        folds=1,  # the spatial conv + bn
        # the gate logits grow with the input (the MLP, and the eval BatchNorm is a fixed affine map): at ×100 the
        # bf16 rounding of the logits moves gates in their transition by ~3 % of the output, the official module's
        # error exactly (3.08e-2 both, cast to bf16; fp16 1.7e-3); closeness is required at ×1
        scale_robust=False,
    ),
    order=90,
    builtin=True,
)
