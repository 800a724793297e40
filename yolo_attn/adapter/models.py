"""Building a model and choosing its model class from the head; fusing (fact 7 of the adapter).

One chooser, :func:`model_class`, decides which Ultralytics model class a config builds — from its head
(``RTDETRDecoder`` -> ``RTDETRDetectionModel``, ``WorldDetect`` -> ``WorldModel``, ...) else from its task
(``guess_model_task``) — whatever the file is called; :func:`build_model` builds with it and :func:`front_end` maps a
config, checkpoint or model to the front end (``YOLO`` or ``RTDETR``) that trains and predicts with it.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

from torch import nn

from ..layers import fuse_layers
from .checkpoints import checkpoint_model
from .patching import patch

__all__ = ["build_model", "model_class", "front_end", "is_rtdetr", "summary_flops", "wrap_fuse"]

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


def _tasks():
    return importlib.import_module("ultralytics.nn.tasks")


def _config(cfg, scale: str | None = None) -> dict:
    d = dict(cfg) if isinstance(cfg, dict) else _tasks().yaml_model_load(str(cfg))
    if scale:
        d["scale"] = scale
    return d


def model_class(cfg) -> type[nn.Module]:
    """The Ultralytics model class a config (path, stock or shipped name, dict) builds: chosen by its head, else by
    its task."""
    tasks = _tasks()
    d = _config(cfg)
    head = str((d.get("head") or [[None, None, ""]])[-1][2])
    return getattr(tasks, _HEAD_MODELS.get(head, ""), None) or getattr(tasks, _TASK_MODELS[tasks.guess_model_task(d)])


def build_model(cfg, scale: str | None = None, verbose: bool = False, nc: int | None = None) -> nn.Module:
    """Build the Ultralytics model (DetectionModel, RTDETRDetectionModel, ...) of a config path, stock name or dict.

    ``scale`` overrides the scale taken from the file name (``yolov8s-lska.yaml`` -> s); ``nc`` the config's class
    count (the head's width depends on it).
    """
    d = _config(cfg, scale)
    cls = model_class(d)
    return cls(d, nc=nc, verbose=verbose) if nc is not None else cls(d, verbose=verbose)


def is_rtdetr(model: nn.Module) -> bool:
    """Whether a built model is Ultralytics' RT-DETR model (trained and predicted through ``RTDETR``)."""
    return isinstance(model, _tasks().RTDETRDetectionModel)


def front_end(source):
    """Ultralytics' front end, ``RTDETR`` or ``YOLO``, for a config (path, shipped name or dict), a checkpoint
    (``.pt``) or a built model: ``RTDETR`` when the model is Ultralytics' RT-DETR model — for a config, the class
    :func:`model_class` picks from its head — whatever the file is called."""
    from ultralytics import RTDETR, YOLO  # lazy: Ultralytics' front ends import its engine, data and trainers

    if isinstance(source, nn.Module):
        model_type = type(source)
    elif isinstance(source, (str, Path)) and Path(source).suffix == ".pt":
        model_type = type(checkpoint_model(source))
    else:
        model_type = model_class(source)
    return RTDETR if issubclass(model_type, _tasks().RTDETRDetectionModel) else YOLO


def wrap_fuse(tasks) -> None:
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

    patch(tasks.BaseModel, "fuse", make)


def summary_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float | None:
    """The FLOPs of Ultralytics' model summary for ``model`` at ``imgsz`` (int or (H, W)):
    ``ultralytics.utils.torch_utils.get_flops(model, imgsz)`` (thop) in GFLOPs, run on a copy, as FLOPs; None where
    it gives 0 (thop missing or profiling failed). Fact 10: ``get_flops(model, imgsz)`` takes an int or [H, W]."""
    torch_utils = importlib.import_module("ultralytics.utils.torch_utils")
    gflops = torch_utils.get_flops(copy.deepcopy(model), imgsz if isinstance(imgsz, int) else list(imgsz))
    return gflops * 1e9 if gflops else None
