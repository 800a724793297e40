"""Start-up hook that registers yolo_attn's layers with Ultralytics without importing anything heavy.

``yolo_attn.pth`` (installed into site-packages) runs ``startup()`` when the interpreter starts. It only puts a
finder on ``sys.meta_path``; when ``ultralytics.nn.tasks`` is later imported (by ``yolo train``, ``YOLO(...)``, a
DDP child process, an unpickled checkpoint ...), the finder wraps that module's loader so that right after the
module has executed, ``yolo_attn.register()`` runs and the finder removes itself. Nothing else is imported at
start-up (no torch, no importlib.abc), so the cost is a fraction of a millisecond.

Set ``YOLO_ATTN_AUTOLOAD=0`` to switch the start-up hook off; ``import yolo_attn`` still registers explicitly.
This file is deliberately a top-level module: importing ``yolo_attn`` itself would import torch.
"""

import os
import sys

TARGET = "ultralytics.nn.tasks"


def _register():
    try:
        import yolo_attn

        yolo_attn.register()
    except Exception as e:  # never break the user's ultralytics import because of the plugin
        import warnings

        warnings.warn(f"yolo_attn: could not register layers with Ultralytics: {e!r}", RuntimeWarning, stacklevel=2)


class _RegisteringLoader:
    """Delegates to the real loader of ``ultralytics.nn.tasks`` and registers after the module executed."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader  # tools that read source through __loader__ see the real loader
        self.loader.exec_module(module)
        disarm()
        _register()

    def __getattr__(self, name):  # get_source, get_filename, is_package ...
        return getattr(self.loader, name)


class _TasksFinder:
    """``sys.meta_path`` entry that only reacts to ``ultralytics.nn.tasks``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def arm():
    """Register now if ``ultralytics.nn.tasks`` is already imported, else as soon as it is."""
    if TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _TasksFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TasksFinder())


def disarm():
    """Remove the finder (registration already done, or not wanted)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TasksFinder)]


def startup():
    """Entry point of ``yolo_attn.pth``: arm unless ``YOLO_ATTN_AUTOLOAD`` is 0/false/off."""
    if os.environ.get("YOLO_ATTN_AUTOLOAD", "1").strip().lower() not in ("0", "false", "off", "no"):
        arm()
