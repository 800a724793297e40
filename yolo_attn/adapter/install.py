"""Registration: every patch of the adapter and every registered layer, installed into Ultralytics.

:func:`register` is the adapter's one entry point; the hooks of the model features (config resolvers, load
aligners) are passed to it by the caller (``yolo_attn.register``, the package's composition point), so nothing is
wired by importing a module.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, Iterable

import yolo_attn_autoload as _autoload
from torch import nn

from ..layers.registry import REGISTRY, discover, subscribe
from .checkpoints import add_load_aligner, allow, wrap_load, wrap_torch_safe_load
from .config_files import add_config_resolver, wrap_yaml_model_load
from .console import install_error_display
from .exporting import EXPORTER_MODULE, wrap_exporter
from .models import wrap_fuse
from .parse import wrap_parse_model
from .rows import install_layer, registered
from .square import SQUARE_PATCHES
from .ultralytics_layers import ULTRALYTICS_SPECS

__all__ = ["register"]

_lock = threading.RLock()
_subscribed = False


def _install(tasks, spec) -> None:
    install_layer(tasks, spec)
    allow(spec)


def register(config_resolvers: Iterable[Callable[[str], dict | None]] = (),
             load_aligners: Iterable[Callable[[nn.Module, nn.Module], nn.Module | None]] = ()) -> tuple[str, ...]:
    """Make every registered layer usable as a layer name in Ultralytics model YAMLs. Idempotent.

    Also imports the user's modules named in ``YOLO_ATTN_IMPORTS`` and the ``yolo_attn.modules`` entry points
    (:func:`yolo_attn.layers.registry.discover`); layers registered later are installed as they register. A name
    Ultralytics itself already defines is left alone (with a warning) and not returned.

    Args:
        config_resolvers: functions ``resolver(name) -> dict | None`` that supply the model dict of a config name
            which is no local file (:func:`yolo_attn.adapter.config_files.add_config_resolver`), asked in order.
        load_aligners: functions ``aligner(model, source) -> view | None`` that lay a checkpoint model out like the
            model ``BaseModel.load`` loads it into (:func:`yolo_attn.adapter.checkpoints.add_load_aligner`).

    Returns:
        The names registered by yolo_attn (main names, without aliases).
    """
    for resolver in config_resolvers:
        add_config_resolver(resolver)
    for aligner in load_aligners:
        add_load_aligner(aligner)
    tasks = importlib.import_module("ultralytics.nn.tasks")  # also while that module is still being imported
    with _lock:
        wrap_parse_model(tasks)
        wrap_fuse(tasks)
        wrap_load(tasks)
        wrap_yaml_model_load(tasks)
        wrap_torch_safe_load(tasks)
        for module, patch in SQUARE_PATCHES.items():
            _autoload.when_imported(module, patch)
        _autoload.when_imported(EXPORTER_MODULE, wrap_exporter)
        for spec in ULTRALYTICS_SPECS:
            install_layer(tasks, spec)
        global _subscribed
        if not _subscribed:
            _subscribed = True
            subscribe(lambda spec: _install(tasks, spec))
        else:
            for spec in list(REGISTRY.values()):
                _install(tasks, spec)
        install_error_display()
    discover()
    return registered()
