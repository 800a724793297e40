"""The four attention layers, plain PyTorch modules that know nothing about Ultralytics, and the layer registry.

Every layer takes the input channel count first and returns a map of the same shape (B, C, H, W). Each layer file
declares itself with :func:`register_module` (see ``registry.py``); :data:`REGISTRY` holds every registered layer,
the shipped ones and the user's own.

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
from .registry import REGISTRY, LayerSpec, OfficialName, builtin_specs, lookup, register_module, suggest
from .shsa import SHSA

__all__ = [
    "CGA",
    "FLA",
    "LSKA",
    "SHSA",
    "LAYERS",
    "REGISTRY",
    "LayerSpec",
    "OfficialName",
    "LayerArgumentError",
    "register_module",
    "lookup",
    "suggest",
    "builtin_specs",
    "create_layer",
    "fuse_layers",
    "textbook",
    "textbook_enabled",
]

LAYERS: dict[str, type[nn.Module]] = {name: spec.cls for name, spec in builtin_specs().items()}
"""The shipped layers: YAML name -> class (derived from the registry; user modules are in :data:`REGISTRY`)."""


def create_layer(name: str, c1: int, *args, **kwargs) -> nn.Module:
    """Build a registered layer by its YAML name or alias, e.g. ``create_layer("LSKA", 256, 23)``."""
    spec = lookup(name)
    if spec is None:
        hint = suggest(name)
        raise KeyError(f"unknown yolo_attn layer {name!r}" + (f" (did you mean {' or '.join(hint)}?)" if hint else "")
                       + f"; registered: {', '.join(REGISTRY)}")
    return spec.cls(c1, *args, **kwargs)
