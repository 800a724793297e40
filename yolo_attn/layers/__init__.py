"""The attention layers, plain PyTorch modules that know nothing about Ultralytics, and the layer registry.

Every layer takes the input channel count first and returns a map of the same shape (B, C, H, W). A layer is one
file in this folder: its class, its registry declaration (:func:`register_module`: YAML name, channel rule, per-map
defaults, official names, order), its reference formulation, its attention maps for ``yolo-attn show`` and its test
declarations (:class:`LayerTests`). The files are found here by discovery — every public module of this package is
imported and registers what it declares — so a new layer needs no edit anywhere else. :data:`REGISTRY` holds every
registered layer, the shipped ones and the user's own.

``fuse_layers(model)`` folds the BatchNorms inside the layers into their convolutions for inference;
``with textbook():`` runs every attention in its explicit, materialised form (the export form).
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from ._checks import LayerArgumentError
from .attention import textbook, textbook_enabled
from .conv_bn import fuse_layers
from .registry import REGISTRY, LayerSpec, LayerTests, OfficialName, builtin_specs, lookup, register_module, suggest

LAYER_MODULES: tuple[str, ...] = tuple(
    importlib.import_module(f"{__name__}.{info.name}").__name__
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
    if not info.name.startswith("_")
)
"""Every public module of this package, imported in name order: the layer files register their layers."""

LAYERS: dict[str, type[nn.Module]] = {name: spec.cls for name, spec in builtin_specs().items()}
"""The shipped layers: YAML name -> class (derived from the registry; user modules are in :data:`REGISTRY`)."""

globals().update(LAYERS)  # yolo_attn.layers.CGA, ... for every shipped layer file

__all__ = [
    *LAYERS,
    "LAYERS",
    "LAYER_MODULES",
    "REGISTRY",
    "LayerSpec",
    "LayerTests",
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


def create_layer(name: str, c1: int, *args, **kwargs) -> nn.Module:
    """Build a registered layer by its YAML name or alias, e.g. ``create_layer("LSKA", 256, 23)``."""
    spec = lookup(name)
    if spec is None:
        hint = suggest(name)
        raise KeyError(f"unknown yolo_attn layer {name!r}" + (f" (did you mean {' or '.join(hint)}?)" if hint else "")
                       + f"; registered: {', '.join(REGISTRY)}")
    return spec.cls(c1, *args, **kwargs)
