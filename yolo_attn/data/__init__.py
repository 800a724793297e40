"""Datasets for yolo_attn: an offline synthetic shapes detection set (see :mod:`yolo_attn.data.shapes`).

Example:
    >>> from yolo_attn.data import make_shapes, CLASSES
    >>> yaml_path = make_shapes("datasets/shapes", train=200, val=50, imgsz=128)  # doctest: +SKIP
"""

from yolo_attn.data.shapes import CLASSES, Scene, image_rng, main, make_shapes, render

__all__ = ["CLASSES", "Scene", "image_rng", "main", "make_shapes", "render"]
