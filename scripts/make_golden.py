"""Write the golden checkpoints of a release: ``tests/golden/<version>/``.

Each checkpoint is a real ``best.pt`` from Ultralytics' trainer (one epoch on generated data, so it carries everything
a user's checkpoint carries: EMA model in half precision, train args, optimizer state), whose model weights are then
replaced by seeded random values (so that every branch of every layer, including SHSA's zero-initialised one, affects
the output). Next to each checkpoint, ``outputs.pt`` records the raw eval-mode output of the loaded model for a seeded
input; ``tests/test_golden.py`` loads the checkpoints with every later release and compares.

Models: a narrow YOLOv8 with CGA, FLA, LSKA and SHSA stacked after SPPF, and a small RT-DETR (HGNet stem, AIFI) with
the four layers in its neck. Run once per release, from the repository root, and commit the result:

    .venv/bin/python scripts/make_golden.py

``--library`` adds one checkpoint to the current version's folder, leaving the others as they are:
``yolov8-library.pt``, the same narrow YOLOv8 with every other shipped layer (the attention library) stacked after
SPPF at its defaults; its record lists the layers it holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_attn_cfg_"))

import torch

import yolo_attn
from yolo_attn.configs import find_after_sppf, insert_rows, load_base
from yolo_attn.data import make_shapes
from yolo_attn.layers import builtin_specs

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 64
LAYERS = ("CGA", "FLA", "LSKA", "SHSA")


def yolo_cfg(layers=LAYERS) -> dict:
    d = load_base("yolov8.yaml")
    d["scales"] = {"n": [0.33, 0.125, 1024]}  # P5 = 128 channels: a checkpoint of a few hundred kB
    p = find_after_sppf(d)
    for name in reversed(layers):
        d = insert_rows(d, name, p, {"FLA": [4, 2], "CGA": [4, 8, 2, 3]}.get(name, []))
    return d


def library() -> tuple[str, ...]:
    """Every shipped layer but the first four, in registry order."""
    return tuple(name for name in builtin_specs() if name not in LAYERS)


def rtdetr_cfg() -> dict:
    return {
        "nc": 3,
        "backbone": [
            [-1, 1, "HGStem", [16, 32]],  # 0 P2/4
            [-1, 1, "Conv", [32, 3, 2]],  # 1 P3/8
            [-1, 1, "Conv", [64, 3, 2]],  # 2 P4/16
            [-1, 1, "Conv", [128, 3, 2]],  # 3 P5/32
        ],
        "head": [
            [-1, 1, "Conv", [64, 1, 1, None, 1, 1, False]],  # 4
            [-1, 1, "AIFI", [256, 8]],  # 5
            [-1, 1, "CGA", [4, 8, 2, 3]],  # 6 P5
            [-1, 1, "FLA", [4, 2]],  # 7 P5
            [2, 1, "LSKA", [11]],  # 8 P4
            [1, 1, "SHSA", [8]],  # 9 P3
            [[9, 8, 7], 1, "RTDETRDecoder", ["nc", 32, 30, 4, 4, 1]],  # 10
        ],
    }


def make(name: str, cfg: dict, model_cls, data: str, out: Path) -> dict:
    from ultralytics.utils import YAML

    cfg_file = out / f"{name}.yaml"
    YAML.save(cfg_file, cfg)
    model = model_cls(str(cfg_file))
    model.train(data=data, epochs=1, imgsz=IMGSZ, batch=4, workers=0, device="cpu", project=str(out / "runs"),
                name=name, plots=False, val=False, amp=False, verbose=False, seed=0)
    last = Path(model.trainer.save_dir) / "weights" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(0)
    net = ckpt.get("ema") or ckpt["model"]  # last.pt of a finished run keeps the EMA model as "model"
    with torch.no_grad():
        for t in list(net.parameters()) + [b for n, b in net.named_buffers() if "running" in n]:
            t.copy_((torch.rand(t.shape, generator=g) + 0.5) if t.dim() == 1 and t.min() > 0
                    else torch.randn(t.shape, generator=g) / max(t[0].numel(), 1) ** 0.5)
    target = ROOT / "tests" / "golden" / yolo_attn.__version__ / f"{name}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, target)
    loaded = model_cls(str(target)).model.float().eval()
    x = torch.randn(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = loaded(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size / 1e3:.0f} kB, output {tuple(y.shape)}")
    return {"input": x, "output": y.clone()}


def main(argv: list[str] | None = None) -> int:
    from ultralytics import RTDETR, YOLO

    extend = "--library" in (sys.argv[1:] if argv is None else argv)
    record = ROOT / "tests" / "golden" / yolo_attn.__version__ / "outputs.pt"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data = str(make_shapes(out / "data", train=8, val=4, imgsz=IMGSZ, seed=0))
        if extend:  # one more checkpoint; the records of the others stay as they were made
            outputs = torch.load(record, weights_only=True)
            outputs["yolov8-library"] = {**make("yolov8-library", yolo_cfg(library()), YOLO, data, out),
                                         "layers": list(library())}
        else:
            outputs = {
                "yolov8-all4": make("yolov8-all4", yolo_cfg(), YOLO, data, out),
                "rtdetr-all4": make("rtdetr-all4", rtdetr_cfg(), RTDETR, data, out),
            }
    torch.save(outputs, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
