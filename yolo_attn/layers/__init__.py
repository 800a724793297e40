"""The four attention layers, plain PyTorch modules that know nothing about Ultralytics.

Every layer takes the input channel count first and returns a map of the same shape (B, C, H, W).
"""

from __future__ import annotations

from torch import nn

from ._checks import LayerArgumentError
from .cga import CGA
from .fla import FLA
from .lska import LSKA
from .shsa import SHSA

__all__ = ["CGA", "FLA", "LSKA", "SHSA", "LAYERS", "LayerArgumentError", "create_layer"]

LAYERS: dict[str, type[nn.Module]] = {"CGA": CGA, "FLA": FLA, "LSKA": LSKA, "SHSA": SHSA}
"""Layer name (as written in a model YAML) -> class."""


def create_layer(name: str, c1: int, *args, **kwargs) -> nn.Module:
    """Build a layer by its YAML name, e.g. ``create_layer("LSKA", 256, 23)``."""
    try:
        cls = LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown yolo_attn layer {name!r}; available: {', '.join(LAYERS)}") from None
    return cls(c1, *args, **kwargs)
