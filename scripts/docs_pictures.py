"""Draw the docs' pictures from a finished demo run: the demo's own pictures and one attention-map picture per layer.

Usage: bash scripts/main.sh                      # the demo (runs/yolo_attn_demo), about 6 min on 2 CPU cores
       .venv/bin/python scripts/docs_pictures.py [--demo runs/yolo_attn_demo] [--image N] [--imgsz 256]

Written into ``docs/assets/`` (shared by both languages):

* ``demo/results.png``, ``demo/curves.png``, ``demo/predictions.png``: the demo's pictures (256 colours); the Comparing
  page shows them.
* ``show/<layer>.png``: ``yolo-attn show`` of the demo's seed-0 fine-tuned ``yolov8n-<layer>.yaml`` checkpoint on
  one validation image of the demo's generated data set (trained weights, so the maps are what the layer learned,
  not random ones); ``scripts/readme_tables.py`` puts the picture on the layer's page when the file is there. A
  layer without a demo run (e.g. one added after the pictures were drawn) is listed and skipped; its page says how
  to draw it.

The pictures are the record of one run on one machine: a rerun elsewhere draws similar, not identical, pictures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

from yolo_attn.compare import val_images
from yolo_attn.layers.registry import builtin_specs
from yolo_attn.show import show

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "assets"
DEMO_PICTURES = ("results.png", "curves.png", "predictions.png")


def layer_picture(name: str) -> Path:
    """Where the attention-map picture of layer ``name`` lives (it may not exist yet)."""
    return ASSETS / "show" / f"{name.lower()}.png"


def save_compact(src: Path, dest: Path) -> None:
    """``src`` written to ``dest`` as a 256-colour PNG (the pictures are plots: a palette keeps them legible at a
    fraction of the size, so the repository stays small)."""
    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            dest, optimize=True)


def demo_run(demo: Path, layer: str, seed: int = 0) -> tuple[str, str] | None:
    """``(weights, data)`` of the demo's run of ``yolov8n-<layer>.yaml`` with ``seed``, or None if there is none."""
    store = demo / "runs" / f"yolov8n-{layer.lower()}-seed{seed}.json"
    if not store.is_file():
        return None
    record = json.loads(store.read_text())
    weights = Path(record["result"]["weights"])
    return (str(weights), record["settings"]["data"]) if weights.is_file() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default=str(ROOT / "runs" / "yolo_attn_demo"), help="the demo's output directory")
    ap.add_argument("--image", type=int, default=3, help="which validation image (sorted by name) to draw on")
    ap.add_argument("--imgsz", type=int, default=256, help="input size of the attention-map pictures")
    args = ap.parse_args(argv)
    demo = Path(args.demo)
    missing = [p for p in DEMO_PICTURES if not (demo / p).is_file()]
    if missing:
        sys.exit(f"docs_pictures: {demo} has no {', '.join(missing)}; run the demo first (bash scripts/main.sh)")
    (ASSETS / "demo").mkdir(parents=True, exist_ok=True)
    for name in DEMO_PICTURES:
        save_compact(demo / name, ASSETS / "demo" / name)
        print(f"wrote {ASSETS / 'demo' / name}")
    layer_picture("x").parent.mkdir(parents=True, exist_ok=True)
    skipped = []
    for name, spec in builtin_specs().items():
        if not callable(getattr(spec.cls, "attention_maps", None)):
            continue  # a channel gate (SE, ECA): no spatial map; its page says so
        run = demo_run(demo, name)
        if run is None:
            skipped.append(name)
            continue
        weights, data = run
        image = val_images(data, args.image + 1)[args.image]
        with tempfile.TemporaryDirectory() as tmp:
            (path,) = show(weights, str(image), out=tmp, imgsz=args.imgsz)  # the demo's configs hold one layer
            save_compact(path, layer_picture(name))
        print(f"wrote {layer_picture(name)} ({Path(weights).relative_to(demo)} on {image.name})")
    if skipped:
        print(f"no demo run (yolov8n-<layer>-seed0) for {', '.join(skipped)}: no picture; run the demo with them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
