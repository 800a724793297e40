"""Squeeze-and-Excitation (SE) channel gate.

Paper: Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (https://arxiv.org/abs/1709.01507). Official
code: hujie-frank/SENet (Caffe prototxts, no PyTorch module); the PyTorch module matched here is torchvision's
``torchvision/ops/misc.py`` (class ``SqueezeExcitation``), the same math.

Squeeze: global average pooling of each channel to one number. Excitation: a bottleneck of two 1×1 convolutions
(``fc1`` C → C/r with bias, ReLU, ``fc2`` C/r → C with bias), then a sigmoid; the result scales each channel of the
input: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``. A channel gate: one weight per channel and image, no spatial
map (so there is no ``attention_maps`` to draw).

Faithful: ``SE(c1, r)`` has the state_dict of ``torchvision.ops.SqueezeExcitation(c1, max(c1 // r, 1))`` (the same
submodule names ``avgpool``, ``fc1``, ``fc2``, ``activation``, ``scale_activation``; keys ``fc1.weight``,
``fc1.bias``, ``fc2.weight``, ``fc2.bias``), the same initialisation (PyTorch's convolution defaults) and the same
outputs in eval and train mode (no BatchNorm, nothing depends on the mode) at any H×W, 1×1 included.

Differs:

* torchvision takes the squeeze width itself and has no default; here the paper's reduction ratio is the argument:
  ``SE(c1, r=16)`` squeezes to ``max(c1 // r, 1)`` channels (r = 16 is the paper's setting; the floor at
  one channel keeps ``r > c1`` buildable).
* The activations are fixed to the paper's ReLU and sigmoid (torchvision lets them be replaced).
* Constructor arguments are checked (non-integers, 0 and negatives refused naming SE and the argument).

Fast path: the layer's forward is the official computation itself (pool, two 1×1 convolutions on the C×1×1 vector,
the gate broadcast over the map in one multiply): there is nothing to restructure. Reference formulation
(:class:`SqueezeExcitationReference`, ``spec.reference``): torchvision's module restated plainly, which the layer
is tested against; the tests also load the layer's state_dict strictly into torchvision's class.
Traced (export): ``AdaptiveAvgPool2d(1)``, two 1×1 convolutions, ReLU, sigmoid, a broadcast multiply; 4-D only.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_int
from .registry import LayerTests, load_weights, register_module

__all__ = ["SE", "SqueezeExcitationReference", "se_squeeze_channels"]


def se_squeeze_channels(c1: int, r: int) -> int:
    """The bottleneck width for ``c1`` channels and reduction ratio ``r``: ``max(c1 // r, 1)``."""
    return max(c1 // r, 1)


class SE(nn.Module):
    """Squeeze-and-excitation channel gate: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``.

    Args:
        c1 (int): Input channels (filled in from the model YAML); output channels are the same.
        r (int): Reduction ratio (the paper's 16): the bottleneck has ``max(c1 // r, 1)`` channels.

    YAML row: ``[-1, 1, SE, [16]]`` (alias ``SqueezeExcitation``, same argument: the ratio ``r``)

    Examples:
        >>> m = SE(64)
        >>> m.fc1
        Conv2d(64, 4, kernel_size=(1, 1), stride=(1, 1))
        >>> m(torch.randn(2, 64, 20, 15)).shape
        torch.Size([2, 64, 20, 15])
    """

    def __init__(self, c1: int, r: int = 16):
        super().__init__()
        c1 = check_int("SE", "c1 (input channels)", c1)
        self.r = check_int("SE", "r", r)
        c_ = se_squeeze_channels(c1, self.r)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c1, c_, 1)
        self.fc2 = nn.Conv2d(c_, c1, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def extra_repr(self) -> str:
        """The resolved arguments, c1 included, and the squeeze width they give."""
        return f"c1={self.fc1.in_channels}, r={self.r}, squeeze_channels={self.fc1.out_channels}"

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel scale ``x`` is multiplied by: (B, C, 1, 1)."""
        s = self.avgpool(x)  # squeeze: (B, C, 1, 1)
        s = self.activation(self.fc1(s))  # excitation bottleneck: (B, C/r, 1, 1)
        return self.scale_activation(self.fc2(s))  # (B, C, 1, 1) in (0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)  # broadcast over H×W (a fresh tensor: x may be used elsewhere in the model)


# ----------------------------------------------------------------------------------------------------------------------
# reference formulation: the official module restated
# ----------------------------------------------------------------------------------------------------------------------
class SqueezeExcitationReference(nn.Module):
    """``torchvision.ops.SqueezeExcitation(input_channels, squeeze_channels)`` restated with its default activations
    (ReLU, sigmoid): the same attribute names (so its state_dict loads strictly), its forward written plainly."""

    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        scale = self.scale_activation(scale)
        return scale * x


def _se_reference(layer: SE) -> SqueezeExcitationReference:
    """``spec.reference``: :class:`SqueezeExcitationReference` with ``layer``'s weights (the same keys; a gate, no
    residual)."""
    return load_weights(SqueezeExcitationReference(layer.fc1.in_channels, layer.fc1.out_channels), layer)


# ----------------------------------------------------------------------------------------------------------------------
# registry declaration
# ----------------------------------------------------------------------------------------------------------------------
def _se_plausible(c1: int, kw: dict) -> str | None:
    if kw["r"] >= c1 > 1:
        return f"r={kw['r']} squeezes c1={c1} channels to a single one (the paper uses r=16)"
    return None


def _official_se(ns, layer: SE) -> nn.Module:
    """``SqueezeExcitation(input_channels, squeeze_channels)`` (class from the namespace ``ns``, e.g.
    ``torchvision.ops``) with ``layer``'s weights (``strict=True``; the same keys; a gate, no residual):
    ``official_module``, ``yolo-attn bench --official``."""
    return load_weights(ns.SqueezeExcitation(layer.fc1.in_channels, layer.fc1.out_channels), layer)


register_module(
    SE,
    aliases=("SqueezeExcitation",),
    plausible=_se_plausible,
    summary="Squeeze-and-Excitation channel gate (`x * sigmoid(MLP(avgpool(x)))`)",
    paper="SENet, CVPR 2018",
    official_code="torchvision `torchvision/ops/misc.py` `SqueezeExcitation` (hujie-frank/SENet is Caffe)",
    reference=_se_reference,
    official_module=_official_se,
    tests=LayerTests(
        small=lambda: SE(16, r=4),
        sizes=((9, 13), (1, 1), (1, 3)),
        trace=((20, 20), ((16, 24), (1, 1), (3, 50))),
        int_args={"c1": 16, "r": 4},
        bad_args=(({"c1": -8, "r": 16}, "c1"), ({"c1": 16, "r": -16}, "r")),
        folds=0,  # no BatchNorm
    ),
    order=50,
    builtin=True,
)
