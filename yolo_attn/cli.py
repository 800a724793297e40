"""The ``yolo-attn`` command.

``yolo-attn <yolo arguments>`` registers the layers and hands the same arguments to Ultralytics' own ``yolo``
entry point — for environments that skip ``.pth`` start-up files (``python -S``, some embedded interpreters):

    yolo-attn train model=cfg/yolov8n-lska.yaml data=coco8.yaml epochs=1

Own sub-commands (``yolo-attn <command> --help`` for options):

    yolo-attn layers             list the registered layer names and their YAML arguments
    yolo-attn insert ...         insert a layer into a model YAML, renumbering every ``from`` index
    yolo-attn check ...          build a config at several scales and shapes; per-layer params and FLOPs
    yolo-attn demo ...           offline comparison run: stock YOLOv8n against the four attention variants
    yolo-attn bench ...          layer and model benchmarks (writes BENCHMARKS.md)
    yolo-attn data shapes ...    generate the synthetic shapes dataset
"""

from __future__ import annotations

import importlib
import inspect
import sys

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "insert": "yolo_attn.configs:main",
    "check": "yolo_attn.check:main",
    "demo": "yolo_attn.demo:main",
    "bench": "yolo_attn.bench:main",
}
"""Sub-command -> ``module:function`` taking the remaining arguments and returning an exit code (imported lazily)."""


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
    if argv[:1] and argv[0] in COMMANDS:
        module, func = COMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module), func)(argv[1:]) or 0

    from . import register

    register()
    from ultralytics.cfg import entrypoint

    sys.argv = ["yolo", *argv]  # Ultralytics reads its arguments from sys.argv
    entrypoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
