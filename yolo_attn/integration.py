"""Everything yolo_attn does to Ultralytics internals, in one place.

Checked against ultralytics 8.1.47, 8.2.103, 8.3.240 and 8.4.190 (``CHECKED_VERSIONS``); an Ultralytics upgrade that
changes any of the facts below is a change to this file only.

Facts relied on (see also ``yolo_attn_autoload.py`` for the start-up hook):

1. ``parse_model`` resolves a YAML layer name through ``globals()[name]`` of ``ultralytics.nn.tasks`` when it is
   not ``nn.X`` / ``torchvision.ops.X``, and calls unknown layers as ``m(*args)`` with the YAML args unchanged,
   recording output channels ``c2 = ch[f]`` (the input channels). Our layers keep channels, so that is right.
2. While it builds layer ``i``, ``parse_model`` has the locals ``ch`` (output channels so far), ``f`` (the row's
   ``from``) and ``i``. The class we put into the ``tasks`` namespace under each layer name is a subclass of the
   layer whose ``__new__`` reads them from the calling frame and returns the real layer built with ``c1 = ch[f]``
   first; when it is not called from ``parse_model`` it is just the layer. Nothing of Ultralytics is replaced for
   this, so other plugins can coexist, and ``n > 1`` repeats and skip inputs (``from`` ≠ -1) get the right ``c1``.
3. Internal callers look ``parse_model`` up in the ``tasks`` module at call time, so wrapping it there takes effect;
   the wrapper only turns the bare ``KeyError`` for an unknown layer name into an error listing our names.
4. 8.4.67+ restricted loading (``ULTRALYTICS_SAFE_LOAD=1``) only admits ``nn.Module`` subclasses in YAMLs (ours are)
   and loads checkpoints with ``weights_only=True``; our classes are added with ``torch.serialization
   .add_safe_globals``. The layers hold only torch modules, tensors and Python scalars/tuples.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import warnings

import torch
from torch import nn

from .layers import LAYERS, LayerArgumentError
from .layers.cga import CascadedGroupAttention, LocalWindowAttention
from .layers.conv_bn import ConvBN
from .layers.fla import FocusedLinearAttention
from .layers.shsa import SingleHeadSelfAttention

__all__ = ["register", "registered", "build_model", "CHECKED_VERSIONS", "UnknownLayerError", "SAFE_GLOBALS"]

CHECKED_VERSIONS = ("8.1.47", "8.2.103", "8.3.240", "8.4.190")

SAFE_GLOBALS = (
    *LAYERS.values(),
    CascadedGroupAttention,
    LocalWindowAttention,
    FocusedLinearAttention,
    SingleHeadSelfAttention,
    ConvBN,
)
"""Every class a pickled model with our layers references, beyond torch's own."""

_lock = threading.Lock()
_registered: tuple[str, ...] = ()


class UnknownLayerError(KeyError):
    """A model YAML names a layer that neither Ultralytics nor yolo_attn defines."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


def _parse_model_frame():
    """The frame of the ``parse_model`` call that is building a layer right now, or None."""
    frame = sys._getframe(2)
    for _ in range(6):  # parse_model -> (generator for n > 1) -> type.__call__ -> __new__
        if frame is None:
            return None
        if frame.f_code.co_name == "parse_model" and "ch" in frame.f_locals and "f" in frame.f_locals:
            return frame
        frame = frame.f_back
    return None


def _yaml_entry(cls: type[nn.Module]) -> type[nn.Module]:
    """The class that stands for ``cls`` in the ``tasks`` namespace (see fact 2 in the module docstring)."""
    name = cls.__name__
    params = list(inspect.signature(cls).parameters)[1:]

    def __new__(entry, *args, **kwargs):
        frame = _parse_model_frame()
        if frame is None:  # a direct call: arguments already start with c1
            return cls(*args, **kwargs)
        ch, f, i = frame.f_locals["ch"], frame.f_locals["f"], frame.f_locals.get("i", "?")
        where = f"model layer {i} ({name}, args {list(args)})"
        if len(args) > len(params):
            raise LayerArgumentError(
                f"{where}: {name} takes at most {len(params)} YAML args ({', '.join(params)}; input channels are "
                f"filled in automatically), got {len(args)}."
            )
        try:
            c1 = ch[f]
        except IndexError:
            raise LayerArgumentError(f"{where}: 'from' index {f} does not refer to an earlier layer.") from None
        try:
            return cls(c1, *args, **kwargs)
        except LayerArgumentError as e:
            raise LayerArgumentError(f"{where}: {e}") from None

    entry = type(name, (cls,), {"__new__": __new__, "__module__": "yolo_attn", "__doc__": cls.__doc__})
    entry.__qualname__ = name
    entry._yolo_attn_layer = cls
    return entry


def _check_inputs(rows: list) -> None:
    """Our layers take one input; parse_model would fail on ``ch[f]`` with a bare TypeError for a list."""
    for i, row in enumerate(rows):
        if len(row) > 3 and row[2] in _registered and not isinstance(row[0], int):
            name, f = row[2], row[0]
            raise LayerArgumentError(
                f"model layer {i} ({name}, args {row[3]}): {name} takes one input but 'from' is {f!r}; concatenate "
                f"first ([{f!r}, 1, Concat, [1]]) and feed the Concat to {name} with 'from' -1."
            )


def _wrap_parse_model(tasks) -> None:
    original = tasks.parse_model
    if getattr(original, "_yolo_attn", False):
        return

    def parse_model(d, ch, verbose=True):
        rows = list(d.get("backbone", [])) + list(d.get("head", []))
        _check_inputs(rows)
        try:
            return original(d, ch, verbose)
        except KeyError as e:
            name = e.args[0] if e.args else None
            hits = [i for i, row in enumerate(rows) if len(row) > 2 and row[2] == name]
            if not hits or isinstance(e, UnknownLayerError):
                raise
            raise UnknownLayerError(
                f"model layer {hits[0]} names '{name}', which is neither an Ultralytics module nor a registered "
                f"yolo_attn layer (registered: {', '.join(registered()) or 'none'}). Check the spelling in the "
                f"YAML; if '{name}' is a yolo_attn layer, make sure the plugin is installed and not disabled "
                "(YOLO_ATTN_AUTOLOAD=0 needs an explicit 'import yolo_attn', or use the 'yolo-attn' command)."
            ) from None

    parse_model._yolo_attn = True
    parse_model.__wrapped__ = original
    parse_model.__doc__ = original.__doc__
    tasks.parse_model = parse_model


_TASK_MODELS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}


def build_model(cfg, scale: str | None = None, verbose: bool = False) -> nn.Module:
    """Build the Ultralytics model (DetectionModel, RTDETRDetectionModel, ...) of a config path, stock name or dict.

    ``scale`` overrides the scale taken from the file name (``yolov8s-lska.yaml`` -> s).
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    d = dict(cfg) if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
    if scale:
        d["scale"] = scale
    if any(len(row) > 2 and row[2] == "RTDETRDecoder" for row in d.get("head", [])):
        cls = tasks.RTDETRDetectionModel
    else:
        cls = getattr(tasks, _TASK_MODELS[tasks.guess_model_task(d)])
    return cls(d, verbose=verbose)


def register() -> tuple[str, ...]:
    """Make CGA, FLA, LSKA and SHSA usable as layer names in Ultralytics model YAMLs. Idempotent.

    A name Ultralytics itself already defines is left alone (with a warning) and not returned.

    Returns:
        The names registered by yolo_attn.
    """
    global _registered
    tasks = importlib.import_module("ultralytics.nn.tasks")  # also while that module is still being imported

    with _lock:
        names = []
        for name, cls in LAYERS.items():
            current = tasks.__dict__.get(name)
            if current is not None and getattr(current, "_yolo_attn_layer", None) is not cls:
                warnings.warn(
                    f"yolo_attn: Ultralytics already defines '{name}'; keeping Ultralytics' version. Use "
                    f"yolo_attn.{name} from Python if you need ours.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if current is None:
                setattr(tasks, name, _yaml_entry(cls))
            names.append(name)
        _wrap_parse_model(tasks)
        if not _registered and hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4; once per process
            torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
        _registered = tuple(names)
    return _registered


def registered() -> tuple[str, ...]:
    """Names registered so far (empty before :func:`register` ran)."""
    return _registered
