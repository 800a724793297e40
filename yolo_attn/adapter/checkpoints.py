"""Loading, safe globals and checkpoints (facts 4 and 7 of the adapter).

* Safe globals: every registered class and the inner classes it declares as ``pickled`` are added to torch's safe
  globals, so ``ULTRALYTICS_SAFE_LOAD=1`` (8.4.67+: ``weights_only=True`` plus an allow-list) loads checkpoints that
  hold them.
* ``tasks.torch_safe_load`` (where every checkpoint is unpickled) first runs the start-up hooks a circular import left
  pending, then checks the modules the checkpoint names: a module that cannot be imported here (before a plain load),
  or, when a safe load fails, the module of the refused global that is not imported, is reported by name with the fix
  (:class:`CheckpointImportError`) instead of Ultralytics' attempt to pip-install a package of that name or its
  generic "references types outside the supported Ultralytics checkpoint format".
* ``BaseModel.load`` gets a view of the checkpoint model laid out like the model when either holds registered layers
  (the load aligners given to :func:`add_load_aligner`).
* :func:`load_checkpoint` and :func:`save_checkpoint` read and write the checkpoint dict Ultralytics' front ends load.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Callable

import torch
import yolo_attn_autoload as _autoload
from torch import nn

from ..layers.registry import IMPORTS_ENV, REGISTRY, LayerSpec
from .patching import log, patch

__all__ = [
    "safe_globals", "SAFE_GLOBALS", "allow", "CheckpointImportError", "add_load_aligner", "wrap_torch_safe_load",
    "wrap_load", "load_checkpoint", "save_checkpoint", "checkpoint_modules",
]


def safe_globals() -> tuple[type, ...]:
    """Every class a pickled model with registered layers references, beyond torch's own."""
    return tuple(dict.fromkeys(c for spec in REGISTRY.values() for c in spec.safe_globals))


SAFE_GLOBALS = safe_globals()
"""The classes of the shipped layers' checkpoints (``safe_globals()`` also covers modules registered later)."""


def allow(spec: LayerSpec) -> None:
    """Make a registered layer's classes torch safe globals (fact 4)."""
    if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4
        torch.serialization.add_safe_globals(list(spec.safe_globals))


class CheckpointImportError(ImportError):
    """A checkpoint names a module that this process cannot (or, under safe loading, may not) import."""


_HANDLED_BY_ULTRALYTICS = {"models", "numpy", "ultralytics"}  # YOLOv5 checkpoints, numpy versions: its own messages


def checkpoint_modules(path) -> dict[str, list[str]]:
    """Module -> names of the globals (classes, functions) a checkpoint file pickles, read without importing them;
    {} when torch cannot scan the file (older torch, not a zip checkpoint)."""
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None or not Path(str(path)).is_file():
        return {}
    try:
        names = scan(str(path))
    except Exception:  # not a torch.save zip archive: torch.load reports the format
        return {}
    modules: dict[str, list[str]] = {}
    for name in names:
        module, _, attr = name.rpartition(".")
        if module:
            modules.setdefault(module, []).append(name)
    return modules


def _safe_only(args, kwargs) -> bool:
    """Whether Ultralytics is about to load with ``weights_only=True`` (its ``safe_only`` or ULTRALYTICS_SAFE_LOAD)."""
    tasks = sys.modules["ultralytics.nn.tasks"]
    safe = getattr(tasks, "_SafeLoad", None)
    if safe is None or not getattr(safe, "SUPPORTED", False):
        return False
    requested = kwargs.get("safe_only", args[1] if len(args) > 1 else None)
    if requested is None:
        requested = getattr(sys.modules.get("ultralytics.utils"), "SAFE_LOAD", False)
    return bool(requested)


def _unimported(weight):
    """(module, its top-level name, what the checkpoint pickles from it, where-hint) for every module ``weight`` names
    that is not imported in this process and is not one of Ultralytics' own cases."""
    for module, names in checkpoint_modules(weight).items():
        top = module.split(".")[0]
        if top in sys.modules or top in _HANDLED_BY_ULTRALYTICS:
            continue  # imported (a missing submodule or class: Ultralytics' own errors), or Ultralytics' own cases
        here = Path.cwd() / f"{top}.py"
        importable = importlib.util.find_spec(top) is not None  # a top-level module: nothing is imported to find it
        where = (f" There is {here.name} in the working directory, but console scripts such as 'yolo' do not search "
                 f"it: PYTHONPATH={Path.cwd()} yolo ..." if not importable and here.is_file() else "")
        yield module, top, importable, ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""), where


def _check_importable(weight) -> None:
    """Before a plain load: raise :class:`CheckpointImportError` for the first module ``weight`` pickles that cannot
    be imported here (Ultralytics would otherwise try to pip-install a package of that name)."""
    for module, top, importable, held, where in _unimported(weight):
        if not importable:
            raise CheckpointImportError(
                f"yolo_attn: {weight} holds {held} from the module '{module}', which cannot be imported here (no "
                f"module named '{top}'). Make it importable where the checkpoint is loaded: install the package that "
                f"provides it, or put the directory holding {top}.py on PYTHONPATH (PYTHONPATH=/path/to/dir yolo "
                f"predict model={weight})." + where,
                name=module,
            )


def _explain_refused(weight, error: BaseException) -> None:
    """After a safe load failed: raise :class:`CheckpointImportError` (in place of ``error``) when the global that torch
    refused belongs to a module this process has not imported — safe loading never imports one, so the module that
    the model YAML's ``imports:`` brought in at build time is missing here. Only a module the failure names: a
    checkpoint also pickles globals of modules that are not imported yet and that Ultralytics' allow-list covers
    (a classification model's torchvision transforms)."""
    said, e = [], error
    while e is not None and len(said) < 8:
        said.append(str(e))
        e = e.__cause__ or e.__context__
    said = "\n".join(said)
    for module, top, importable, held, where in _unimported(weight):
        if module not in said:
            continue
        raise CheckpointImportError(
            f"yolo_attn: {weight} holds {held} from the module '{module}', which is not imported. Safe loading "
            f"(ULTRALYTICS_SAFE_LOAD=1) never imports a module a checkpoint names, so a module that the model "
            f"YAML's 'imports:' brought in when the model was built is not found here. Import it before the load: "
            f"{IMPORTS_ENV}={module} yolo predict model={weight} ... (or 'import {module}' in your script, or a "
            f"'yolo_attn.modules' entry point in its package)."
            + ("" if importable else f" '{top}' must also be importable: install it or put its directory on "
               f"PYTHONPATH.{where}"),
            name=module,
        ) from None  # Ultralytics' "references types outside the supported ... format" would only mislead


def wrap_torch_safe_load(tasks) -> None:
    """Checkpoint loads (``yolo predict model=best.pt``) go through ``tasks.torch_safe_load`` (fact 7): a point where
    Ultralytics is fully imported, to run hooks a circular import left pending, to check the modules the checkpoint
    names before Ultralytics would try to pip-install them, and to say which module a safe load lacks when it
    fails."""
    def make(original):
        def torch_safe_load(*args, **kwargs):
            _autoload.flush()
            weight = args[0] if args else kwargs.get("weight")
            if not _safe_only(args, kwargs):
                _check_importable(weight)
                return original(*args, **kwargs)
            try:
                return original(*args, **kwargs)
            except Exception as e:  # Ultralytics' TypeError, from torch's UnpicklingError naming the refused global
                _explain_refused(weight, e)
                raise
        return torch_safe_load

    patch(tasks, "torch_safe_load", make)


_load_aligners: list[Callable[[nn.Module, nn.Module], nn.Module | None]] = []


def add_load_aligner(aligner: Callable[[nn.Module, nn.Module], nn.Module | None]) -> None:
    """Let ``aligner(model, source)`` give ``BaseModel.load`` a view of a checkpoint model laid out like ``model``
    when either holds registered layers (fact 7); it returns None when it cannot pair them. Aligners are asked in the
    order they were added; adding one twice is a no-op."""
    if aligner not in _load_aligners:
        _load_aligners.append(aligner)


def wrap_load(tasks) -> None:
    """``BaseModel.load`` pairs checkpoint tensors with the model's by name (``model.<index>.<rest>``) and shape, so
    behind an inserted layer most of a stock checkpoint is silently dropped. When the model or the checkpoint
    holds our layers, ``load`` gets a view of the checkpoint model whose layer list is laid out like the model's
    (the first load aligner that gives one, e.g. :func:`yolo_attn.transfer.aligned_source`); all ``load`` does itself
    (class-count handling, first-conv channels, its "Transferred N/M items" line) then works on the right pairs and
    reports the real count. Relied on (8.1.47 to 8.4.190): ``load(weights, verbose)`` takes a checkpoint dict
    (``ema`` else ``model``) or a model, and reads only the source model's state_dict, attributes and layer list; the
    trainer's ``pretrained=`` and ``Model.load`` both end in it (via ``get_model(cfg, weights)``)."""
    def make(original):
        def load(self, weights, verbose=True):
            source = (weights.get("ema") or weights.get("model")) if isinstance(weights, dict) else weights
            lists = [getattr(net, "model", None) for net in ((self, source) if isinstance(source, nn.Module) else ())]
            ours = tuple(spec.cls for spec in REGISTRY.values())
            if any(isinstance(m, ours) for x in lists if isinstance(x, (nn.Sequential, nn.ModuleList)) for m in x):
                view = next((v for v in (a(self, source) for a in _load_aligners) if v is not None), None)
                if view is not None:
                    if verbose:
                        new = [f"{j} {type(self.model[j]).__name__}" for j, m in enumerate(view.model)
                               if type(m) is nn.Module and len(self.model[j].state_dict())]
                        log(f"yolo_attn: checkpoint layers paired with this model's by structure, not index (new "
                            f"layers: {', '.join(new) or 'none'})")
                    weights = view
            return original(self, weights, verbose)
        return load

    patch(tasks.BaseModel, "load", make)


def load_checkpoint(path) -> dict:
    """The checkpoint dict of a ``.pt`` file, as Ultralytics' front ends load it (``tasks.torch_safe_load``)."""
    tasks = importlib.import_module("ultralytics.nn.tasks")
    return tasks.torch_safe_load(str(path))[0]


def checkpoint_model(path) -> nn.Module:
    """The model a checkpoint file holds (its ``ema`` if present, else ``model``)."""
    ckpt = load_checkpoint(path)
    return ckpt.get("ema") or ckpt["model"]


def save_checkpoint(model: nn.Module, path) -> None:
    """Write ``model`` as a checkpoint Ultralytics' front ends (``YOLO(path)``, ``RTDETR(path)``) load and train
    from: the keys its loader reads (``model`` in half precision, ``train_args``), nothing of a training run."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.half(), "train_args": {}, "date": None, "version": None}, path)
