"""Model configs: names Ultralytics resolves through ``yaml_model_load`` (fact 5 of the adapter), and the stock
model YAMLs the installed Ultralytics ships.

``yaml_model_load`` (in ``tasks``; ``engine.model`` imports it by name) turns a config name into a dict. When the
name is no local file, the resolvers given to :func:`add_config_resolver` (the shipped configs, the generated
``<stock>-<layer>[-<placement>].yaml`` names) may supply it; the scale is kept from the requested name, as for stock
configs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

import yolo_attn_autoload as _autoload

from .patching import patch

__all__ = ["add_config_resolver", "wrap_yaml_model_load", "load_config", "guess_scale", "stock_config_files"]

_config_resolvers: list[Callable[[str], dict | None]] = []


def add_config_resolver(resolver: Callable[[str], dict | None]) -> None:
    """Let ``resolver(name)`` supply the model dict of a config name that is no local file (fact 5); it returns None
    for names it does not know. Resolvers are asked in the order they were added; adding one twice is a no-op."""
    if resolver not in _config_resolvers:
        _config_resolvers.append(resolver)


def _resolve_config(path) -> dict | None:
    text = str(path)
    if Path(text).exists():
        return None
    for resolver in _config_resolvers:
        d = resolver(text)
        if d is not None:
            return d
    return None


def wrap_yaml_model_load(tasks) -> None:
    """Make ``yaml_model_load`` ask the config resolvers first (fact 5). Idempotent."""
    original = tasks.yaml_model_load

    def make(original):
        def yaml_model_load(path):
            _autoload.flush()
            d = _resolve_config(path)
            if d is None:
                return original(path)
            d["scale"] = tasks.guess_model_scale(path)  # from the requested name, as for stock configs
            d["yaml_file"] = str(path)
            return d
        return yaml_model_load

    yaml_model_load = patch(tasks, "yaml_model_load", make)
    if yaml_model_load is None:
        return
    engine_model = sys.modules.get("ultralytics.engine.model")  # imported by name; rebind if already loaded
    if engine_model is not None and getattr(engine_model, "yaml_model_load", None) is original:
        engine_model.yaml_model_load = yaml_model_load


def _tasks():
    return importlib.import_module("ultralytics.nn.tasks")


def load_config(name) -> dict:
    """The model dict of a stock config name (``yolov8n.yaml`` -> ``yolov8.yaml`` with scale n) or a YAML path, as
    Ultralytics loads it (``yaml_model_load``: ``yaml_file`` and ``scale`` keys added)."""
    return _tasks().yaml_model_load(str(name))


def guess_scale(name) -> str:
    """The scale letter a config name fixes (``yolov8s-lska.yaml`` -> ``"s"``), "" when it fixes none
    (Ultralytics' ``guess_model_scale``)."""
    return _tasks().guess_model_scale(name) or ""


@functools.lru_cache(maxsize=None)
def stock_config_files() -> dict[str, Path]:
    """File name -> path of every model YAML shipped in the installed Ultralytics (``ultralytics/cfg/models/**``).

    Found without importing Ultralytics (``import yolo_attn`` stays light).
    """
    spec = importlib.util.find_spec("ultralytics")
    root = Path(spec.origin).resolve().parent / "cfg" / "models"
    return {p.name: p for p in sorted(root.rglob("*.y*ml"))}
