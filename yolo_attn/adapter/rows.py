"""YAML rows and arguments: the class that stands for a registered layer's YAML name in Ultralytics' ``tasks``
namespace, and how it turns a ``parse_model`` row into the layer's constructor call (facts 1-2 of the adapter).

The entry class's ``__new__`` reads ``parse_model``'s locals (``ch``, ``f``, ``i``, ``d``, ``nc``, ``depth``,
``width``, ``max_channels``, ``c2``) from the calling frame, resolves the row's arguments (:func:`_resolve_args`:
official argument names, a channel count written first, too many args) and builds the real layer with its input
channels first (``yolo_attn.layers.registry`` channel rules); for ``channels="out"`` it rebinds the frame's ``c2``
so that ``parse_model`` records the layer's output channels. Called from anywhere else it is just the layer.
"""

from __future__ import annotations

import contextvars
import ctypes
import inspect
import sys
import threading
import warnings

from torch import nn

from ..layers import LayerArgumentError
from ..layers.registry import REGISTRY, LayerSpec
from .patching import log
from .versions import fact_broken

__all__ = ["install_layer", "installed", "registered", "parsing"]

_lock = threading.RLock()
_installed: dict[str, type] = {}  # YAML name -> entry class we put into the tasks namespace


def installed(yaml_name: str) -> bool:
    """Whether ``yaml_name`` stands for one of our entry classes in the ``tasks`` namespace."""
    return yaml_name in _installed


parsing: contextvars.ContextVar = contextvars.ContextVar("yolo_attn_parsing", default=None)
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
                raise fact_broken(f"parse_model has no local {', '.join(missing)} while it builds a layer")
            return frame
        frame = frame.f_back
    if state is not None:
        raise fact_broken("a registered layer was built inside parse_model, but its frame was not found")
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


def _yaml_entry(spec: LayerSpec, yaml_name: str) -> type[nn.Module]:
    """The class that stands for a registered YAML name in the ``tasks`` namespace (fact 2)."""
    cls = spec.cls

    def __new__(entry, *args, **kwargs):
        state = parsing.get()
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
            log(f"yolo_attn: model layer {i}: {note}")
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


def install_layer(tasks, spec: LayerSpec) -> None:
    """Put a registered layer's YAML names into the ``tasks`` namespace (a name Ultralytics defines is kept, with a
    warning)."""
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


def registered() -> tuple[str, ...]:
    """Names of the registered layers now resolvable by Ultralytics (empty before :func:`register` ran)."""
    tasks = sys.modules.get("ultralytics.nn.tasks")
    if tasks is None:
        return ()
    return tuple(name for name, spec in REGISTRY.items()
                 if getattr(vars(tasks).get(name), "_yolo_attn_spec", None) is spec)
