"""``yolo-attn demo``: stock YOLOv8n against every registered layer after SPPF, fine-tuned by one recipe, offline.

    yolo-attn demo                                  # default budget: fits in 10 min on 2 CPU cores with set-up
    yolo-attn demo --epochs 10 --seeds 3 --device 0
    yolo-attn demo --data your.yaml --epochs 100 --imgsz 640 --models yolov8n.yaml,yolov8n-lska.yaml

The demo is :func:`yolo_attn.compare.compare` with defaults. Without ``--data`` it generates the synthetic shapes
dataset (``yolo_attn.data.make_shapes``, seed 0) under ``--out`` if it is not there yet. The models are stock
``yolov8n.yaml`` and ``yolov8n-<layer>.yaml`` for every layer in the registry (``builtin_specs()``: the layer after
SPPF). Every model, the stock one too, starts from the shipped weights ``yolo_attn/weights/yolov8n-shapes.pt`` (stock
YOLOv8n pretrained on other generated shapes images, seed 1, by ``scripts/pretrain_demo.py``; how is recorded in
``yolov8n-shapes.json``) through the structural transfer, then all are fine-tuned with one recipe under one budget
(``--scratch``: from random weights instead). Output as for ``yolo-attn compare`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .compare import DeviceError, compare, resolve_device
from .configs import cfg_path
from .data import make_shapes
from .layers.registry import builtin_specs

__all__ = ["main", "run", "models", "made_by", "DEFAULTS", "WEIGHTS", "CAVEAT"]

WEIGHTS = Path(__file__).resolve().parent / "weights" / "yolov8n-shapes.pt"
"""Stock YOLOv8n pretrained on generated shapes data (fp16 state_dict); its record is the ``.json`` next to it."""

DEFAULTS = {"epochs": 3, "imgsz": 128, "train": 320, "val": 160, "batch": 16, "seeds": 2}
"""The default budget: sized so that set-up plus the demo fit in 10 minutes on 2 CPU cores."""

CAVEAT = (
    "What these numbers show: each variant builds, fine-tunes, validates and runs here, what it costs (parameters, "
    "FLOPs, CPU latency and throughput at this size, training time), and whether, starting from the same pretrained "
    "stock weights with a freshly initialised attention layer, a short fine-tune on synthetic shapes changes mAP by "
    "more than the seed-to-seed noise. What they do not show: which layer is more accurate on real data. The inserted "
    "layer starts untrained while every other weight is pretrained, a few epochs are far from convergence, a "
    "synthetic result would not carry over to COCO or your data, and the CPU latency at this size says little about "
    "a GPU at 640 px. For that comparison, fine-tune from yolov8n.pt on your data with several seeds: yolo-attn "
    "compare yolov8n.yaml yolov8n-lska.yaml ... --data your.yaml --epochs 100 --imgsz 640 --seeds 3 --init yolov8n.pt "
    "--device 0."
)


def models() -> list[str]:
    """Stock ``yolov8n.yaml`` then ``yolov8n-<layer>.yaml`` for every built-in registered layer."""
    names = ["yolov8n.yaml"]
    for name in builtin_specs():
        cfg = f"yolov8n-{name.lower()}.yaml"
        cfg_path(cfg)  # raises when no config is shipped for a registered layer
        names.append(cfg)
    return names


def _config(name: str) -> str:
    """``--models`` entry -> config: a layer name (``lska``) or ``yolov8n`` stands for its demo config."""
    if name.upper() in builtin_specs():
        return f"yolov8n-{name.lower()}.yaml"
    return "yolov8n.yaml" if name == "yolov8n" else name


def _ensure_data(args, out: Path) -> str:
    if args.data:
        return args.data
    root = out / "shapes"
    stamp = f"make_shapes(train={args.train}, val={args.val}, imgsz={args.imgsz}, seed=0)"
    yaml_path = root / "data.yaml"
    if yaml_path.is_file() and stamp in yaml_path.read_text():
        print(f"data: {yaml_path} (already generated)")
        return str(yaml_path)
    t0 = time.perf_counter()
    yaml_path = make_shapes(root, train=args.train, val=args.val, imgsz=args.imgsz, seed=0)
    print(f"data: generated {args.train} train / {args.val} val synthetic images at {args.imgsz} px in "
          f"{time.perf_counter() - t0:.1f} s -> {yaml_path}")
    return str(yaml_path)


def made_by(record: dict) -> str:
    """The commands that made a weights file, first to last: a run continued with ``--init`` keeps the record of the
    weights it started from under ``continued_from``."""
    chain = []
    while record:
        chain.insert(0, f"`{record['command'].strip()}`")
        record = record.get("continued_from")
    return ", then ".join(chain)


def _what_was_done(args) -> str:
    if args.scratch:
        return "Every model trained from random weights. " + CAVEAT
    rec = json.loads(WEIGHTS.with_suffix(".json").read_text())
    m = rec.get("final_val_metrics", {})
    return (f"Every model — stock YOLOv8n too — was initialised from `{WEIGHTS.name}` ({rec['what']}; made by "
            f"{made_by(rec)} on {rec['data']}, mAP50 {m.get('metrics/mAP50(B)', float('nan')):.3f} on "
            f"its own validation images; record `{WEIGHTS.with_suffix('.json').name}`) through the structural "
            "transfer: every stock tensor is copied into its layer, the inserted attention layer keeps its seeded "
            "initialisation. Then all were fine-tuned by the same recipe and budget. " + CAVEAT)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="yolo-attn demo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per model (default %(default)s)")
    ap.add_argument("--imgsz", type=int, default=DEFAULTS["imgsz"], help="train/val/latency size (default %(default)s)")
    ap.add_argument("--models", default=None,
                    help="comma-separated model configs (names or paths; a layer name such as lska stands for "
                         "yolov8n-lska.yaml); the first is the baseline (default: yolov8n.yaml and "
                         "yolov8n-<layer>.yaml for every registered layer)")
    ap.add_argument("--data", default=None, help="dataset YAML (default: generate the synthetic shapes set)")
    ap.add_argument("--device", default=None, help="cpu, 0, mps ... (default: Ultralytics' choice)")
    ap.add_argument("--seeds", type=int, default=DEFAULTS["seeds"],
                    help="repeat every model with seeds 0..N-1 and report mean ± sd (default %(default)s)")
    ap.add_argument("--out", default="runs/yolo_attn_demo", help="output directory (default %(default)s)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="batch size (default %(default)s)")
    ap.add_argument("--train", type=int, default=DEFAULTS["train"], help="generated training images (default %(default)s)")
    ap.add_argument("--val", type=int, default=DEFAULTS["val"], help="generated validation images (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="dataloader workers (default %(default)s)")
    ap.add_argument("--scratch", action="store_true", help="train from random weights instead of the shipped ones")
    return ap


def run(args: argparse.Namespace) -> list[dict]:
    """Run the demo for parsed arguments; returns the table rows (also written under ``args.out``)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfgs = [_config(c.strip()) for c in args.models.split(",") if c.strip()] if args.models else models()
    if not cfgs:
        raise SystemExit("yolo-attn demo: --models names no config")
    data = _ensure_data(args, out)
    return compare(cfgs, data, epochs=args.epochs, imgsz=args.imgsz, seeds=args.seeds, device=args.device, out=out,
                   batch=args.batch, init=None if args.scratch else str(WEIGHTS), note=_what_was_done(args),
                   workers=args.workers)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn demo``; returns the exit code."""
    ap = _parser()
    args = ap.parse_args(argv)
    for key in ("epochs", "imgsz", "seeds", "batch", "train", "val"):
        if getattr(args, key) < 1:
            ap.error(f"--{key} must be >= 1")
    try:
        resolve_device(args.device)  # before generating data: a bad --device is an argument error, not a traceback
    except DeviceError as e:
        ap.error(str(e))
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
