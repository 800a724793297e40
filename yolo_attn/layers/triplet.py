"""Triplet Attention.

Paper: Misra, Nalamada, Arasanipalai & Hou, "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021
(https://arxiv.org/abs/2010.03045). Official code: landskape-ai/triplet-attention, ``MODELS/triplet_attention.py``
(class ``TripletAttention``, with its ``SpatialGate``, ``ChannelPool`` and ``BasicConv`` helpers; the module of the
published ImageNet checkpoints). The repository's root ``triplet_attention.py`` is the same math with other names
(``cw``/``hc``/``hw``, ``AttentionGate``, ``ZPool``); its state_dict loads into this layer too (see below).

Three branches, each a gate on the input computed from a 2-channel "Z-pool" (max and mean over one axis) of it: a
7×7 convolution 2 → 1 (no bias), BatchNorm (``eps=1e-5, momentum=0.01``), sigmoid.

* ``ChannelGateH`` (C–W interaction): pool over H; the convolution runs on the (C, W) plane; gate (B, C, 1, W).
* ``ChannelGateW`` (H–C interaction): pool over W; the convolution runs on the (H, C) plane; gate (B, C, H, 1).
* ``SpatialGate`` (H–W, absent with ``no_spatial=True``): pool over C; the convolution runs on the (H, W) plane;
  gate (B, 1, H, W).

Output: ``x * (a_cw + a_hc + a_hw) / 3`` (``x * (a_cw + a_hc) / 2`` with ``no_spatial``). The official module gets the
first two by rotating the input (``permute`` + ``contiguous``), gating it as the spatial branch does, and rotating
the result back.

Faithful: ``TripletAttention(c1)`` has the state_dict of the official ``TripletAttention(gate_channels=c1)`` (keys
``ChannelGateH.spatial.conv.weight``, ``ChannelGateH.spatial.bn.{weight,bias,running_mean,running_var,
num_batches_tracked}``, the same for ``ChannelGateW`` and ``SpatialGate``; no ``SpatialGate`` with ``no_spatial``),
loading strictly both ways; the same constructor arguments and defaults after ``c1``; the same initialisation
(PyTorch defaults, drawn in the official order: the same seed gives the same weights); the same BatchNorm settings
and train-mode statistics (each branch's BatchNorm sees the same pooled maps as the official one); the same outputs
in eval and train mode at any H×W, 1×1 included, and the same gradients (max pooling with indices, as ``torch.max``
routes a tie's gradient to one element, whenever the input needs a gradient). Parameter gradients in train mode on
maps of a few cells per batch (a 1×1 map, batch 2) are ill-conditioned in the official form itself — its
BatchNorms then normalise two values — ~1e-3 from fp64 in fp32 for both forms.

Differs:

* ``gate_channels`` is ``c1``, filled in from the model YAML (output channels = input channels).
* ``reduction_ratio`` and ``pool_types`` have no effect, as in the official module (leftovers of CBAM's channel
  gate there); only ``no_spatial`` changes the module. They are kept so that an official row's arguments build.
* Constructor arguments are checked (non-integers, 0 and negatives refused for ``c1`` and ``reduction_ratio``;
  ``pool_types`` must be a list of CBAM's pool names, ``no_spatial`` a bool), naming the layer and the argument.
* Each ``conv`` + ``bn`` pair is a :class:`TripletConvBN` (a :class:`~.conv_bn.ConvBN` whose children keep the
  official names ``conv`` and ``bn``), so :func:`~.conv_bn.fuse_layers` folds the three BatchNorms (a fused branch's
  keys are then ``ChannelGateH.spatial.weight``/``.bias``). Loading also accepts the root file's keys
  (``cw.conv.conv.weight`` ... for ``ChannelGateH.spatial.conv.weight`` ...; ``cw`` is ``ChannelGateH``, ``hc``
  ``ChannelGateW``, ``hw`` ``SpatialGate``); ``state_dict()`` writes the ``MODELS`` keys.
* Inside an Ultralytics model every BatchNorm gets Ultralytics' ``eps=1e-3, momentum=0.03`` (its
  ``initialize_weights`` sets them on every ``BatchNorm2d`` of the model, the official module's too); built directly,
  the layer has the official ``eps=1e-5, momentum=0.01``.

Fast path: no rotation of the input. Each Z-pool reduces ``x`` along the pooled axis as it lies in memory (max and
mean over H, over W, over C), and only the small pooled map is arranged for the convolution: (B, 2, C, W) is already
the ``ChannelGateH`` layout, (B, 2, C, H) is transposed to the ``ChannelGateW`` (H, C) plane (2·C·H elements); the
1-channel gates come back as broadcastable views (B, C, 1, W) and (B, C, H, 1). Each gate is divided by the branch
count while small, and the three are summed into one map-sized tensor that multiplies ``x`` once — in place into
that sum when no autograd record needs it — where the official form makes four rotated map-sized copies (two of the
input, two of gated products), three gated products, two sums and a scaling. Without autograd on ``x`` the max pools
are ``amax`` (no indices). The gates are summed in ``x``'s dtype, as the official products are (under autocast the
convolutions give half). Inputs ×100 in fp16/bf16: the gates' logits grow with the input (the eval BatchNorm is a
fixed affine), so rounding moves those near 0 along the sigmoid's slope, for both forms alike (``scale_robust=False``).
Reference formulation (:class:`TripletAttentionReference`, ``spec.reference``): the official module restated —
rotations, Z-pools, gates, rotations back, the average of the three gated maps — which the fast path is tested
against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._checks import LayerArgumentError, check_bool, check_int
from .cbam import CBAM_POOL_TYPES  # CBAM's pool names: what the (unused) pool_types may list
from .conv_bn import ConvBN
from .registry import LayerTests, load_weights, register_module

__all__ = ["TripletAttention", "TripletAttentionReference", "TripletBranch", "TripletConvBN"]

TRIPLET_KERNEL = 7
"""The official gates' convolution kernel (fixed in the official ``SpatialGate``)."""
_BRANCHES = ("ChannelGateH", "ChannelGateW", "SpatialGate")
_ROOT_NAMES = (("cw.conv.", "ChannelGateH.spatial."), ("hc.conv.", "ChannelGateW.spatial."),
               ("hw.conv.", "SpatialGate.spatial."))
"""The root ``triplet_attention.py`` key prefixes -> the ``MODELS/triplet_attention.py`` ones (read on loading)."""


class TripletConvBN(ConvBN):
    """The official ``BasicConv(2, 1, 7, padding=3, relu=False)``: ``Conv2d`` (no bias) then ``BatchNorm2d(eps=1e-5,
    momentum=0.01)``, children named ``conv`` and ``bn`` as there (state_dict keys ``conv.weight``, ``bn.*``); a
    :class:`~.conv_bn.ConvBN`, so ``fuse_layers`` folds it into one ``Conv2d``."""

    def __init__(self, k: int = TRIPLET_KERNEL):
        nn.Sequential.__init__(self)
        self.add_module("conv", nn.Conv2d(2, 1, k, 1, (k - 1) // 2, bias=False))
        self.add_module("bn", nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True))


class TripletBranch(nn.Module):
    """One branch's parameters, under the official ``SpatialGate``'s attribute name: ``spatial`` (a
    :class:`TripletConvBN`, or its fused ``Conv2d``). The branch's computation is in :meth:`TripletAttention.gates`."""

    def __init__(self):
        super().__init__()
        self.spatial = TripletConvBN()


def _check_pool_types(pool_types) -> tuple[str, ...]:
    if isinstance(pool_types, str) or not isinstance(pool_types, Sequence) or not pool_types or \
            any(p not in CBAM_POOL_TYPES for p in pool_types):
        raise LayerArgumentError(
            f"TripletAttention: pool_types must be a list of pool names from {', '.join(CBAM_POOL_TYPES)}, got "
            f"{pool_types!r}; it has no effect (as in the official module): leave it out, e.g. [-1, 1, "
            "TripletAttention, []].")
    return tuple(pool_types)


def _check_no_spatial(no_spatial) -> bool:
    return check_bool("TripletAttention", "no_spatial", no_spatial)


class _RootKeys(nn.Module):
    """Loading reads the root ``triplet_attention.py`` spelling too (``cw.conv.*`` -> ``ChannelGateH.spatial.*``
    ...); our own (``MODELS``) spelling passes unchanged. A method of the class, not a hook: nothing extra is
    pickled."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            for old, new in _ROOT_NAMES:
                if rest.startswith(old):
                    state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                    break
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _zpool(x: torch.Tensor, dim: int, with_indices: bool) -> torch.Tensor:
    """The official ``ChannelPool`` of ``x`` rotated so that ``dim`` comes first: (max, mean) over ``dim``, stacked
    as two channels in front of the remaining axes, in their order. ``with_indices``: ``torch.max`` (its gradient goes
    to one element of a tie, as the official module's), else ``amax`` (no indices; inference)."""
    mx = x.max(dim).values if with_indices else x.amax(dim)
    return torch.stack((mx, x.mean(dim)), 1)


class TripletAttention(_RootKeys):
    """Triplet attention gate: ``x * (a_cw + a_hc + a_hw) / 3``, three gates from Z-pools along H, W and C.

    Args:
        c1 (int): Input channels (the official ``gate_channels``, filled in from the model YAML); output channels
            are the same.
        reduction_ratio (int): No effect (as in the official module); checked to be a positive integer.
        pool_types (list[str]): No effect (as in the official module); names from ``avg``, ``max``, ``lp``, ``lse``.
        no_spatial (bool): Leave out the H–W spatial branch: ``x * (a_cw + a_hc) / 2``.

    YAML row: ``[-1, 1, TripletAttention, []]`` (or ``[16, [avg, max], True]`` for no_spatial)

    Examples:
        >>> m = TripletAttention(64)
        >>> m(torch.randn(1, 64, 20, 12)).shape
        torch.Size([1, 64, 20, 12])
        >>> sorted(m.state_dict())[:2]  # the official module's keys
        ['ChannelGateH.spatial.bn.bias', 'ChannelGateH.spatial.bn.num_batches_tracked']
    """

    def __init__(self, c1: int, reduction_ratio: int = 16, pool_types: Sequence[str] = ("avg", "max"),
                 no_spatial: bool = False):
        super().__init__()
        self.c1 = check_int("TripletAttention", "c1 (input channels)", c1)
        self.reduction_ratio = check_int("TripletAttention", "reduction_ratio", reduction_ratio)
        self.pool_types = _check_pool_types(pool_types)
        self.no_spatial = _check_no_spatial(no_spatial)
        self.ChannelGateH = TripletBranch()  # official order: H, W, then the spatial gate
        self.ChannelGateW = TripletBranch()
        if not self.no_spatial:
            self.SpatialGate = TripletBranch()

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included (reduction_ratio and pool_types have no effect)."""
        return f"c1={self.c1}, no_spatial={self.no_spatial}"

    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch's gate divided by the branch count, broadcastable to x (B, C, H, W): (B, C, 1, W) from
        ``ChannelGateH``, (B, C, H, 1) from ``ChannelGateW``, then (B, 1, H, W) from ``SpatialGate`` unless
        ``no_spatial``. Their sum is what ``x`` is multiplied by."""
        w = 0.5 if self.no_spatial else 1 / 3
        idx = x.requires_grad
        a_cw = self.ChannelGateH.spatial(_zpool(x, 2, idx))  # (B, 2, C, W): the official rotated plane as it is
        a_hc = self.ChannelGateW.spatial(_zpool(x, 3, idx).transpose(2, 3))  # (B, 2, C, H) -> the (H, C) plane
        # in x's dtype before the sum (autocast: the convolutions give half, the official form sums x's products)
        out = [a_cw.sigmoid().to(x.dtype).mul(w).transpose(1, 2),  # (B, 1, C, W) -> (B, C, 1, W): a view
               a_hc.sigmoid().to(x.dtype).mul(w).permute(0, 3, 2, 1)]  # (B, 1, H, C) -> (B, C, H, 1): a view
        if not self.no_spatial:
            a_hw = self.SpatialGate.spatial(_zpool(x, 1, idx))  # (B, 1, H, W): the (H, W) plane
            out.append(a_hw.sigmoid().to(x.dtype).mul(w))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates(x)
        gate = g[0] + g[1]  # (B, C, H, W): the one map-sized tensor
        if len(g) == 3:
            gate = gate.add_(g[2])  # in place: add needs none of its inputs for its gradient
        if gate.requires_grad or x.requires_grad or torch.jit.is_tracing():
            return x * gate
        return gate.mul_(x)  # in place into the fresh sum (no autograd record needs it)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The gate ``x`` is multiplied by (the average of the branches' gates), mean over channels (one map: a gate
        has no query). x: (1, C, H, W)."""
        g = self.gates(x)
        m = g[0][0].mean(0) + g[1][0].mean(0)  # (1, W) + (H, 1): the channel means of the two rotated gates
        if len(g) == 3:
            m = m + g[2][0, 0]
        return [m]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class _BasicConvReference(nn.Module):
    """The official ``BasicConv`` as the gates build it (``relu=False, bn=True, bias=False``): conv, then BatchNorm."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _ChannelPoolReference(nn.Module):
    """The official ``ChannelPool`` (Z-pool): max and mean over the first axis, as two channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class _SpatialGateReference(nn.Module):
    """The official ``SpatialGate``: ``x * sigmoid(bn(conv7×7(zpool(x))))``."""

    def __init__(self):
        super().__init__()
        kernel_size = TRIPLET_KERNEL
        self.compress = _ChannelPoolReference()
        self.spatial = _BasicConvReference(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_compress = self.compress(x)
        x_out = self.spatial(x_compress)
        scale = torch.sigmoid(x_out)
        return x * scale


class TripletAttentionReference(nn.Module):
    """The official ``TripletAttention(gate_channels, reduction_ratio=16, pool_types=["avg", "max"],
    no_spatial=False)`` restated (the default list as a tuple; the first three arguments unused there too): the same
    attribute names (its state_dict loads strictly), the official forward written plainly — rotate, gate, rotate
    back, average."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16, pool_types: Sequence[str] = ("avg", "max"),
                 no_spatial: bool = False):
        super().__init__()
        self.ChannelGateH = _SpatialGateReference()
        self.ChannelGateW = _SpatialGateReference()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = _SpatialGateReference()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_perm1 = x.permute(0, 2, 1, 3).contiguous()  # (B, H, C, W): pool over H, gate on the (C, W) plane
        x_out1 = self.ChannelGateH(x_perm1)
        x_out11 = x_out1.permute(0, 2, 1, 3).contiguous()
        x_perm2 = x.permute(0, 3, 2, 1).contiguous()  # (B, W, H, C): pool over W, gate on the (H, C) plane
        x_out2 = self.ChannelGateW(x_perm2)
        x_out21 = x_out2.permute(0, 3, 2, 1).contiguous()
        if not self.no_spatial:
            x_out = self.SpatialGate(x)  # pool over C, gate on the (H, W) plane
            return (1 / 3) * (x_out + x_out11 + x_out21)
        return (1 / 2) * (x_out11 + x_out21)


def _triplet_reference(layer: TripletAttention) -> TripletAttentionReference:
    """``spec.reference``: :class:`TripletAttentionReference` with ``layer``'s weights (the same keys: a gate, no
    residual)."""
    return load_weights(TripletAttentionReference(layer.c1, layer.reduction_ratio, layer.pool_types,
                                                  layer.no_spatial), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _official_triplet(ns, layer: TripletAttention) -> nn.Module:
    """The official ``TripletAttention(gate_channels, reduction_ratio, pool_types, no_spatial)`` (class from the
    namespace ``ns``, ``MODELS/triplet_attention.py``) with ``layer``'s weights (``strict=True``; the same keys; a
    gate, no residual): ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(ns.TripletAttention(layer.c1, layer.reduction_ratio, list(layer.pool_types),
                                            no_spatial=layer.no_spatial), layer)


register_module(
    TripletAttention,
    pickled=(TripletBranch, TripletConvBN),
    summary="Triplet Attention (gating `x * mean(a_cw, a_hc, a_hw)`, Z-pool + 7×7 conv per rotation)",
    paper="Triplet Attention, WACV 2021",
    official_code="landskape-ai/triplet-attention `MODELS/triplet_attention.py` `TripletAttention`",
    reference=_triplet_reference,
    official_module=_official_triplet,
    maps_caption="effective gate (a_cw + a_hc + a_hw)/3 (x is multiplied by it), mean over channels",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: TripletAttention(16),
        sizes=((9, 13), (1, 1), (5, 1), (1, 7)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "reduction_ratio": 16},
        bad_args=(({"c1": -16}, "c1"), ({"c1": 16, "reduction_ratio": 1.5}, "reduction_ratio"),
                  ({"c1": 16, "pool_types": ["mean"]}, "pool_types"), ({"c1": 16, "pool_types": "avg"}, "pool_types"),
                  ({"c1": 16, "no_spatial": 1}, "no_spatial")),
        folds=3,  # the three gates' conv + bn
        # ×100 inputs: the gates' logits scale with the input (the eval BatchNorm is a fixed affine), ~1e2 here, so
        # fp16/bf16 rounding moves those near 0 across the sigmoid's slope: 1e-2 (fp16) / 5e-2 (bf16) from fp64 — the
        # official form's error too, equal to ours bit for bit under .half()
        scale_robust=False,
    ),
    order=110,
    builtin=True,
)
