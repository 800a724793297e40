"""Square inputs (fact 6 of the adapter): models whose layers declare ``requires_square_input`` (``FLA(fixed=True)``)
get square letterboxed batches where Ultralytics would use rectangular ones.

Training builds its val set in ``DetectionTrainer.build_dataset`` with ``rect=mode == "val"``; ``Model.val``/``yolo
val`` pass ``rect=True``; all datasets come from ``BaseDataset.__init__(..., rect=...)`` (keyword in every checked
version). The predictor letterboxes in ``BasePredictor.pre_transform`` with ``auto=True`` (minimal, non-square
padding) for PyTorch models. Each patch is applied when its module is imported (:data:`SQUARE_PATCHES`).
"""

from __future__ import annotations

import contextlib
import contextvars

from torch import nn

from .patching import log, patch

__all__ = ["square_layers", "SQUARE_PATCHES"]

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
                log(f"{prefix} yolo_attn: {', '.join(names)} needs square inputs (fixed=True); using square "
                    "letterboxed batches instead of rect batches.".strip())
            original(self, *args, **kwargs)
        return __init__

    patch(module.BaseDataset, "__init__", make)


def _square_trainer(module) -> None:
    def make(original):
        def build_dataset(self, *args, **kwargs):
            with _square_inputs(self.model):
                return original(self, *args, **kwargs)
        return build_dataset

    patch(module.DetectionTrainer, "build_dataset", make)


def _square_validator(module) -> None:
    def make(original):
        def __call__(self, trainer=None, model=None, **kwargs):
            target = model
            if trainer is not None:
                target = getattr(getattr(trainer, "ema", None), "ema", None) or trainer.model
            with _square_inputs(target):
                return original(self, trainer, model, **kwargs)
        return __call__

    patch(module.BaseValidator, "__call__", make)


def _square_predictor(module) -> None:
    def make(original):
        def pre_transform(self, im):
            names = square_layers(self.model)
            if not names:
                return original(self, im)
            if not getattr(self, "_yolo_attn_square_logged", False):
                self._yolo_attn_square_logged = True
                log(f"yolo_attn: {', '.join(names)} needs square inputs (fixed=True); letterboxing images to "
                    f"{self.imgsz} instead of the minimal rectangle.")
            from ultralytics.data.augment import LetterBox  # lazy: imported with the predictor, not with the adapter

            letterbox = LetterBox(self.imgsz, auto=False, stride=self.model.stride)
            return [letterbox(image=x) for x in im]
        return pre_transform

    patch(module.BasePredictor, "pre_transform", make)


SQUARE_PATCHES = {
    "ultralytics.data.base": _square_dataset,
    "ultralytics.models.yolo.detect.train": _square_trainer,
    "ultralytics.engine.validator": _square_validator,
    "ultralytics.engine.predictor": _square_predictor,
}
"""Square batches for models that need them (fact 6); each applied when its module is imported."""
