"""``yolo-attn demo``: a tiny real run through the command, and the table arithmetic."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import pytest

from conftest import bin_path
from yolo_attn.configs import load_base
from yolo_attn.data import CLASSES
from yolo_attn.demo import CAVEAT, RunResult, _aggregate, _markdown
from yolo_attn.integration import build_model


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    cmd = [bin_path("yolo-attn"), "demo", "--epochs", "1", "--imgsz", "64", "--train", "16", "--val", "8",
           "--batch", "8", "--models", "yolov8n,shsa", "--device", "cpu", "--workers", "0", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_writes_table_and_plot(demo_run):
    out, stdout = demo_run
    rows = _rows(out / "results.csv")
    assert [r["model"] for r in rows] == ["yolov8n", "shsa"]
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (out / "results.md").read_text()
    for r in rows:  # the markdown table and the printed table carry the csv's figures
        line = (f"| {r['model']} | {int(r['params']):,} | {float(r['gflops']):.3f} | {float(r['map50']):.4f} | "
                f"{float(r['map50_95']):.4f} | {float(r['latency_ms']):.1f} |")
        assert line in md and line in stdout, (line, md)
    assert CAVEAT in md and CAVEAT in stdout
    # one progress line per model and epoch, no per-batch bars
    assert sum("epoch   1/1" in line for line in stdout.splitlines()) == 2
    assert "━" not in stdout and "it/s" not in stdout
    # the generated data is reused by a second run
    assert (out / "shapes" / "data.yaml").is_file()


def test_demo_figures_come_from_the_run(demo_run):
    """Params and GFLOPs are those of the trained configs, mAP those of the trained weights, times measured."""
    import torch
    from ultralytics import YOLO

    from yolo_attn.check import count_flops

    out, _ = demo_run
    rows = {r["model"]: r for r in _rows(out / "results.csv")}
    runs = {r["model"]: r for r in _rows(out / "runs.csv")}
    for name, cfg in (("yolov8n", "yolov8n.yaml"), ("shsa", str(out / "configs" / "yolov8n-shsa.yaml"))):
        model = build_model({**load_base(cfg), "nc": len(CLASSES)}, scale="n")  # as trained on the shapes data
        assert int(rows[name]["params"]) == sum(p.numel() for p in model.parameters())
        assert float(rows[name]["gflops"]) == pytest.approx(count_flops(model, 64) / 1e9, abs=1e-3)
        assert float(rows[name]["latency_ms"]) > 0 and float(rows[name]["train_s"]) > 0
        weights = Path(runs[name]["weights"])
        assert weights.is_file() and weights.parent.parent.name == f"{name}-seed0"
        # Ultralytics' own log of the same run holds the same final metrics
        log = _rows(weights.parent.parent / "results.csv")
        final = {k.strip(): v for k, v in log[-1].items()}
        assert float(final["metrics/mAP50-95(B)"]) == pytest.approx(float(runs[name]["map50_95"]), abs=1e-3)
    shsa = YOLO(runs["shsa"]["weights"]).model
    assert any(type(m).__name__ == "SHSA" for m in shsa.modules())
    assert int(rows["shsa"]["params"]) > int(rows["yolov8n"]["params"])
    assert torch.is_tensor(next(shsa.parameters()))


def _result(model: str, seed: int, map50_95: float, latency: float) -> RunResult:
    return RunResult(model=model, seed=seed, params=100, gflops=1.5, map50=2 * map50_95, map50_95=map50_95,
                     latency_ms=latency, train_s=10.0 + seed, weights="w.pt")


def test_seeds_give_mean_and_spread():
    runs = [_result("yolov8n", 0, 0.10, 5.0), _result("cga", 0, 0.20, 6.0),
            _result("yolov8n", 1, 0.30, 7.0), _result("cga", 1, 0.20, 6.0),
            _result("yolov8n", 2, 0.20, 6.0), _result("cga", 2, 0.20, 6.0)]
    rows = _aggregate(runs, ["yolov8n", "cga"])
    base, cga = rows
    assert base["seeds"] == 3 and base["map50_95"] == pytest.approx(0.2) and base["map50_95_sd"] == pytest.approx(0.1)
    assert base["latency_ms"] == pytest.approx(6.0) and base["latency_ms_sd"] == pytest.approx(1.0)
    assert cga["map50_95_sd"] == 0 and cga["train_s"] == pytest.approx(11.0)

    class Args:
        epochs, imgsz, batch = 3, 64, 8

    md = _markdown(rows, Args, "data.yaml", "cpu", 60.0)
    assert "| yolov8n | 100 | 1.500 | 0.4000 ± 0.2000 | 0.2000 ± 0.1000 | 6.0 ± 1.0 | 11 ± 1 |" in md
    assert "3 seeds (mean ± standard deviation over seeds)" in md
    single = _aggregate([_result("lska", 0, 0.25, 4.0)], ["lska"])
    assert "| lska | 100 | 1.500 | 0.5000 | 0.2500 | 4.0 | 10 |" in _markdown(single, Args, "d", "cpu", 1.0)
    assert not math.isnan(single[0]["map50_95"])
