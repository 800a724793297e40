"""Pretrain stock YOLOv8n (scale n) on generated shapes data: the starting point the demo fine-tunes every model from.

    .venv/bin/python scripts/pretrain_demo.py                 # writes yolo_attn/weights/yolov8n-shapes.pt + .json
    .venv/bin/python scripts/pretrain_demo.py --epochs 2 --train 64 --out /tmp/p --dest /tmp/w.pt   # a quick try

Seeded and offline: the data is ``make_shapes(train=N, val=M, imgsz=S, seed=1)`` (seed 1: no image is shared with the
demo's own data, which uses seed 0), training is Ultralytics' default recipe from random weights with ``seed=0,
deterministic=True``. The shipped file is the final EMA model's state_dict in fp16 (``model.<i>.<name>`` keys; loads
with ``torch.load(..., weights_only=True)``), next to a JSON record of how it was made: this command, its arguments,
versions, time, the validation mAP on the pretraining set's own val split, and the file's SHA-256. With ``--polish N``
the first stage's result trains N epochs more without mosaic at a lower learning rate (``--stage1 PATH`` runs only
this second stage, from the first stage's ``last.pt``). With ``--init FILE`` (an earlier result of this script) the
first stage continues from those weights instead of random ones, with the optimizer Ultralytics' ``optimizer=auto``
picked for the first run (AdamW, lr0=0.001) and no warm-up (its high bias learning rate would undo the trained head);
the record then keeps the earlier record under ``continued_from``, so the whole chain stays reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "yolo_attn" / "weights" / "yolov8n-shapes.pt"
DATA_SEED = 1  # the demo generates its own data with seed 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=2400, help="generated training images (default %(default)s)")
    ap.add_argument("--val", type=int, default=200, help="generated validation images (default %(default)s)")
    ap.add_argument("--imgsz", type=int, default=128, help="image size (default %(default)s)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs (default %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="dataloader workers (default %(default)s)")
    ap.add_argument("--polish", type=int, default=10,
                    help="then this many epochs more from the result: no mosaic, AdamW lr0=0.0005, no warm-up "
                         "(default %(default)s)")
    ap.add_argument("--stage1", default=None,
                    help="skip the first stage: polish this checkpoint of an earlier run with the same arguments")
    ap.add_argument("--init", default=None,
                    help="continue from this weights file (an earlier result of this script) instead of random weights")
    ap.add_argument("--device", default="cpu", help="training device (default %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "pretrain_demo"), help="work directory (default %(default)s)")
    ap.add_argument("--dest", default=str(DEST), help="weights file to write (default %(default)s)")
    return ap


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    import yolo_attn
    from yolo_attn.data import CLASSES, make_shapes

    out = Path(args.out).resolve()
    t0 = time.perf_counter()
    data_yaml = out / "shapes" / "data.yaml"
    stamp = f"make_shapes(train={args.train}, val={args.val}, imgsz={args.imgsz}, seed={DATA_SEED})"
    if args.stage1 and data_yaml.is_file() and stamp in data_yaml.read_text():
        data = data_yaml  # the first stage's data, unchanged
    else:
        data = make_shapes(out / "shapes", train=args.train, val=args.val, imgsz=args.imgsz, seed=DATA_SEED)
    print(f"data: {args.train} train / {args.val} val images at {args.imgsz} px in {time.perf_counter() - t0:.0f} s",
          flush=True)
    common = dict(data=str(data), imgsz=args.imgsz, batch=args.batch, seed=args.seed, deterministic=True,
                  workers=args.workers, device=args.device, project=str(out), exist_ok=True, plots=False, patience=0,
                  verbose=False)
    t1 = time.perf_counter()
    last = args.stage1
    if last is None and args.init:
        start = out / "init.pt"  # a checkpoint Ultralytics can train from: the weights in stock YOLOv8n, nc classes
        net = DetectionModel("yolov8n.yaml", nc=len(CLASSES), verbose=False)
        net.load_state_dict({k: v.float() for k, v in torch.load(args.init, map_location="cpu",
                                                                   weights_only=True).items()})
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"model": net.half(), "train_args": {}, "date": None, "version": None}, start)
        model = YOLO(str(start))
        model.train(epochs=args.epochs, name="continue", optimizer="AdamW", lr0=0.001, warmup_epochs=0, **common)
        last = model.trainer.last
    elif last is None:
        model = YOLO("yolov8n.yaml")
        model.train(epochs=args.epochs, name="train", pretrained=False, **common)
        last = model.trainer.last
    if args.polish:
        model = YOLO(str(last))
        model.train(epochs=args.polish, name="polish", close_mosaic=args.polish, optimizer="AdamW", lr0=0.0005,
                    warmup_epochs=0, **common)
    train_s = time.perf_counter() - t1
    trainer = model.trainer
    ckpt = torch.load(trainer.last, map_location="cpu", weights_only=False)
    net = (ckpt.get("ema") or ckpt["model"]).float()
    sd = {k: (v.half() if v.is_floating_point() else v).detach().contiguous() for k, v in net.state_dict().items()}
    dest = Path(args.dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, dest)
    metrics = {k: round(float(v), 5) for k, v in (trainer.metrics or {}).items()}
    earlier = Path(args.init).with_suffix(".json") if args.init else None
    earlier = json.loads(earlier.read_text()) if earlier and earlier.is_file() else None
    record = {
        "file": dest.name,
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "what": "stock YOLOv8n (yolov8n.yaml, scale n) pretrained from random weights on generated shapes data; "
                "final EMA weights, fp16 state_dict",
        "stages": (f"{args.epochs} epochs from {Path(args.init).name}, AdamW lr0=0.001, no warm-up"
                   if args.init else f"{args.epochs} epochs Ultralytics defaults") + (
            f", then {args.polish} epochs without mosaic, AdamW lr0=0.0005, no warm-up" if args.polish else ""),
        "command": "python scripts/pretrain_demo.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if k in ("train", "val", "imgsz", "epochs", "batch", "seed",
                                                                  "polish")) + (f" --init {Path(args.init).name}" if args.init else ""),
        "continued_from": earlier,  # the record of the --init weights: how they were made
        "stage1_from": args.stage1,  # set when the first stage ran in an earlier invocation of the same command
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "dest", "stage1", "init")},
        "data": f"yolo_attn.data.make_shapes(train={args.train}, val={args.val}, imgsz={args.imgsz}, "
                f"seed={DATA_SEED})",
        "names": dict(model.names),
        "final_val_metrics": metrics,
        "train_s": round(train_s, 1),  # of this invocation (the second stage only with --stage1)
        "versions": {"yolo_attn": yolo_attn.__version__, "ultralytics": ultralytics.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, device {args.device}",
        "git_commit": _git_commit(),
    }
    dest.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
