"""The ``yolo-attn`` command.

``yolo-attn <yolo arguments>`` registers the layers and hands the same arguments to Ultralytics' own ``yolo``
entry point — for environments that skip ``.pth`` start-up files (``python -S``, some embedded interpreters):

    yolo-attn train model=cfg/yolov8n-lska.yaml data=coco8.yaml epochs=1

Own sub-commands:

    yolo-attn layers             list the registered layer names and their YAML arguments
    yolo-attn data shapes ...    generate the synthetic shapes dataset (``--help`` for options)
"""

from __future__ import annotations

import inspect
import sys

__all__ = ["main"]


def _layers() -> int:
    from . import LAYERS, register

    names = register()
    for name, cls in LAYERS.items():
        params = list(inspect.signature(cls).parameters.values())[1:]
        args = ", ".join(f"{p.name}={p.default!r}" for p in params)
        state = "registered" if name in names else "NOT registered (Ultralytics defines this name)"
        print(f"{name:5s} [{args}]  {state}")
    return 0


def _data(argv: list[str]) -> int:
    if not argv or argv[0] != "shapes":
        print("usage: yolo-attn data shapes --out DIR [--train N --val M --imgsz S --seed K]", file=sys.stderr)
        return 2
    from .data.shapes import main as shapes_main

    return shapes_main(argv[1:]) or 0


def main(argv: list[str] | None = None) -> int:
    """Run ``yolo-attn``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["layers"]:
        return _layers()
    if argv[:1] == ["data"]:
        return _data(argv[1:])

    from . import register

    register()
    from ultralytics.cfg import entrypoint

    sys.argv = ["yolo", *argv]  # Ultralytics reads its arguments from sys.argv
    entrypoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
