"""Write cfg/ with `yolo-attn insert`: every layer at every placement of YOLOv8 and RT-DETR-l, and after SPPF of YOLO11.

Usage: python scripts/make_configs.py [--out cfg]

The configs take Ultralytics' stock YAMLs from the installed ultralytics and the per-placement default arguments
(``yolo_attn.configs.default_args``). ``tests/test_configs.py`` regenerates them and fails if cfg/ differs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from yolo_attn.configs import main as insert_main
from yolo_attn.layers.registry import builtin_specs

LAYERS = tuple(builtin_specs())  # every shipped layer, from the registry
PLAN = {  # file stem of the family -> (stock YAML, placements)
    "yolov8": ("yolov8.yaml", ("after-sppf", "neck", "backbone")),
    "yolo11": ("yolo11.yaml", ("after-sppf",)),
    "rtdetr-l": ("rtdetr-l.yaml", ("after-sppf", "neck", "backbone")),
}


def shipped_names() -> list[tuple[str, str, str, str]]:
    """(file name, stock YAML, layer, placement) of every shipped config."""
    out = []
    for stem, (base, placements) in PLAN.items():
        for layer in LAYERS:
            for at in placements:
                suffix = "" if at == "after-sppf" else f"-{at}"
                out.append((f"{stem}-{layer.lower()}{suffix}.yaml", base, layer, at))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "cfg"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for name, base, layer, at in shipped_names():
        with contextlib.redirect_stderr(io.StringIO()):
            # no build check here: tests/test_configs.py builds every shipped file at every scale
            code = insert_main([base, "--layer", layer, "--at", at, "-o", str(out / name), "--no-check"])
        if code:
            raise SystemExit(f"yolo-attn insert failed for {name}")
        print(name)


if __name__ == "__main__":
    main()
