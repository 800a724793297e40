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
5. ``yaml_model_load`` (in ``tasks``; ``engine.model`` imports it by name) turns a config name into a dict; it
   first looks for the given file, then the scale-less name (``yolov8s-lska.yaml`` -> ``yolov8-lska.yaml``), then
   Ultralytics' own cfg folder. When none of those has the file but yolo_attn ships one of that name, the wrapper
   loads the shipped file and keeps the scale from the requested name, as for stock configs.
6. Square batches (for layers that declare ``requires_square_input``, e.g. ``FLA(fixed=True)``): training builds
   its val set in ``DetectionTrainer.build_dataset`` with ``rect=mode == "val"``; ``Model.val``/``yolo val`` pass
   ``rect=True``; all datasets come from ``BaseDataset.__init__(..., rect=...)`` (keyword in every checked version).
   The predictor letterboxes in ``BasePredictor.pre_transform`` with ``auto=True`` (minimal, non-square padding)
   for PyTorch models.
4. 8.4.67+ restricted loading (``ULTRALYTICS_SAFE_LOAD=1``) only admits ``nn.Module`` subclasses in YAMLs (ours are)
   and loads checkpoints with ``weights_only=True``; our classes are added with ``torch.serialization
   .add_safe_globals``. The layers hold only torch modules, tensors and Python scalars/tuples.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import sys
import threading
import warnings
from pathlib import Path

import torch
import yolo_attn_autoload as _autoload
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
    _check_args(rows)


def _check_args(rows: list) -> None:
    """Rows of our layers whose args parse_model itself would crash on, before our layer sees them: args that are not
    a list (``*args`` TypeError), or a string that is neither a name nor a Python literal (parse_model runs
    ``ast.literal_eval`` on string args and only suppresses ValueError: ``''`` or ``'a b'`` is a bare SyntaxError)."""
    import ast

    for i, row in enumerate(rows):
        if len(row) < 4 or row[2] not in _registered:
            continue
        name, args = row[2], row[3]
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


def _checked_parse_model(original):
    def parse_model(d, ch, verbose=True):
        _autoload.flush()  # hooks of modules a circular import caught half-initialised
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

    return parse_model


def _wrap_fuse(tasks) -> None:
    """Make ``BaseModel.fuse`` (called by val, predict, export) also fold the BatchNorms inside our layers. Idempotent.

    Ultralytics' ``fuse`` folds BatchNorm only into its own ``Conv``/``Conv2``/``DWConv``/... modules and then prints
    the model summary (``self.info``). The wrapper folds ours first (:func:`yolo_attn.layers.fuse_layers`: CGA's and
    SHSA's Conv+BN pairs, SHSA's GroupNorm affine), so that summary counts the folded parameters, then runs the
    original unchanged. Folding twice is a no-op; a model without our layers is untouched.
    """
    from .layers import fuse_layers

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


def _shipped_for(path) -> Path | None:
    """The shipped config standing for ``path`` when neither it nor its scale-less name exists locally."""
    from .configs import shipped_configs, unscaled

    path = Path(path)
    unified = Path(unscaled(str(path)))  # yolov8s-lska.yaml -> yolov8-lska.yaml
    if path.exists() or unified.exists() or len(path.parts) > 1:
        return None
    return shipped_configs().get(unified.name)


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
            shipped = _shipped_for(path)
            if shipped is None:
                return original(path)
            d = original(shipped)
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


def _log(message: str) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.info(message)


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
    ours = tuple(LAYERS.values())

    def make(original):
        def load(self, weights, verbose=True):
            source = (weights.get("ema") or weights.get("model")) if isinstance(weights, dict) else weights
            lists = [getattr(net, "model", None) for net in ((self, source) if isinstance(source, nn.Module) else ())]
            if any(isinstance(m, ours) for x in lists if isinstance(x, (nn.Sequential, nn.ModuleList)) for m in x):
                from .transfer import aligned_source

                view = aligned_source(self, source)
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
        _wrap_fuse(tasks)
        _wrap_load(tasks)
        _wrap_yaml_model_load(tasks)
        _wrap_torch_safe_load(tasks)
        for module, patch in _SQUARE_PATCHES.items():
            _autoload.when_imported(module, patch)
        if not _registered and hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4; once per process
            torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
        _registered = tuple(names)
    return _registered


def registered() -> tuple[str, ...]:
    """Names registered so far (empty before :func:`register` ran)."""
    return _registered
