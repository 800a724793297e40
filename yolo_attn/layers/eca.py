"""Efficient Channel Attention (ECA).

Paper: Wang, Wu, Zhu, Li, Zuo & Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
CVPR 2020 (https://arxiv.org/abs/1910.03151). Official code: BangguWu/ECANet, ``models/eca_module.py`` (class
``eca_layer``).

A channel gate with no dimensionality reduction: global average pooling gives one value per channel, a 1-D
convolution of kernel ``k`` (no bias, zero padding ``(k - 1) // 2``) slides along the channel axis so that each channel
sees its ``k`` neighbours, a sigmoid turns the result into weights, and the input is scaled channel by channel:
``x * sigmoid(conv1d(GAP(x)))``. The whole layer has ``k`` parameters.

Kernel size: by default it comes from the channel count ``C = c1`` by the paper's adaptive rule (Sec. 3.3, Eq. 12,
γ = 2, b = 1): ``k = ψ(C) = |log2(C)/γ + b/γ|_odd``, computed as in the paper's code listing:
``t = int(abs((log2(C) + b) / γ))``, then ``k = t`` if ``t`` is odd, else ``t + 1`` (the nearest odd number; a tie at
an even integer goes up). That is k = 1 for C < 8, 3 for 8–127, 5 for 128–2047, 7 for 2048–8191 (YOLOv8n's P3/P4/P5
at 64/128/256 channels: 3/5/5). The official repository does not compute it in code (``eca_layer``'s constructor
defaults to ``k_size=3``; ``eca_resnet.py`` takes the per-stage sizes as arguments). An explicit ``k_size`` overrides
the rule.

Faithful: same parameter (``conv.weight``, shape (1, 1, k)) and no others, so an official ``eca_layer(C, k)``
state_dict loads strictly; same initialisation (PyTorch's ``Conv1d`` default) and output at any map size, 1×1
included. The official name ``eca_layer`` is accepted in a model YAML with the official constructor's arguments
(``channel, k_size``; the channel count is replaced by the input channels, and a missing ``k_size`` is the official
default 3, as ``eca_layer(C)`` builds).

Differs: ``ECA``'s own default kernel is the paper's adaptive rule, not the official constructor's fixed 3 (write
``k_size=3`` for that); ``k_size`` must be an odd integer in [1, 31], refused at construction otherwise (the official
module builds with an even size and then fails in ``forward``, its shifted output no longer matching the channels);
the pooling is ``x.mean((2, 3))`` rather than ``AdaptiveAvgPool2d(1)`` (the same average, equal to float rounding).

Fast path: the mean over H×W, the 1-D convolution on the (B, 1, C) row of means, the sigmoid and one broadcast product
with the input (no ``expand_as`` copy and no squeeze/transpose round trip; every tensor at most 3-D before the
product, and nothing sized from the input's shape, so a trace generalises to other sizes and batches). Reference
formulation (:class:`ECAReference`, ``spec.reference``): the official module restated, which the fast path is tested
against.

No attention map: the gate is one weight per channel, the same at every position, so there is no spatial map to draw
(``yolo-attn show`` skips the layer).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_int, check_odd_kernel
from .registry import LayerTests, OfficialName, load_weights, register_module

__all__ = ["ECA", "ECAReference", "eca_kernel_size"]

ECA_GAMMA, ECA_B = 2, 1
"""The paper's γ and b of the adaptive kernel rule (Sec. 3.3; used for all its experiments)."""
ECA_MAX_KERNEL = 31
"""Largest ``k_size`` accepted (the adaptive rule gives 7 up to 8,191 channels)."""


def eca_kernel_size(channels: int, gamma: int = ECA_GAMMA, b: int = ECA_B) -> int:
    """The paper's adaptive kernel size ``|log2(C)/γ + b/γ|_odd`` for ``C = channels``.

    Examples:
        >>> [eca_kernel_size(c) for c in (4, 16, 64, 128, 256, 512, 1024, 2048)]
        [1, 3, 3, 5, 5, 5, 5, 7]
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient channel attention: ``x * sigmoid(conv1d_k(mean_hw(x)))``, a 1-D convolution across channels.

    Args:
        c1 (int): Input channels (filled in from the model YAML); output channels are the same.
        k_size (int | None): Kernel of the 1-D convolution across channels, odd, at most 31; None (the default): the
            paper's adaptive rule ``|log2(c1)/2 + 1/2|_odd`` (1 below 8 channels, 3 for 8–127, 5 for 128–2047, 7 for
            2048–8191).

    YAML row: ``[-1, 1, ECA, []]`` (adaptive kernel) or ``[-1, 1, ECA, [5]]``.

    Examples:
        >>> m = ECA(256)
        >>> m.k_size, m.conv.weight.shape
        (5, torch.Size([1, 1, 5]))
        >>> ECA(64, k_size=7).k_size
        7
        >>> m(torch.randn(2, 256, 20, 16)).shape
        torch.Size([2, 256, 20, 16])
    """

    def __init__(self, c1: int, k_size: int | None = None):
        super().__init__()
        self.c1 = check_int("ECA", "c1 (input channels)", c1)
        if k_size is None:
            k_size = eca_kernel_size(self.c1)
        self.k_size = check_odd_kernel("ECA", "k_size", k_size, high=ECA_MAX_KERNEL)
        self.conv = nn.Conv1d(1, 1, kernel_size=self.k_size, padding=(self.k_size - 1) // 2, bias=False)

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included."""
        return f"c1={self.c1}, k_size={self.k_size}"

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights ``x`` is multiplied by, (B, C, 1, 1)."""
        y = x.mean((2, 3)).unsqueeze(1)  # (B, 1, C): global average pooling, channels as a 1-D sequence
        y = self.conv(y).sigmoid()  # local cross-channel interaction over k neighbours
        return y.squeeze(1)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class ECAReference(nn.Module):
    """The official ``eca_layer(channel, k_size=3)`` restated: the same submodules (``avg_pool``, ``conv``,
    ``sigmoid``; only ``conv.weight`` is a parameter, so its state_dict loads strictly) and the official forward
    written plainly. ``channel`` is unused, as in the official module."""

    def __init__(self, channel: int, k_size: int = 3):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.avg_pool(x)  # (B, C, 1, 1)
        seq = pooled.squeeze(-1).transpose(-1, -2)  # (B, 1, C)
        weights = self.conv(seq).transpose(-1, -2).unsqueeze(-1)  # back to (B, C, 1, 1)
        weights = self.sigmoid(weights)
        return x * weights.expand_as(x)


def _eca_reference(layer: ECA) -> ECAReference:
    """``spec.reference``: :class:`ECAReference` with ``layer``'s weights (the same key, ``conv.weight``; a gate, no
    residual)."""
    return load_weights(ECAReference(layer.c1, layer.k_size), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _eca_plausible(c1: int, kw: dict) -> str | None:
    """An even or very wide ``k_size`` is most likely a channel count written first (``[-1, 1, ECA, [256]]``)."""
    k = kw["k_size"]
    if k is None:
        return None
    if k % 2 == 0 or k > ECA_MAX_KERNEL:
        return f"k_size={k} is not an odd kernel of at most {ECA_MAX_KERNEL}"
    return None


def _official_eca_args(given: dict) -> dict:
    """``eca_layer(channel, k_size=3)`` arguments as ECA's: the official default kernel 3 when none is given."""
    return {"k_size": given.get("k_size", 3)}


def _official_eca(ns, layer: ECA) -> nn.Module:
    """The official ``eca_layer(channel, k_size)`` (class from the namespace ``ns``) with ``layer``'s weights
    (``strict=True``; the same key; a gate, no residual): ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(ns.eca_layer(layer.c1, layer.k_size), layer)


register_module(
    ECA,
    official={"eca_layer": OfficialName(("dim", "k_size"), _official_eca_args)},
    plausible=_eca_plausible,
    summary="Efficient Channel Attention (channel gate `x * sigmoid(conv1d(GAP(x)))`)",
    paper="ECA-Net, CVPR 2020",
    official_code="BangguWu/ECANet `models/eca_module.py` `eca_layer`",
    reference=_eca_reference,
    official_module=_official_eca,
    tests=LayerTests(
        small=lambda: ECA(16),  # adaptive kernel: 3
        sizes=((9, 13), (8, 8), (1, 1), (1, 5)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "k_size": 5},
        bad_args=(({"c1": 16, "k_size": 4}, "k_size"), ({"c1": 16, "k_size": 33}, "k_size"),
                  ({"c1": 16, "k_size": 5.0}, "k_size")),
        folds=0,  # no BatchNorm
    ),
    order=60,
    builtin=True,
)
