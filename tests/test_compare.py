"""``yolo-attn compare``: the statistics against scipy, the verdict words, resuming, and the command's errors."""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import asdict

import pytest
from scipy import stats

from conftest import REDUCED_DEMO, bin_path
from yolo_attn.compare import RunResult, Settings, _stored, aggregate, latex, markdown, paired_interval, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 40])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_scipy(p, df):
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-6)
    assert t_quantile(1 - p, df) == pytest.approx(stats.t.ppf(1 - p, df), rel=1e-6)


def test_t_quantile_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 < p < 1 and df >= 1"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.5, 0)


def test_paired_interval_is_scipys_t_interval():
    diffs = [0.031, 0.012, 0.044, -0.003, 0.020]
    mean, lo, hi = paired_interval(diffs)
    ref = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 5, scale=stats.sem(diffs))
    assert mean == pytest.approx(sum(diffs) / 5) and (lo, hi) == pytest.approx(ref)
    one = paired_interval([0.2])
    assert one[0] == 0.2 and math.isnan(one[1]) and math.isnan(one[2])


def _run(model: str, seed: int, map50: float, map50_95: float) -> RunResult:
    return RunResult(model=model, seed=seed, params=100 + len(model), gflops=1.5, map50=map50, map50_95=map50_95,
                     latency_ms=5.0 + seed, throughput=200.0, train_s=10.0, weights="w.pt")


def test_aggregate_pairs_by_seed_and_says_whether_a_difference_exceeds_the_noise():
    runs = [_run("base", s, 0.50 + 0.1 * s, 0.30 + 0.1 * s) for s in range(3)]  # big seed-to-seed spread
    runs += [_run("up", s, 0.52 + 0.1 * s + 0.001 * s, 0.30 + 0.1 * s + (0.01, -0.01, 0.005)[s]) for s in range(3)]
    runs += [_run("down", s, 0.40 + 0.1 * s + 0.002 * s, 0.10 + 0.1 * s + 0.003 * s) for s in range(3)]
    base, up, down = aggregate(runs, ["base", "up", "down"])
    assert base["d_map50_verdict"] == base["d_map50_95_verdict"] == "baseline"
    # +0.02 on every seed although the seeds differ by 0.1: paired, it exceeds the noise
    assert up["d_map50"] == pytest.approx(0.021) and up["d_map50_verdict"] == "better, beyond noise"
    assert up["d_map50_95_verdict"] == "within noise" and up["d_map50_95_lo"] < 0 < up["d_map50_95_hi"]
    assert down["d_map50_verdict"] == down["d_map50_95_verdict"] == "worse, beyond noise"
    assert up["map50_sd"] == pytest.approx(stats.tstd([r.map50 for r in runs if r.model == "up"]))
    md = markdown([base, up, down], "# t")
    tex = latex([base, up, down], "caption")
    up_line = next(ln for ln in md.splitlines() if ln.startswith("| up |"))
    assert "better, beyond noise / within noise" in up_line and f"+{up['d_map50']:.4f} [" in up_line
    assert "up & 102 & 1.500 &" in tex and "better, beyond noise / within noise" in tex and "$\\pm$" in tex
    single = aggregate([_run("base", 0, 0.5, 0.3), _run("up", 0, 0.6, 0.3)], ["base", "up"])
    assert single[1]["d_map50_verdict"] == "one seed: noise unknown"


def test_a_stored_run_is_reused_only_with_the_same_settings(tmp_path):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"x")
    s = Settings(data="d.yaml", epochs=3, imgsz=64, batch=8, device="cpu", init=None)
    r = RunResult(model="m", seed=0, params=1, gflops=1.0, map50=0.5, map50_95=0.3, latency_ms=1.0, throughput=1.0,
                  train_s=1.0, weights=str(weights), loss=[1.0, 0.5])
    path = tmp_path / "m-seed0.json"
    path.write_text(json.dumps({"settings": asdict(s), "result": asdict(r)}))
    assert _stored(path, s) == r
    assert _stored(path, Settings(**{**asdict(s), "epochs": 4})) is None
    weights.unlink()
    assert _stored(path, s) is None  # its weights are gone: train again


@pytest.mark.slow
def test_compare_run_again_reuses_every_finished_run(reduced_demo):
    """The demo is compare with defaults: the same comparison again trains nothing and rewrites the same table."""
    out, _ = reduced_demo
    stored = {p: p.read_text() for p in (out / "runs").glob("*.json")}
    table = (out / "results.csv").read_text()
    proc = subprocess.run([bin_path("yolo-attn"), "demo", *REDUCED_DEMO, "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(re.findall(r"seed \d  reused \S+-seed\d\.json", proc.stdout)) == 4 and "epoch " not in proc.stdout
    assert {p: p.read_text() for p in (out / "runs").glob("*.json")} == stored
    assert (out / "results.csv").read_text() == table
    assert "(4 of 4 runs reused)" in (out / "results.md").read_text()


def test_compare_command_errors_name_the_problem(tmp_path):
    proc = subprocess.run([bin_path("yolo-attn"), "compare", "yolov8n.yaml", "--data", "d.yaml", "--epochs", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "--epochs must be >= 1" in proc.stderr
    proc = subprocess.run([bin_path("yolo-attn"), "compare", "a/yolov8n.yaml", "b/yolov8n.yaml", "--data", "d.yaml"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "two configs share a name" in proc.stderr
