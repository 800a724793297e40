"""A real ``yolo train`` (plain command, default validation) per layer and per family, with the model given by the
name of a shipped config from a directory that has no such file: the installed configs are found by name."""

from __future__ import annotations

import csv
import math
import subprocess

import pytest

from conftest import bin_path

RUNS = [  # real `yolo train` runs: every family (YOLOv8, YOLO11, RT-DETR) and placement at least once (every layer is
    # built and run in every family and placement by tests/test_coverage.py)
    ("yolov8n-lska-backbone.yaml", "LSKA", 2),
    ("yolov8n-fla-neck.yaml", "FLA", 3),
    ("yolo11n-cga.yaml", "CGA", 1),
    ("rtdetr-l-shsa.yaml", "SHSA", 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,layer,count", RUNS, ids=[r[0] for r in RUNS])
def test_yolo_train_with_a_shipped_config(name, layer, count, shapes_data, tmp_path):
    cmd = [bin_path("yolo"), "train", f"model={name}", f"data={shapes_data}", "imgsz=64", "epochs=1", "batch=8",
           "device=cpu", "workers=0", "plots=False", f"project={tmp_path / 'runs'}", "name=t", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert log.count(f"yolo_attn.{layer}") + log.count(f" {layer} ") >= count, "the summary lists the layers"
    with open(tmp_path / "runs" / "t" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1  # one epoch, validated
    metrics = {k.strip(): float(v) for k, v in rows[0].items() if k.strip().startswith("metrics/")}
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert (tmp_path / "runs" / "t" / "weights" / "best.pt").is_file()
