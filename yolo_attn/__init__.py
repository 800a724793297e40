"""yolo-attn: efficient attention layers as plain layer names in Ultralytics model YAMLs.

``import yolo_attn`` makes ``CGA``, ``FLA``, ``LSKA`` and ``SHSA`` resolvable by Ultralytics' ``parse_model``
(right away if Ultralytics is already imported, else the moment it is). With the package installed, the
``yolo_attn.pth`` start-up hook does the same for the plain ``yolo`` command, with nothing imported by the user.

Examples:
    >>> import yolo_attn
    >>> from ultralytics import YOLO
    >>> model = YOLO("yolov8n-lska.yaml")  # a shipped config, by name
    >>> type(model.model.model[10]).__name__
    'LSKA'

"""

from __future__ import annotations

import sys

import yolo_attn_autoload as _autoload

from . import adapter
from .adapter import registered
from .configs import cfg_path, insert, shipped_config
from .layers import CGA, FLA, LAYERS, LSKA, SHSA, LayerArgumentError, create_layer
from .layers.registry import REGISTRY, discover, register_module
from .names import resolve as resolve_name
from .transfer import aligned_source, transfer

__version__ = "0.2.0.dev0"
__all__ = [
    "CGA", "FLA", "LSKA", "SHSA", "LAYERS", "LayerArgumentError", "create_layer", "register", "registered",
    "cfg_path", "insert", "transfer",
]



def register() -> tuple[str, ...]:
    """Make every registered layer usable as a layer name in Ultralytics model YAMLs, with the package's features
    wired in: shipped configs and ``<stock>-<layer>[-<placement>].yaml`` names resolve by name, and ``BaseModel.load``
    pairs checkpoint layers by structure. Idempotent; see :func:`yolo_attn.adapter.register`.

    Returns:
        The names registered by yolo_attn (main names, without aliases).
    """
    return adapter.register(config_resolvers=(shipped_config, resolve_name), load_aligners=(aligned_source,))


if _autoload.TARGET in sys.modules:
    register()
else:
    _autoload.arm()
