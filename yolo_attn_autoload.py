"""Start-up hook that registers yolo_attn's layers with Ultralytics without importing anything heavy.

``yolo_attn.pth`` (installed into site-packages) runs ``startup()`` when the interpreter starts. It only puts a
finder on ``sys.meta_path``; when ``ultralytics.nn.tasks`` is later imported (by ``yolo train``, ``YOLO(...)``, a
DDP child process, an unpickled checkpoint ...), the finder wraps that module's loader so that right after the
module has executed, ``yolo_attn.register()`` runs. ``when_imported`` lets registration hook further Ultralytics
modules the same way; the finder removes itself once no hook is pending. Nothing else is imported at
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


_hooks = {}  # module name -> callbacks to run right after that module has executed


def _ready(module):
    """False while a module is still executing (imported, but partially initialised: a circular import)."""
    return not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _run(callbacks, module):
    for callback in callbacks:
        try:
            callback(module)
        except Exception as e:  # never break the user's import because of the plugin
            import warnings

            warnings.warn(f"yolo_attn: hook for {module.__name__} failed: {e!r}", RuntimeWarning, stacklevel=2)


def flush():
    """Run the hooks of modules that finished initialising since they were requested; True if none is left."""
    for name in list(_hooks):
        module = sys.modules.get(name)
        if module is not None and _ready(module):
            _run(_hooks.pop(name, []), module)
    return not _hooks


class _HookedLoader:
    """Delegates to a module's real loader and runs the module's pending callbacks after it executed."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader  # tools that read source through __loader__ see the real loader
        self.loader.exec_module(module)
        _run(_hooks.pop(module.__name__, []), module)
        if flush():
            disarm()

    def __getattr__(self, name):  # get_source, get_filename, is_package ...
        return getattr(self.loader, name)


class _ImportHookFinder:
    """``sys.meta_path`` entry that only reacts to the modules in ``_hooks``.

    It never removes itself here (the import system is iterating over ``sys.meta_path``); a module that was caught
    half-initialised by a circular import gets its hooks at the next import after it finished.
    """

    def find_spec(self, fullname, path=None, target=None):
        if not _hooks:
            return None
        flush()
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader)
                return spec
        return None


def when_imported(name, callback):
    """Run ``callback(module)`` right after module ``name`` is imported (now, if it already is)."""
    module = sys.modules.get(name)
    if module is not None and _ready(module):
        _run([callback], module)
        return
    _hooks.setdefault(name, []).append(callback)
    if not any(isinstance(f, _ImportHookFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHookFinder())


def arm():
    """Register now if ``ultralytics.nn.tasks`` is already imported, else as soon as it is."""
    if TARGET in sys.modules:
        _register()
    elif _register_hook not in _hooks.get(TARGET, []):
        when_imported(TARGET, _register_hook)


def _register_hook(module):
    _register()


def disarm():
    """Remove the finder (all hooks ran, or none are wanted); pending hooks are dropped."""
    _hooks.clear()
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ImportHookFinder)]


def startup():
    """Entry point of ``yolo_attn.pth``: arm unless ``YOLO_ATTN_AUTOLOAD`` is 0/false/off."""
    if os.environ.get("YOLO_ATTN_AUTOLOAD", "1").strip().lower() not in ("0", "false", "off", "no"):
        arm()
