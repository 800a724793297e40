"""Datasets for yolo_attn: an offline synthetic shapes set for every task (see :mod:`yolo_attn.data.shapes`).

Example:
    >>> from yolo_attn.data import make_shapes, CLASSES
    >>> yaml_path = make_shapes("datasets/shapes", train=200, val=50, imgsz=128)  # doctest: +SKIP
"""

from yolo_attn.data.shapes import CLASSES, FLIP_IDX, KPT_SHAPE, TASKS, Scene, image_rng, main, make_shapes, render

__all__ = ["CLASSES", "FLIP_IDX", "KPT_SHAPE", "TASKS", "Scene", "image_rng", "main", "make_shapes", "render"]
