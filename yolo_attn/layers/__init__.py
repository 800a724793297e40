"""The four attention layers, plain PyTorch modules that know nothing about Ultralytics.

Every layer takes the input channel count first and returns a map of the same shape (B, C, H, W).

``fuse_layers(model)`` folds the BatchNorms inside the layers into their convolutions for inference;
``with textbook():`` runs every layer in its plain textbook formulation (the reference of the fast paths).
"""

from __future__ import annotations

from torch import nn

from ._checks import LayerArgumentError
from .attention import textbook, textbook_enabled
from .cga import CGA
from .conv_bn import fuse_layers
from .fla import FLA
from .lska import LSKA
from .shsa import SHSA

__all__ = [
    "CGA",
    "FLA",
    "LSKA",
    "SHSA",
    "LAYERS",
    "LayerArgumentError",
    "create_layer",
    "fuse_layers",
    "textbook",
    "textbook_enabled",
]

LAYERS: dict[str, type[nn.Module]] = {"CGA": CGA, "FLA": FLA, "LSKA": LSKA, "SHSA": SHSA}
"""Layer name (as written in a model YAML) -> class."""


def create_layer(name: str, c1: int, *args, **kwargs) -> nn.Module:
    """Build a layer by its YAML name, e.g. ``create_layer("LSKA", 256, 23)``."""
    try:
        cls = LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown yolo_attn layer {name!r}; available: {', '.join(LAYERS)}") from None
    return cls(c1, *args, **kwargs)
