"""Main job (until the demo lands): build every shipped config, run it at 640×640 and 384×640, then one tiny
offline ``yolo train`` through the plain ``yolo`` command on generated data.

Usage: python scripts/smoke.py [--out runs/smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "runs" / "smoke"))
    out = Path(ap.parse_args().out).resolve()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics-settings"))

    import torch
    from ultralytics import RTDETR, YOLO

    from yolo_attn.data import make_shapes

    print(f"{'config':28s} {'params':>11s}  forward (eval)")
    for cfg in sorted((ROOT / "cfg").glob("*.yaml")):
        rtdetr = cfg.name.startswith("rtdetr")
        # YOLO configs pick their scale from the file name (yolov8n-lska.yaml -> scale n), as stock ones do.
        name = cfg if rtdetr else cfg.with_name(cfg.name.replace("-", "n-", 1))
        model = (RTDETR if rtdetr else YOLO)(str(name)).model.eval()
        shapes = ((640, 640), (384, 640))
        for shape in shapes:
            with torch.no_grad():
                y = model(torch.zeros(1, 3, *shape))
            y = y[0] if isinstance(y, (list, tuple)) else y
            assert torch.isfinite(y).all(), f"{cfg.name}: non-finite output at {shape}"
        nparams = sum(p.numel() for p in model.parameters())
        print(f"{name.name:28s} {nparams:11,d}  ok at " + ", ".join(f"{h}x{w}" for h, w in shapes), flush=True)

    data = make_shapes(out / "shapes", train=32, val=16, imgsz=64, seed=0)
    cmd = ["yolo", "train", f"model={ROOT / 'cfg' / 'yolov8n-lska.yaml'}", f"data={data}", "imgsz=64", "epochs=1",
           "batch=16", "device=cpu", "workers=0", "plots=False", f"project={out}", "name=train", "exist_ok=True"]
    print("\n$ " + " ".join(cmd), flush=True)
    yolo = Path(sys.executable).with_name("yolo")
    return subprocess.call([str(yolo), *cmd[1:]])


if __name__ == "__main__":
    sys.exit(main())
