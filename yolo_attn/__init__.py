"""yolo-attn: efficient attention layers as plain layer names in Ultralytics model YAMLs.

``import yolo_attn`` makes every shipped layer (``CGA``, ``FLA``, ``LSKA``, ``SHSA``, ``SE``, ...) resolvable by
Ultralytics' ``parse_model`` (right away if Ultralytics is already imported, else the moment it is). With the
package installed, the ``yolo_attn.pth`` start-up hook does the same for the plain ``yolo`` command, with nothing
imported by the user.

Examples:
    >>> import yolo_attn
    >>> from ultralytics import YOLO
    >>> model = YOLO("yolov8n-lska.yaml")  # a shipped config, by name
    >>> type(model.model.model[10]).__name__
    'LSKA'

"""

from __future__ import annotations

import importlib
import sys

import yolo_attn_autoload as _autoload

__version__ = "0.2.0.dev0"
__all__ = [
    "CGA", "FLA", "LSKA", "SHSA", "LAYERS", "LayerArgumentError", "create_layer", "register", "registered",
    "cfg_path", "insert", "transfer",
]

_EXPORTS = {  # name -> the module defining it, imported on first use: `import yolo_attn` alone imports no torch
    **dict.fromkeys(("CGA", "FLA", "LSKA", "SHSA", "LAYERS", "LayerArgumentError", "create_layer"), ".layers"),
    **dict.fromkeys(("REGISTRY", "discover", "register_module"), ".layers.registry"),
    **dict.fromkeys(("cfg_path", "insert"), ".configs"),
    "registered": ".adapter",
}
_SUBMODULES = {"adapter", "bench", "check", "cli", "compare", "configs", "data", "demo", "layers", "names", "show",
               "transfer"}


def __getattr__(name: str):
    """The package's exports and sub-modules, imported when first used (so ``yolo-attn --help`` needs no torch)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:  # every shipped layer class (a new layer file included), from the layers package
        layers = importlib.import_module(".layers", __name__)
        if name.startswith("_") or name not in layers.__all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value = getattr(layers, name)
        return value
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


def register() -> tuple[str, ...]:
    """Make every registered layer usable as a layer name in Ultralytics model YAMLs, with the package's features
    wired in: shipped configs and ``<stock>-<layer>[-<placement>].yaml`` names resolve by name, and ``BaseModel.load``
    pairs checkpoint layers by structure. Idempotent; see :func:`yolo_attn.adapter.register`.

    Returns:
        The names registered by yolo_attn (main names, without aliases).
    """
    from . import adapter
    from .configs import shipped_config
    from .names import resolve
    from .transfer import aligned_source

    return adapter.register(config_resolvers=(shipped_config, resolve), load_aligners=(aligned_source,))


if _autoload.TARGET in sys.modules:
    register()
else:
    _autoload.arm()
