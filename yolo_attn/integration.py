"""Everything yolo_attn does to Ultralytics internals, in one place (the adapter between the layers and Ultralytics).

Checked against ultralytics 8.1.47, 8.2.103, 8.3.240 and 8.4.190 (``CHECKED_VERSIONS``); each fact below has a
contract test in ``tests/test_contract.py`` run against every checked version, so an Ultralytics upgrade that breaks
one fails in one named test, and the change it needs is a change to this file only.

Facts relied on (see also ``yolo_attn_autoload.py`` for the start-up hook):

1. ``parse_model`` resolves a YAML layer name through ``globals()[name]`` of ``ultralytics.nn.tasks`` when it is
   not ``nn.X`` / ``torchvision.ops.X``; an unknown name raises ``KeyError(name)``. Unknown (non-Ultralytics)
   layers fall to its final branch ``else: c2 = ch[f]`` and are called as ``m(*args)`` with the YAML args
   unchanged, ``n > 1`` as ``nn.Sequential(m(*args) for _ in range(n))``; then ``ch.append(c2)``.
2. While it builds layer ``i``, ``parse_model`` has the locals ``d`` (the model dict), ``ch`` (output channels so
   far), ``f`` (the row's ``from``), ``i``, ``nc``, ``depth``, ``width``, ``max_channels`` and ``c2`` (already
   ``ch[f]``); it scales a ``Conv``'s channel argument as ``make_divisible(min(c2, max_channels) * width, 8)``
   (``tasks.make_divisible``) unless it equals ``nc``, and a repeat count as ``max(round(n * depth), 1)`` if
   ``n > 1``. The class we put into the ``tasks`` namespace under each registered YAML name is a subclass of the
   layer whose ``__new__`` reads those locals from the calling frame and returns the real layer built by its
   channel rule (``yolo_attn.layers.registry``); for ``channels="out"`` it sets the frame's ``c2`` to the layer's
   output channels, so the ``ch.append(c2)`` that follows records them. When it is not called from ``parse_model``
   it is just the layer. Nothing of Ultralytics is replaced for this, so other plugins can coexist.
3. Internal callers look ``parse_model`` up in the ``tasks`` module at call time, so wrapping it there takes effect;
   the wrapper imports a model YAML's ``imports:`` modules, checks our rows, passes ``repeats=True`` layers a row
   count of 1 (their depth-scaled count goes to the constructor), and explains unknown names.
4. 8.4.67+ restricted loading (``ULTRALYTICS_SAFE_LOAD=1``) only admits ``nn.Module`` subclasses in YAMLs (ours are)
   and loads checkpoints with ``weights_only=True``; every registered class and the inner classes it declares as
   ``pickled`` are added with ``torch.serialization.add_safe_globals``.
5. ``yaml_model_load`` (in ``tasks``; ``engine.model`` imports it by name) turns a config name into a dict. When the
   name is no local file, the resolvers registered with :func:`add_config_resolver` (the shipped and generated
   configs: ``yolo_attn.configs``, ``yolo_attn.names``) may supply it; the scale is kept from the requested name,
   as for stock configs.
6. Square batches (for layers that declare ``requires_square_input``, e.g. ``FLA(fixed=True)``): training builds
   its val set in ``DetectionTrainer.build_dataset`` with ``rect=mode == "val"``; ``Model.val``/``yolo val`` pass
   ``rect=True``; all datasets come from ``BaseDataset.__init__(..., rect=...)`` (keyword in every checked version).
   The predictor letterboxes in ``BasePredictor.pre_transform`` with ``auto=True`` (minimal, non-square padding)
   for PyTorch models.
7. ``BaseModel.load(weights, verbose)`` pairs checkpoint tensors by name and shape; ``BaseModel.fuse`` folds only
   Ultralytics' own modules; ``tasks.torch_safe_load`` is where checkpoints are unpickled.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import ctypes
import importlib
import inspect
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable

import torch
import yolo_attn_autoload as _autoload
from torch import nn

from .layers import LayerArgumentError, fuse_layers
from .layers.registry import REGISTRY, LayerSpec, discover, lookup, subscribe, suggest

__all__ = [
    "register", "registered", "build_model", "CHECKED_VERSIONS", "UnknownLayerError", "SAFE_GLOBALS", "safe_globals",
    "IntegrationError", "add_config_resolver", "add_load_aligner",
]

CHECKED_VERSIONS = ("8.1.47", "8.2.103", "8.3.240", "8.4.190")


def safe_globals() -> tuple[type, ...]:
    """Every class a pickled model with registered layers references, beyond torch's own."""
    return tuple(dict.fromkeys(c for spec in REGISTRY.values() for c in spec.safe_globals))


SAFE_GLOBALS = safe_globals()
"""The classes of the shipped layers' checkpoints (``safe_globals()`` also covers modules registered later)."""

_lock = threading.RLock()
_installed: dict[str, type] = {}  # YAML name -> entry class we put into the tasks namespace
_subscribed = False


class UnknownLayerError(KeyError):
    """A model YAML names a layer that neither Ultralytics nor any registered module defines."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


class IntegrationError(RuntimeError):
    """The installed Ultralytics does not behave as the checked versions do (a fact in this module's docstring)."""


def _version() -> str:
    return getattr(sys.modules.get("ultralytics"), "__version__", "unknown")


def _fact_broken(what: str) -> IntegrationError:
    return IntegrationError(
        f"yolo_attn: {what} in the installed ultralytics {_version()}; yolo_attn was checked with "
        f"{', '.join(CHECKED_VERSIONS)}. Install one of those (pip install 'ultralytics=={CHECKED_VERSIONS[-1]}') or a "
        "yolo_attn release that supports this version."
    )


# ----------------------------------------------------------------------------------------------------------------------
# building a registered layer from a parse_model row (facts 1-2)
# ----------------------------------------------------------------------------------------------------------------------
_parsing: contextvars.ContextVar = contextvars.ContextVar("yolo_attn_parsing", default=None)
"""State of the parse_model call our wrapper is running: {'code': code objects, 'n': raw repeat counts by row,
'built': modules built per row}; None outside one."""

_FRAME_LOCALS = ("ch", "f", "i", "d", "nc", "depth", "width", "max_channels", "c2")


def _parse_model_frame(state: dict | None):
    """The frame of the ``parse_model`` call that is building a layer right now, or None when not called from one."""
    frame = sys._getframe(2)
    codes = state["codes"] if state else ()
    for _ in range(8):  # parse_model -> (generator for n > 1) -> type.__call__ -> __new__
        if frame is None:
            break
        if frame.f_code in codes or frame.f_code.co_name == "parse_model":
            missing = [k for k in _FRAME_LOCALS if k not in frame.f_locals]
            if missing:
                raise _fact_broken(f"parse_model has no local {', '.join(missing)} while it builds a layer")
            return frame
        frame = frame.f_back
    if state is not None:
        raise _fact_broken("a registered layer was built inside parse_model, but its frame was not found")
    return None


def _set_local(frame, name: str, value) -> None:
    """Rebind a local variable of a running frame (parse_model's ``c2``; fact 2)."""
    if sys.version_info >= (3, 13):  # PEP 667: frame.f_locals writes through
        frame.f_locals[name] = value
        return
    frame.f_locals[name] = value  # the snapshot dict, then copied back into the fast locals
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def _scaled(tasks, c: int, width: float, max_channels: float) -> int:
    """An output channel count as parse_model scales it for Conv/C2f (fact 2)."""
    return int(tasks.make_divisible(min(c, max_channels) * width, 8))


def _is_channel_count(tasks, v: int, c1: int, loc: dict) -> bool:
    """Whether a YAML value ``v`` reads as the input channel count ``c1``: the actual count, a nominal count that
    scales to it (``[1024]`` after SPPF at scale n), or the count a row written for another declared scale would have
    (``[256]``, written at n, built at s where c1 = 512)."""
    if v == c1:
        return True
    width, cap = loc["width"], loc["max_channels"]
    if _scaled(tasks, v, width, cap) == c1:
        return True
    for _depth, w, cap_s in ((loc["d"] or {}).get("scales") or {}).values():
        nominal = round(v / w) if w else 0
        if nominal > 0 and _scaled(tasks, nominal, w, cap_s) == v and _scaled(tasks, nominal, width, cap) == c1:
            return True
    return False


def _bind(spec: LayerSpec, c1: int, args: list, kwargs: dict) -> dict | None:
    """The constructor's arguments by name (defaults applied), or None if they do not bind."""
    try:
        bound = inspect.signature(spec.cls).bind(c1, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _implausible(spec: LayerSpec, c1: int, args: list, kwargs: dict) -> str | None:
    if spec.plausible is None:
        return None
    bound = _bind(spec, c1, args, kwargs)
    if bound is None:
        return None
    try:
        return spec.plausible(c1, bound)
    except (TypeError, ValueError, KeyError, ZeroDivisionError):  # wrong types: the constructor's checks say it
        return None


def _resolve_args(tasks, spec: LayerSpec, yaml_name: str, c1: int, args: list, loc: dict, where: str):
    """The constructor arguments after ``c1`` (and ``c2``/``n``) for a row: ``(args, kwargs, note)``."""
    official = spec.official.get(yaml_name)
    if official is not None:  # the official constructor's arguments, dim first (replaced by c1)
        if len(args) > len(official.params):
            raise LayerArgumentError(f"{where}: {yaml_name} takes at most {len(official.params)} args "
                                     f"({', '.join(official.params)}), got {len(args)}.")
        given = dict(zip(official.params, args))
        try:
            kwargs = official.to_ours(given)
        except LayerArgumentError as e:
            raise LayerArgumentError(f"{where}: {yaml_name} is {spec.name} here, and {e}") from None
        note = (f"{yaml_name} (official arguments {', '.join(f'{k}={v}' for k, v in given.items()) or 'none'}) -> "
                f"{spec.name}(c1={c1}{''.join(f', {k}={v}' for k, v in kwargs.items())})"
                + (f"; dim={given['dim']} replaced by the input channels" if "dim" in given else ""))
        return [], kwargs, note
    params = spec.args
    first = args[0] if args else None
    note = None
    if (spec.plausible is not None and spec.channels == "same" and isinstance(first, int)
            and not isinstance(first, bool) and _is_channel_count(tasks, first, c1, loc)
            and (len(args) > len(params) or _implausible(spec, c1, args, {}))):
        args = args[1:]
        note = (f"{spec.name}: the first argument {first} is the channel count; dropped (input channels "
                f"c1={c1} are filled in), building {spec.name}(c1={c1}{''.join(f', {a}' for a in args)})")
    if len(args) > len(params):
        raise LayerArgumentError(
            f"{where}: {spec.name} takes at most {len(params)} YAML args ({', '.join(params) or 'none'}; input "
            f"channels are filled in automatically), got {len(args)}."
        )
    return list(args), {}, note


def _log(message: str) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.info(message)


def _yaml_entry(spec: LayerSpec, yaml_name: str) -> type[nn.Module]:
    """The class that stands for a registered YAML name in the ``tasks`` namespace (fact 2)."""
    cls = spec.cls

    def __new__(entry, *args, **kwargs):
        state = _parsing.get()
        frame = _parse_model_frame(state)
        if frame is None:  # a direct call: arguments already start with c1
            return cls(*args, **kwargs)
        loc = {k: frame.f_locals[k] for k in _FRAME_LOCALS}
        tasks = sys.modules["ultralytics.nn.tasks"]
        ch, f, i = loc["ch"], loc["f"], loc["i"]
        where = f"model layer {i} ({yaml_name}, args {list(args)})"
        try:
            c1 = ch[f]
        except (IndexError, TypeError):
            raise LayerArgumentError(f"{where}: 'from' index {f} does not refer to an earlier layer.") from None
        args = list(args)
        fixed = []
        if spec.channels == "out":
            if not args:
                raise LayerArgumentError(f"{where}: {spec.name} takes its output channel count as the first YAML "
                                         "arg, e.g. [-1, 1, {0}, [256]].".format(yaml_name))
            c2 = args.pop(0)
            if isinstance(c2, int) and not isinstance(c2, bool) and c2 != loc["nc"]:
                c2 = _scaled(tasks, c2, loc["width"], loc["max_channels"])
            built = state["built"].setdefault(i, 0) if state else 0
            if state:
                state["built"][i] += 1
            fixed = [c2]
            if built:  # n > 1 without repeats=True: a chain, c2 -> c2 after the first
                c1 = c2
        if spec.repeats:
            n = state["n"].get(i, 1) if state else 1
            fixed.append(max(round(n * loc["depth"]), 1) if n > 1 else n)
        args, extra, note = _resolve_args(tasks, spec, yaml_name, c1, args, loc, where)
        kwargs = {**extra, **kwargs}
        try:
            module = cls(c1, *fixed, *args, **kwargs)
        except (LayerArgumentError, TypeError, ValueError) as e:
            raise LayerArgumentError(f"{where}: {e}") from None
        reason = _implausible(spec, c1, [*fixed, *args], kwargs)
        if reason:
            first = args[0] if args else None
            fix = (f"if {first} is a channel count, drop it (input channels are filled in)"
                   if isinstance(first, int) and not isinstance(first, bool) else
                   "see 'yolo-attn layers' for the arguments")
            raise LayerArgumentError(f"{where}: {reason} for input channels c1={c1}; {fix}.")
        if note and not (state and i in state["noted"]):
            if state:
                state["noted"].add(i)
            _log(f"yolo_attn: model layer {i}: {note}")
        bound = _bind(spec, c1, [*fixed, *args], kwargs) or {}
        module.yolo_attn_args = {k: v for k, v in bound.items() if isinstance(v, (int, float, bool, str, type(None)))}
        if spec.channels == "out":
            _set_local(frame, "c2", fixed[0])  # parse_model appends c2 to ch after this call
        return module

    entry = type(yaml_name, (cls,), {"__new__": __new__, "__module__": "yolo_attn", "__doc__": cls.__doc__})
    entry.__qualname__ = yaml_name
    entry._yolo_attn_layer = cls
    entry._yolo_attn_spec = spec
    return entry


# ----------------------------------------------------------------------------------------------------------------------
# the parse_model wrapper (fact 3)
# ----------------------------------------------------------------------------------------------------------------------
def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def _import_declared(d: dict) -> None:
    """Import the modules a model YAML lists under ``imports:`` (they register their layers as they import)."""
    names = d.get("imports") or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise LayerArgumentError(f"the model YAML's 'imports:' must be a list of module names, got {names!r}.")
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:
            raise ImportError(f"the model YAML's 'imports:' lists '{name}', which could not be imported ({e!r}); "
                              "it must be importable (installed, or on PYTHONPATH) wherever the model is built.") from e


def _check_rows(rows: list) -> None:
    """Rows of registered layers that parse_model itself would crash on, before our layer sees them: several
    inputs (``ch[f]`` with a list), args that are not a list (``*args``), or a string that is neither a name nor a
    Python literal (parse_model runs ``ast.literal_eval`` on string args and only suppresses ValueError)."""
    for i, row in enumerate(rows):
        if len(row) < 4 or not isinstance(row[2], str) or row[2] not in _installed:
            continue
        f, name, args = row[0], row[2], row[3]
        if not isinstance(f, int):
            raise LayerArgumentError(
                f"model layer {i} ({name}, args {args}): {name} takes one input but 'from' is {f!r}; concatenate "
                f"first ([{f!r}, 1, Concat, [1]]) and feed the Concat to {name} with 'from' -1."
            )
        if not isinstance(args, list):
            raise LayerArgumentError(
                f"model layer {i} ({name}, args {args!r}): the args must be a list, e.g. [-1, 1, {name}, []]."
            )
        for a in args:
            if not isinstance(a, str):
                continue
            try:
                ast.literal_eval(a)
            except ValueError:  # a name: parse_model looks it up or passes the string on (our checks refuse it)
                pass
            except (SyntaxError, TypeError, MemoryError, RecursionError):
                raise LayerArgumentError(
                    f"model layer {i} ({name}, args {args}): argument {a!r} is neither a number nor a name; write "
                    "plain integers (see 'yolo-attn layers')."
                ) from None


def _known_to_ultralytics(tasks, name: str) -> bool:
    if name.startswith("nn."):
        return hasattr(nn, name[3:])
    if name.startswith("torchvision.ops."):
        return True
    return name in vars(tasks)


def _unknown_layer(tasks, name: str, i: int) -> UnknownLayerError:
    ultralytics_names = [k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    hint = suggest(name, extra=ultralytics_names)
    return UnknownLayerError(
        f"model layer {i} names '{name}', which is neither an Ultralytics module nor a registered layer "
        f"(registered: {', '.join(registered()) or 'none'})."
        + (f" Did you mean {' or '.join(hint)}?" if hint else "")
        + f" If '{name}' is your own module, register it with @yolo_attn.register_module and make its module "
        "importable where the model is built: list it under 'imports:' in the model YAML, in YOLO_ATTN_IMPORTS, or "
        "as a 'yolo_attn.modules' entry point."
    )


def _checked_parse_model(original):
    codes = {getattr(original, "__code__", None), getattr(inspect.unwrap(original), "__code__", None)} - {None}

    def parse_model(d, ch, verbose=True):
        _autoload.flush()  # hooks of modules a circular import caught half-initialised
        _import_declared(d)
        tasks = sys.modules["ultralytics.nn.tasks"]
        rows = _rows(d)
        for i, row in enumerate(rows):
            if len(row) > 2 and isinstance(row[2], str) and not _known_to_ultralytics(tasks, row[2]):
                raise _unknown_layer(tasks, row[2], i)
        _check_rows(rows)
        state = {"codes": codes, "n": {}, "built": {}, "noted": set()}
        repeated = [i for i, row in enumerate(rows) if len(row) > 3 and isinstance(row[2], str)
                    and (lookup(row[2]) is not None and lookup(row[2]).repeats and row[2] in _installed)]
        if repeated:  # repeats=True: the count goes to the constructor, parse_model builds the layer once
            nb = len(d.get("backbone") or [])
            d = {**d, "backbone": [list(r) for r in d.get("backbone") or []], "head": [list(r) for r in d.get("head") or []]}
            for i in repeated:
                row = d["backbone"][i] if i < nb else d["head"][i - nb]
                state["n"][i], row[1] = row[1], 1
        token = _parsing.set(state)
        try:
            return original(d, ch, verbose)
        finally:
            _parsing.reset(token)

    return parse_model


def _patch(owner, name: str, make):
    """Replace ``owner.name`` by ``make(original)`` once (marked, ``__wrapped__`` kept); returns the wrapper, or None
    if it was already ours."""
    original = getattr(owner, name)
    if getattr(original, "_yolo_attn", False):
        return None
    wrapper = make(original)
    wrapper._yolo_attn = True
    wrapper.__wrapped__ = original
    wrapper.__doc__ = original.__doc__
    wrapper.__name__, wrapper.__qualname__ = original.__name__, original.__qualname__
    setattr(owner, name, wrapper)
    return wrapper


def _wrap_parse_model(tasks) -> None:
    _patch(tasks, "parse_model", _checked_parse_model)


def _wrap_fuse(tasks) -> None:
    """Make ``BaseModel.fuse`` (called by val, predict, export) also fold the BatchNorms inside our layers. Idempotent.

    Ultralytics' ``fuse`` folds BatchNorm only into its own ``Conv``/``Conv2``/``DWConv``/... modules and then prints
    the model summary (``self.info``). The wrapper folds ours first (:func:`yolo_attn.layers.fuse_layers`: CGA's and
    SHSA's Conv+BN pairs, SHSA's GroupNorm affine), so that summary counts the folded parameters, then runs the
    original unchanged. Folding twice is a no-op; a model without our layers is untouched.
    """
    def make(original):
        def fuse(self, *args, **kwargs):
            fuse_layers(self)
            return original(self, *args, **kwargs)
        return fuse

    _patch(tasks.BaseModel, "fuse", make)


_TASK_MODELS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
    "semantic": "SemanticSegmentationModel",  # 8.4.x (YOLO26 -sem)
    "depth": "DepthModel",  # 8.4.x (YOLO26 -depth)
}
_HEAD_MODELS = {  # heads whose model class the task does not give (as Ultralytics' YOLO/RTDETR front ends choose)
    "RTDETRDecoder": "RTDETRDetectionModel",
    "WorldDetect": "WorldModel",
    "YOLOEDetect": "YOLOEModel",
    "YOLOESegment": "YOLOESegModel",
    "YOLOESegment26": "YOLOESegModel",
}


def build_model(cfg, scale: str | None = None, verbose: bool = False) -> nn.Module:
    """Build the Ultralytics model (DetectionModel, RTDETRDetectionModel, ...) of a config path, stock name or dict.

    ``scale`` overrides the scale taken from the file name (``yolov8s-lska.yaml`` -> s).
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    d = dict(cfg) if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
    if scale:
        d["scale"] = scale
    head = str((d.get("head") or [[None, None, ""]])[-1][2])
    cls = getattr(tasks, _HEAD_MODELS.get(head, ""), None) or getattr(tasks, _TASK_MODELS[tasks.guess_model_task(d)])
    return cls(d, verbose=verbose)


_config_resolvers: list[Callable[[str], dict | None]] = []
_load_aligners: list[Callable[[nn.Module, nn.Module], nn.Module | None]] = []


def add_config_resolver(resolver: Callable[[str], dict | None]) -> None:
    """Let ``resolver(name)`` supply the model dict of a config name that is no local file (fact 5); it returns None
    for names it does not know. Resolvers are asked in the order they were added."""
    if resolver not in _config_resolvers:
        _config_resolvers.append(resolver)


def add_load_aligner(aligner: Callable[[nn.Module, nn.Module], nn.Module | None]) -> None:
    """Let ``aligner(model, source)`` give ``BaseModel.load`` a view of a checkpoint model laid out like ``model``
    when either holds registered layers (fact 7); it returns None when it cannot pair them."""
    if aligner not in _load_aligners:
        _load_aligners.append(aligner)


def _resolve_config(path) -> dict | None:
    text = str(path)
    if Path(text).exists():
        return None
    for resolver in _config_resolvers:
        d = resolver(text)
        if d is not None:
            return d
    return None


def _wrap_torch_safe_load(tasks) -> None:
    """Checkpoint loads (``yolo predict model=best.pt``) go through ``tasks.torch_safe_load``: a point where
    Ultralytics is fully imported, to run hooks a circular import left pending (fact 6)."""
    def make(original):
        def torch_safe_load(*args, **kwargs):
            _autoload.flush()
            return original(*args, **kwargs)
        return torch_safe_load

    _patch(tasks, "torch_safe_load", make)


def _wrap_yaml_model_load(tasks) -> None:
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

    yaml_model_load = _patch(tasks, "yaml_model_load", make)
    if yaml_model_load is None:
        return
    engine_model = sys.modules.get("ultralytics.engine.model")  # imported by name; rebind if already loaded
    if engine_model is not None and getattr(engine_model, "yaml_model_load", None) is original:
        engine_model.yaml_model_load = yaml_model_load


_square = contextvars.ContextVar("yolo_attn_square", default=())


def square_layers(model) -> tuple[str, ...]:
    """Names of the layers in ``model`` that declare ``requires_square_input`` (empty if none or not a module).

    ``model`` may be a wrapper that is not a module or does not register its network as a submodule
    (``AutoBackend`` 8.4 keeps it on a backend object); its ``.model`` is searched then.
    """
    for _ in range(2):
        if isinstance(model, nn.Module):
            names = {type(m).__name__ for m in model.modules() if getattr(m, "requires_square_input", False)}
            if names:
                return tuple(sorted(names))
        model = getattr(model, "model", None)
    return ()


@contextlib.contextmanager
def _square_inputs(model):
    token = _square.set(square_layers(model) or _square.get())
    try:
        yield
    finally:
        _square.reset(token)


def _square_dataset(module) -> None:
    def make(original):
        def __init__(self, *args, **kwargs):
            names = _square.get()
            if names and kwargs.get("rect"):
                kwargs["rect"] = False
                prefix = str(kwargs.get("prefix", "")).strip()
                _log(f"{prefix} yolo_attn: {', '.join(names)} needs square inputs (fixed=True); using square "
                     "letterboxed batches instead of rect batches.".strip())
            original(self, *args, **kwargs)
        return __init__

    _patch(module.BaseDataset, "__init__", make)


def _square_trainer(module) -> None:
    def make(original):
        def build_dataset(self, *args, **kwargs):
            with _square_inputs(self.model):
                return original(self, *args, **kwargs)
        return build_dataset

    _patch(module.DetectionTrainer, "build_dataset", make)


def _square_validator(module) -> None:
    def make(original):
        def __call__(self, trainer=None, model=None, **kwargs):
            target = model
            if trainer is not None:
                target = getattr(getattr(trainer, "ema", None), "ema", None) or trainer.model
            with _square_inputs(target):
                return original(self, trainer, model, **kwargs)
        return __call__

    _patch(module.BaseValidator, "__call__", make)


def _square_predictor(module) -> None:
    def make(original):
        def pre_transform(self, im):
            names = square_layers(self.model)
            if not names:
                return original(self, im)
            if not getattr(self, "_yolo_attn_square_logged", False):
                self._yolo_attn_square_logged = True
                _log(f"yolo_attn: {', '.join(names)} needs square inputs (fixed=True); letterboxing images to "
                     f"{self.imgsz} instead of the minimal rectangle.")
            from ultralytics.data.augment import LetterBox

            letterbox = LetterBox(self.imgsz, auto=False, stride=self.model.stride)
            return [letterbox(image=x) for x in im]
        return pre_transform

    _patch(module.BasePredictor, "pre_transform", make)


_SQUARE_PATCHES = {
    "ultralytics.data.base": _square_dataset,
    "ultralytics.models.yolo.detect.train": _square_trainer,
    "ultralytics.engine.validator": _square_validator,
    "ultralytics.engine.predictor": _square_predictor,
}
"""Square batches for models that need them (fact 6); each applied when its module is imported."""


def _wrap_load(tasks) -> None:
    """``BaseModel.load`` pairs checkpoint tensors with the model's by name (``model.<index>.<rest>``) and shape, so
    behind an inserted layer most of a stock checkpoint is silently dropped. When the model or the checkpoint
    holds our layers, ``load`` gets a view of the checkpoint model whose layer list is laid out like the model's,
    paired by structure (:func:`yolo_attn.transfer.aligned_source`); all ``load`` does itself (class-count handling,
    first-conv channels, its "Transferred N/M items" line) then works on the right pairs and reports the real count.
    Relied on (8.1.47 to 8.4.190): ``load(weights, verbose)`` takes a checkpoint dict (``ema`` else ``model``) or a
    model, and reads only the source model's state_dict, attributes and layer list; the trainer's ``pretrained=``
    and ``Model.load`` both end in it (via ``get_model(cfg, weights)``)."""
    def make(original):
        def load(self, weights, verbose=True):
            source = (weights.get("ema") or weights.get("model")) if isinstance(weights, dict) else weights
            lists = [getattr(net, "model", None) for net in ((self, source) if isinstance(source, nn.Module) else ())]
            ours = tuple(spec.cls for spec in REGISTRY.values())
            if any(isinstance(m, ours) for x in lists if isinstance(x, (nn.Sequential, nn.ModuleList)) for m in x):
                view = next((v for v in (a(self, source) for a in _load_aligners) if v is not None), None)
                if view is not None:
                    if verbose:
                        from ultralytics.utils import LOGGER

                        new = [f"{j} {type(self.model[j]).__name__}" for j, m in enumerate(view.model)
                               if type(m) is nn.Module and len(self.model[j].state_dict())]
                        LOGGER.info(f"yolo_attn: checkpoint layers paired with this model's by structure, not "
                                    f"index (new layers: {', '.join(new) or 'none'})")
                    weights = view
            return original(self, weights, verbose)
        return load

    _patch(tasks.BaseModel, "load", make)


def _install(tasks, spec: LayerSpec) -> None:
    """Put a registered layer's YAML names into the ``tasks`` namespace and its classes into torch's safe globals."""
    with _lock:
        for yaml_name in spec.names:
            current = vars(tasks).get(yaml_name)
            ours = getattr(current, "_yolo_attn_spec", None)
            if current is not None and ours is None:
                warnings.warn(
                    f"yolo_attn: Ultralytics already defines '{yaml_name}'; keeping Ultralytics' version (the YAML "
                    f"name '{yaml_name}' means Ultralytics' module). Register {spec.cls.__qualname__} under another "
                    f"name, or use it from Python.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            if current is None or ours is not spec:
                entry = _yaml_entry(spec, yaml_name)
                setattr(tasks, yaml_name, entry)
                _installed[yaml_name] = entry
        if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4
            torch.serialization.add_safe_globals(list(spec.safe_globals))


def register() -> tuple[str, ...]:
    """Make every registered layer usable as a layer name in Ultralytics model YAMLs. Idempotent.

    Also imports the user's modules named in ``YOLO_ATTN_IMPORTS`` and the ``yolo_attn.modules`` entry points
    (:func:`yolo_attn.layers.registry.discover`); layers registered later are installed as they register. A name
    Ultralytics itself already defines is left alone (with a warning) and not returned.

    Returns:
        The names registered by yolo_attn (main names, without aliases).
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")  # also while that module is still being imported
    with _lock:
        _wrap_parse_model(tasks)
        _wrap_fuse(tasks)
        _wrap_load(tasks)
        _wrap_yaml_model_load(tasks)
        _wrap_torch_safe_load(tasks)
        for module, patch in _SQUARE_PATCHES.items():
            _autoload.when_imported(module, patch)
        global _subscribed
        if not _subscribed:
            _subscribed = True
            subscribe(lambda spec: _install(tasks, spec))
        else:
            for spec in list(REGISTRY.values()):
                _install(tasks, spec)
    discover()
    return registered()


def registered() -> tuple[str, ...]:
    """Names of the registered layers now resolvable by Ultralytics (empty before :func:`register` ran)."""
    tasks = sys.modules.get("ultralytics.nn.tasks")
    if tasks is None:
        return ()
    return tuple(name for name, spec in REGISTRY.items()
                 if getattr(vars(tasks).get(name), "_yolo_attn_spec", None) is spec)
