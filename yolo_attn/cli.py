"""yolo-attn: efficient attention layers (and your own modules) as plain layer names in Ultralytics model YAMLs.

Commands (``yolo-attn <command> --help`` for options):

    yolo-attn layers             list the registered layer names, aliases and their YAML arguments
    yolo-attn insert ...         insert a layer into a model YAML, renumbering every ``from`` index; or write the
                                 config a name stands for (yolo-attn insert yolo26n-seg-cga-neck.yaml -o FILE)
    yolo-attn check ...          build a config at several scales and shapes; per-layer params and FLOPs
    yolo-attn demo ...           offline comparison run: stock YOLOv8n against the four attention variants
    yolo-attn compare CFG ...    train configs by one recipe over seeds; table with spread, Δ mAP, pictures
    yolo-attn show MODEL IMAGE   draw what each attention layer of a model attends to over an image
    yolo-attn bench ...          layer and model benchmarks (writes BENCHMARKS.md)
    yolo-attn data shapes ...    generate the synthetic shapes dataset (--task detect|segment|pose|obb|classify)
    yolo-attn version            the plugin's version (and Ultralytics'); also --version

Anything else goes to Ultralytics' own ``yolo`` command, with the layers registered — for environments that skip
``.pth`` start-up files (``python -S``, some embedded interpreters):

    yolo-attn train model=yolov8n-lska.yaml data=coco8.yaml epochs=1
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "insert": "yolo_attn.names:main",  # config names (yolo26n-lska.yaml); BASE --layer ... goes on to configs.main
    "check": "yolo_attn.check:main",
    "demo": "yolo_attn.demo:main",
    "compare": "yolo_attn.compare:main",
    "show": "yolo_attn.show:main",
    "bench": "yolo_attn.bench:main",
}
"""Sub-command -> ``module:function`` taking the remaining arguments and returning an exit code (imported lazily)."""


def _signature(spec) -> str:
    parts = ["c2 (output channels)"] if spec.channels == "out" else []
    parts += [f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in spec.params]
    return ", ".join(parts)


def _layers() -> int:
    from . import REGISTRY, register

    names = register()
    for name, spec in REGISTRY.items():
        state = "registered" if name in names else "NOT registered (Ultralytics defines this name)"
        origin = "" if spec.builtin else f"  ({spec.cls.__module__}.{spec.cls.__qualname__})"
        print(f"{name:5s} [{_signature(spec)}]  {state}{origin}")
        if spec.aliases:
            print(f"      aliases (same arguments): {', '.join(spec.aliases)}")
        for official, o in spec.official.items():
            print(f"      {official}: the official arguments ({', '.join(o.params)}; dim is replaced by the input "
                  "channels)")
    return 0


def _version() -> int:
    from . import __version__

    try:
        from importlib.metadata import version

        ultralytics = version("ultralytics")
    except Exception:  # noqa: BLE001 - not installed
        ultralytics = "not installed"
    print(f"yolo-attn {__version__} (ultralytics {ultralytics})")
    return 0


def _help() -> int:
    print(__doc__.strip().replace("``", ""))
    return 0


def _data(argv: list[str]) -> int:
    if not argv or argv[0] != "shapes":
        print("usage: yolo-attn data shapes --out DIR [--task detect|segment|pose|obb|classify] [--train N --val M "
              "--imgsz S --seed K]", file=sys.stderr)
        return 2
    from .data.shapes import main as shapes_main

    return shapes_main(argv[1:]) or 0


def main(argv: list[str] | None = None) -> int:
    """Run ``yolo-attn``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        return _help()
    if argv[0] in ("--version", "-V", "version"):
        return _version()
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
