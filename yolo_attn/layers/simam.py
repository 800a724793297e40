"""SimAM: a simple, parameter-free attention module.

Paper: Yang, Zhang, Li & Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
ICML 2021 (PMLR 139; https://proceedings.mlr.press/v139/yang21o.html). Official code: ZjjConan/SimAM,
``networks/attentions/simam_module.py`` (class ``simam_module``).

Every activation gets a weight from the closed-form minimal energy of a neuron that tells it apart from the other
neurons of its channel: per channel, with ``mu`` the spatial mean, ``d = (x - mu)^2`` and the variance
``v = sum(d) / n`` over ``n = H·W - 1``, the gate is ``sigmoid(d / (4 (v + e_lambda)) + 0.5)`` and the output
``x * gate``. It has no parameters (an empty state_dict) and no channel mixing.

Faithful: same math, same default (``e_lambda=1e-4``), same output as the official module wherever the official
output is finite (fp32 to a few 1e-7 relative: the fast path multiplies by ``0.25 / (v + e_lambda)`` instead of dividing
by ``4 (v + e_lambda)``); the official constructor's first argument (``channels``, unused) is our ``c1``, filled in
from the YAML. ``simam_module`` is accepted as an alias in YAMLs (same arguments: ``[e_lambda]``; a channel count
written first, as the tutorials do, is recognised and dropped).

Differs:

* A 1×1 map (n = H·W - 1 = 0): the official module computes ``0 / 0`` for the variance (the deviation from a
  single-pixel mean is exactly 0), so its output is NaN for every channel. Here n is taken as 1 there: the variance
  term is 0, the energy ``0 / (4 e_lambda) + 0.5 = 0.5`` and the output ``x * sigmoid(0.5)`` (≈ 0.6225 x), finite.
  That is the only map size where the two differ (H·W ≥ 2 has n ≥ 1, identical formulas).
* Half precision (``.half()``, ``.to(torch.bfloat16)``, or half inputs under autocast): the gate is computed in
  fp32 and the output is returned in the input's dtype. In fp16 the official module overflows: ``(x - mu)^2`` is
  ``inf`` once ``|x - mu| > 255.9`` (then ``inf / inf``: NaN), and the channel sum of squares is ``inf`` once it
  passes 65504 — e.g. a 20×20 map of deviations ~13 — which makes every energy 0 and the gate a constant
  ``sigmoid(0.5)``, silently. The division by a tiny variance is not the risk: ``d <= n v`` bounds the energy by
  ``n / 4 + 0.5`` (finite in fp16 below a 512×512 map). bf16 cannot overflow but sums H·W squares with 8 bits;
  fp32 fixes both. Where the official module is finite in half precision ours agrees to half-precision rounding
  (ours is the closer to the fp32 result). Under CUDA autocast the official output is fp32 (``sum`` autocasts to
  fp32, which promotes the product); ours keeps the input's dtype.
* ``e_lambda`` is checked: a positive finite number (bools, strings, 0, negatives, NaN and infinities are refused
  with a message naming the layer and the argument); the official module takes anything.
* ``c1`` is checked as a positive integer (the official ``channels`` is unused and unchecked).

Fast path: in eval/inference (no autograd, not tracing) one map-sized temporary: the deviation is squared in place,
scaled, shifted, passed through the sigmoid and multiplied by ``x`` in place (the official forward allocates six
map-sized tensors). With autograd the same math out of place. ``n`` is computed from the traced sizes, so one
``torch.jit.trace`` serves every map size. Reference formulation (:class:`SimAMReference`, ``spec.reference``): the
official module restated — its attribute ``activaton`` (sic), its forward written plainly — with the 1×1 rule above
as its one change (so parity is testable at 1×1); :func:`_official_simam` builds the real official class unchanged.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from ._checks import check_int, check_positive_float
from .registry import LayerTests, load_weights, register_module

__all__ = ["SimAM", "SimAMReference"]

_HALF = (torch.float16, torch.bfloat16)


def _dof(h, w):
    """``n = h·w - 1``, but 1 for a 1×1 map (the official 0 gives 0/0). Written without a Python branch so that it
    works on the sizes ``torch.jit.trace`` records (tensors) and on ``torch.compile``'s symbolic sizes."""
    hw = h * w
    return hw - 1 + (hw == 1)


class SimAM(nn.Module):
    """Parameter-free energy-based attention: ``x * sigmoid((x - mu)^2 / (4 (var + e_lambda)) + 0.5)`` per channel.

    Args:
        c1 (int): Input channels (filled in from the model YAML; the math does not use it); output channels are the
            same.
        e_lambda (float): Regulariser lambda of the energy, added to the channel variance; positive (paper: 1e-4).

    YAML row: ``[-1, 1, SimAM, []]`` or ``[-1, 1, SimAM, [0.0001]]``

    Examples:
        >>> m = SimAM(64)
        >>> m(torch.randn(1, 64, 20, 20)).shape
        torch.Size([1, 64, 20, 20])
        >>> sum(p.numel() for p in m.parameters())
        0
    """

    def __init__(self, c1: int, e_lambda: float = 1e-4):
        super().__init__()
        self.c1 = check_int("SimAM", "c1 (input channels)", c1)
        self.e_lambda = check_positive_float("SimAM", "e_lambda", e_lambda)

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return f"c1={self.c1}, e_lambda={self.e_lambda:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in _HALF else x  # the sums of squares in fp32 (see the module docstring)
        n = _dof(x.shape[2], x.shape[3])
        mu = xf.mean(dim=(2, 3), keepdim=True)
        if xf.requires_grad or torch.jit.is_tracing():
            d = (xf - mu).square()  # (B, C, H, W)
            scale = 0.25 / (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)  # 1 / (4 (v + lambda)), (B, C, 1, 1)
            y = xf * torch.sigmoid(d * scale + 0.5)
        else:
            d = (xf - mu).square_()  # the one map-sized temporary; everything below happens in it
            scale = 0.25 / (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)
            y = d.mul_(scale).add_(0.5).sigmoid_().mul_(xf)
        return y.to(x.dtype)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, cells) -> list[torch.Tensor]:
        """The gate map ``x`` is multiplied by, mean over channels (one map: the gate has no query). x: (1, C, H, W)."""
        return [_simam_reference(self)(x.float(), maps=True)[0].mean(0)]


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class SimAMReference(nn.Module):
    """The official ``simam_module(channels=None, e_lambda=1e-4)`` restated: same attribute names (``activaton``,
    ``e_lambda``; no state), the official forward written plainly, except that a 1×1 map takes n = 1 (the official
    n = 0 gives NaN). ``forward(x, maps=True)`` returns the gate itself (``yolo-attn show``)."""

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4):
        super().__init__()
        self.activaton = nn.Sigmoid()  # (sic) the official attribute name
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        b, c, h, w = x.size()
        n = max(w * h - 1, 1)  # official: w * h - 1 (0 on a 1×1 map: 0 / 0)
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = x_minus_mu_square / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        gate = self.activaton(y)
        return gate if maps else x * gate


def _simam_reference(layer: SimAM) -> SimAMReference:
    """``spec.reference``: :class:`SimAMReference` with ``layer``'s arguments and (empty) state, in its mode."""
    return load_weights(SimAMReference(layer.c1, layer.e_lambda), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _simam_plausible(c1: int, kw: dict) -> str | None:
    lam = kw["e_lambda"]
    if isinstance(lam, numbers.Real) and not isinstance(lam, bool) and lam > 1:
        return f"e_lambda={lam} is larger than 1 (the paper uses 1e-4; it regularises the channel variance)"
    return None


def _official_simam(ns, layer: SimAM) -> nn.Module:
    """The official ``simam_module(channels, e_lambda)`` (class from the namespace ``ns``), unchanged (NaN on a 1×1
    map), in ``layer``'s mode (no state to load; strict load of the empty state_dict): ``official_module``,
    ``yolo-attn bench --official``."""
    return load_weights(ns.simam_module(layer.c1, layer.e_lambda), layer)


register_module(
    SimAM,
    aliases=("simam_module",),
    defaults=lambda grid: [1e-4],
    plausible=_simam_plausible,
    summary="SimAM parameter-free energy attention (gating `x * sigmoid(energy)`)",
    paper="SimAM, ICML 2021",
    official_code="ZjjConan/SimAM `networks/attentions/simam_module.py` `simam_module`",
    reference=_simam_reference,
    official_module=_official_simam,
    maps_caption="gate map (x is multiplied by it), mean over channels",
    maps_per_query=False,
    tests=LayerTests(
        small=lambda: SimAM(16),
        sizes=((9, 13), (1, 1), (1, 5), (20, 20)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16},
        bad_args=tuple(({"c1": 16, "e_lambda": bad}, "e_lambda")
                       for bad in (0, 0.0, -1e-4, float("nan"), float("inf"), "1e-4", True, None)),
        folds=0,  # no BatchNorm, no parameters
    ),
    order=70,
    builtin=True,
)
