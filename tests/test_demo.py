"""``yolo-attn demo``: a reduced real run through the command; its table, CSV, LaTeX and pictures agree with the runs."""

from __future__ import annotations

import csv
import hashlib
import json
import statistics
from pathlib import Path

import pytest
from scipy import stats

from conftest import BUILTIN
from yolo_attn.demo import CAVEAT, WEIGHTS, made_by, models

PNG = b"\x89PNG\r\n\x1a\n"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _runs(out: Path) -> dict[tuple[str, int], dict]:
    """The per-run JSON files, read independently of yolo_attn.compare."""
    runs = {}
    for f in sorted((out / "runs").glob("*-seed*.json")):
        r = json.loads(f.read_text())["result"]
        runs[(r["model"], r["seed"])] = r
    return runs


def test_demo_models_come_from_the_registry():
    assert models() == ["yolov8n.yaml", *(f"yolov8n-{name.lower()}.yaml" for name in BUILTIN)]


def test_shipped_weights_match_their_record_and_transfer_completely():
    from ultralytics import YOLO

    from yolo_attn.transfer import transfer

    record = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert WEIGHTS.stat().st_size < 8e6 and "scripts/pretrain_demo.py" in record["command"]
    # the chain of commands that made the file starts from random weights (no --init) and every later one continues
    first, *later = made_by(record).split(", then ")
    assert "--init" not in first and all("--init yolov8n-shapes.pt" in c for c in later)
    stock = YOLO("yolov8n.yaml").model
    model = type(stock)(stock.yaml, nc=len(record["names"]), verbose=False)
    report = transfer(model, str(WEIGHTS))
    assert report.n_transferred == report.total and not report.unused


@pytest.mark.slow
def test_demo_table_csv_latex_and_pictures_agree_with_the_runs(reduced_demo):
    out, stdout = reduced_demo
    runs = _runs(out)
    assert sorted(runs) == [("yolov8n", 0), ("yolov8n", 1), ("yolov8n-shsa", 0), ("yolov8n-shsa", 1)]
    rows = {r["model"]: r for r in _rows(out / "results.csv")}
    assert list(rows) == ["yolov8n", "yolov8n-shsa"]
    md, tex = (out / "results.md").read_text(), (out / "results.tex").read_text()
    for name, row in rows.items():
        per_seed = [runs[(name, s)] for s in (0, 1)]
        for key in ("map50", "map50_95", "latency_ms", "throughput", "train_s"):
            values = [r[key] for r in per_seed]
            assert float(row[key]) == pytest.approx(statistics.fmean(values), abs=1e-5), key
            assert float(row[key + "_sd"]) == pytest.approx(statistics.stdev(values), abs=1e-5), key
        assert int(row["params"]) == per_seed[0]["params"]
        cells = [name, f"{int(row['params']):,}", f"{float(row['gflops']):.3f}",
                 f"{float(row['latency_ms']):.1f} ± {float(row['latency_ms_sd']):.1f}",
                 f"{float(row['map50']):.4f} ± {float(row['map50_sd']):.4f}",
                 f"{float(row['map50_95']):.4f} ± {float(row['map50_95_sd']):.4f}"]
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} |"))
        assert all(f" {c} |" in line for c in cells), (cells, line)
        assert line in stdout
        tex_line = next(ln for ln in tex.splitlines() if ln.startswith(f"{name} &"))
        assert all(c.replace("±", "$\\pm$") in tex_line for c in cells[2:]), (cells, tex_line)
    # Δ against the baseline: paired over seeds, 95 % t-interval (scipy as the independent formulation)
    diffs = [runs[("yolov8n-shsa", s)]["map50_95"] - runs[("yolov8n", s)]["map50_95"] for s in (0, 1)]
    mean = statistics.fmean(diffs)
    sem = statistics.stdev(diffs) / 2 ** 0.5
    lo, hi = stats.t.interval(0.95, 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    shsa = rows["yolov8n-shsa"]
    assert float(shsa["d_map50_95"]) == pytest.approx(mean, abs=1e-6)
    assert float(shsa["d_map50_95_lo"]) == pytest.approx(lo, abs=1e-5)
    assert float(shsa["d_map50_95_hi"]) == pytest.approx(hi, abs=1e-5)
    words = "within noise" if lo <= 0 <= hi else (("better" if lo > 0 else "worse")
                                                  + ", beyond noise (2 seeds: decides little)")
    assert shsa["d_map50_95_verdict"] == words and words in md and rows["yolov8n"]["d_map50_95_verdict"] == "baseline"
    assert f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]" in md
    # what was done is said, in the table file and the output
    assert "initialised from `yolov8n-shapes.pt`" in md and CAVEAT in md and CAVEAT in stdout
    assert made_by(json.loads(WEIGHTS.with_suffix(".json").read_text())) in md
    assert "one recipe for every model" in md and "\\begin{tabular}" in tex and "\\end{table}" in tex
    assert "with 2 seeds the interval has one degree of freedom" in md  # the demo's two seeds decide little
    # one progress line per model, seed and epoch; no per-batch bars
    assert sum("epoch   1/1" in ln for ln in stdout.splitlines()) == 4
    assert "━" not in stdout and "it/s" not in stdout
    # pictures: the run's figures drawn
    for name in ("results.png", "curves.png", "predictions.png"):
        png = (out / name).read_bytes()
        assert png[:8] == PNG and len(png) > 5000, name
    for r in runs.values():  # every run started from the shipped weights, all stock tensors transferred
        assert r["loss"] and Path(r["weights"]).is_file()
        done, total = map(int, r["transferred"].split("/"))
        assert done == 355 and total >= 355


@pytest.mark.slow
def test_demo_weights_hold_the_reported_metrics(reduced_demo):
    """mAP of a run is that of Ultralytics' own log of the same run; the variant really contains its layer."""
    from ultralytics import YOLO

    out, _ = reduced_demo
    for (name, seed), r in _runs(out).items():
        log = _rows(Path(r["weights"]).parent.parent / "results.csv")
        final = {k.strip(): v for k, v in log[-1].items()}
        assert float(final["metrics/mAP50-95(B)"]) == pytest.approx(r["map50_95"], abs=1e-3), (name, seed)
    shsa = YOLO(_runs(out)[("yolov8n-shsa", 0)]["weights"]).model
    assert any(type(m).__name__ == "SHSA" for m in shsa.modules())


@pytest.mark.slow
def test_wheel_ships_the_demo_weights_and_their_record(wheel):
    import zipfile

    wheel = zipfile.ZipFile(wheel)
    assert wheel.read("yolo_attn/weights/yolov8n-shapes.pt") == WEIGHTS.read_bytes()
    assert json.loads(wheel.read("yolo_attn/weights/yolov8n-shapes.json"))["file"] == WEIGHTS.name
