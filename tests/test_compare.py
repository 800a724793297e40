"""``yolo-attn compare``: the statistics against scipy, the verdict words, resuming, the command's errors, where it
trains and measures (the device string, the speed device, the model class from the config's head), and its pictures
(one line per model per epoch; the ground truth under the predictions, labels inside the image)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import subprocess
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

import yolo_attn.compare as compare_module
from conftest import REDUCED_DEMO, bin_path
from ultralytics import RTDETR, YOLO
from yolo_attn.compare import (DeviceError, RunResult, Settings, _front, _stored, _timed, aggregate, compare,
                               curves_figure, epoch_means, ground_truth, latex, main, markdown, paired_interval,
                               predictions_figure, resolve_device, results_figure, speed, t_quantile)
from yolo_attn.adapter import build_model


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
    # two seeds: one degree of freedom; an interval that excludes 0 is said to decide little
    two = aggregate([r for r in runs if r.seed < 2], ["base", "up", "down"])
    assert two[1]["d_map50_verdict"] == "better, beyond noise (2 seeds: decides little)"
    assert two[2]["d_map50_verdict"] == "worse, beyond noise (2 seeds: decides little)"
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
    proc = subprocess.run([bin_path("yolo-attn"), "compare", "yolov8n.yaml", "--data", "d.yaml", "--device", "0,x"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "--device '0,x': 'x' is not a device; use 'cpu'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()
    proc = subprocess.run([bin_path("yolo-attn"), "demo", "--device", "0,x", "--out", "demo"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # the demo checks it before generating its data
    assert proc.returncode == 2 and "--device '0,x': 'x' is not a device" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------------------------------------------------
# where compare trains and measures. Ultralytics' Model.train / Model.val and compare's speed() are replaced by
# recorders, so nothing trains; a two-GPU machine is what torch counts and what Ultralytics' select_device answers.
# --------------------------------------------------------------------------------------------------------------------
TINY_YOLO = {"nc": 2, "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]],
             "head": [[[1, 2], 1, "Detect", ["nc"]]]}
TINY_RTDETR = {"nc": 2,
               "backbone": [[-1, 1, "HGStem", [16, 32]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                            [-1, 1, "Conv", [128, 3, 2]]],
               "head": [[-1, 1, "Conv", [64, 1, 1, None, 1, 1, False]], [-1, 1, "AIFI", [256, 8]],
                        [[5, 2, 1], 1, "RTDETRDecoder", ["nc", 32, 30, 4, 4, 1]]]}
METRICS = {"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.25}


def _save(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """Calls of Ultralytics' training and validation and of compare's speed measurement, none of which runs."""
    from ultralytics.engine.model import Model
    from ultralytics.utils import torch_utils

    calls = {"train": [], "val": [], "speed": [], "result": SimpleNamespace(results_dict=METRICS)}

    def train(self, **kwargs):
        calls["train"].append({"front": type(self).__name__, "model": type(self.model).__name__, **kwargs})
        save_dir = Path(kwargs["project"]) / kwargs["name"]
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "results.csv").write_text("                   epoch,                time\n1,12.5\n")
        self.trainer = SimpleNamespace(best=save_dir / "weights" / "best.pt", last=save_dir / "weights" / "last.pt",
                                       save_dir=save_dir, device=torch_utils.select_device(kwargs["device"] or "",
                                                                                           verbose=False))
        return calls["result"]

    def val(self, **kwargs):
        calls["val"].append(kwargs)
        return SimpleNamespace(results_dict=METRICS)

    def measured(model, imgsz, device):
        calls["speed"].append(torch.device(device))
        return 3.0, 300.0

    monkeypatch.setattr(Model, "train", train)
    monkeypatch.setattr(Model, "val", val)
    monkeypatch.setattr(compare_module, "speed", measured)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    return calls


def _two_gpus(monkeypatch) -> list:
    """This process sees two CUDA GPUs: torch's count, and Ultralytics' select_device (its first GPU of a list)."""
    from ultralytics.utils import torch_utils

    asked = []

    def select_device(device="", newline=False, verbose=True):
        asked.append(device)
        return torch.device("cuda", int(str(device).replace("cuda:", "").split(",")[0] or 0))

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch_utils, "select_device", select_device)
    return asked


@pytest.mark.parametrize("device, first", [("0,1", 0), ("1,0", 1), ("cuda:1", 1)])
def test_compare_trains_on_the_device_string_as_given_and_measures_on_its_first_gpu(device, first, recorded,
                                                                                     monkeypatch, tmp_path,
                                                                                     shapes_data):
    _two_gpus(monkeypatch)
    recorded["result"] = None  # what Ultralytics < 8.4 returns after DDP training: validation ran in the workers
    out = tmp_path / "out"
    cfg = _save(tmp_path / "tiny.yaml", TINY_YOLO)
    compare([cfg], str(shapes_data), epochs=1, imgsz=64, seeds=1, device=device, out=out, grid=0)
    (train,) = recorded["train"]
    assert train["device"] == device  # Ultralytics runs its DDP over the whole list
    assert recorded["speed"] == [torch.device("cuda", first)]  # latency and throughput: on the first device
    assert [v["device"] for v in recorded["val"]] == [str(first)]  # the missing evaluation: here, on the first GPU
    (run,) = _csv(out / "runs.csv")
    assert (run["speed_device"], run["latency_ms"], run["throughput"]) == (f"cuda:{first}", "3.0", "300.0")
    assert float(run["map50_95"]) == 0.25 and float(run["train_s"]) == 12.5  # Ultralytics' clock of the DDP run
    assert _csv(out / "results.csv")[0]["speed_device"] == f"cuda:{first}"
    md, tex = (out / "results.md").read_text(), (out / "results.tex").read_text()
    assert f"| latency ms/img (cuda:{first}, batch 1) | throughput img/s (cuda:{first}, batch 16) |" in md
    assert f"latency ms/img (cuda:{first}, batch 1) & throughput img/s (cuda:{first}, batch 16)" in tex
    multi = "," in device
    assert (f", the first of the training devices {device}" in md) == multi
    assert ("(Ultralytics' multi-GPU DDP)" in md) == multi
    stored = json.loads((out / "runs" / "tiny-seed0.json").read_text())
    assert stored["settings"]["device"] == device.replace("cuda:", "")


@pytest.mark.parametrize("device", [None, "cpu", "CPU"])
def test_compare_passes_cpu_and_default_devices_unchanged_and_measures_on_the_cpu(device, recorded, tmp_path,
                                                                                  shapes_data):
    if device is None and torch.cuda.is_available():
        pytest.skip("Ultralytics' default is a GPU here")
    out = tmp_path / "out"
    compare([_save(tmp_path / "tiny.yaml", TINY_YOLO)], str(shapes_data), epochs=1, imgsz=64, seeds=1, device=device,
            out=out, grid=0)
    assert [c["device"] for c in recorded["train"]] == [device]  # None stays None: Ultralytics' own default
    assert recorded["speed"] == [torch.device("cpu")] and recorded["val"] == []  # metrics came back from training
    assert _csv(out / "runs.csv")[0]["speed_device"] == "cpu"
    md = (out / "results.md").read_text()
    assert "latency ms/img (cpu, batch 1)" in md and "device `cpu`" in md and "measured on `cpu`." in md


@pytest.mark.parametrize("bad, says", [
    ("0,x", "'x' is not a device"),
    ("gpu", "'gpu' is not a device"),
    ("0,0", "lists GPU 0 twice"),
    (str(torch.cuda.device_count()), f"GPU {torch.cuda.device_count()} does not exist on this machine"),
    (f"0,{torch.cuda.device_count() + 1}",  # the first index missing is named
     f"GPU {1 + torch.cuda.device_count() if torch.cuda.device_count() else 0} does not exist on this machine"),
    pytest.param("mps", "this machine has no MPS", marks=pytest.mark.skipif(torch.backends.mps.is_available(),
                                                                             reason="this machine has MPS")),
])
def test_a_bad_device_is_refused_before_anything_is_trained(bad, says, recorded, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["yolov8n.yaml", "--data", "d.yaml", "--device", bad, "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"--device {bad!r}" in err and says in err
    assert "use 'cpu', a GPU index such as '0'" in err and "'0,1' for Ultralytics' multi-GPU (DDP) training" in err
    assert recorded["train"] == [] and not out.exists()  # nothing trained, nothing written
    with pytest.raises(DeviceError, match=re.escape(says)):  # the function too, for callers other than the command
        compare(["yolov8n.yaml"], "d.yaml", epochs=1, imgsz=64, seeds=1, device=bad, out=out)
    assert not out.exists()


def test_resolve_device_on_two_gpus_keeps_the_list_and_picks_the_first(monkeypatch):
    asked = _two_gpus(monkeypatch)
    assert resolve_device("0,1") == ("0,1", torch.device("cuda", 0))
    assert resolve_device(" cuda:1 ") == ("1", torch.device("cuda", 1))
    assert resolve_device("1, 0") == ("1,0", torch.device("cuda", 1))
    assert asked == ["0,1", "cuda:1", "1, 0"]  # Ultralytics is asked with the user's words
    with pytest.raises(DeviceError, match="GPU 2 does not exist on this machine, which has 2 CUDA GPUs"):
        resolve_device("0,2")


def test_speed_times_latency_and_throughput_on_the_given_device(monkeypatch):
    """Both figures on the device asked for ("meta" stands in for a GPU: nothing runs on it), none on the CPU."""
    seen = []

    def timed(m, x, runs):
        seen.append((x.shape[0], x.device.type, next(m.parameters()).device.type))
        return 0.01

    monkeypatch.setattr(compare_module, "_timed", timed)
    model = build_model(TINY_YOLO)
    latency, throughput = speed(model, 64, torch.device("meta"))
    assert seen == [(1, "meta", "meta"), (16, "meta", "meta")]
    assert latency == pytest.approx(10.0) and throughput == pytest.approx(1600.0)
    assert next(model.parameters()).device.type == "cpu"  # the model given is left where it was


def test_speed_on_the_cpu_is_a_real_measurement():
    latency, throughput = speed(build_model(TINY_YOLO), 32, "cpu")
    assert 0 < latency < 1e3 and 0 < throughput < 1e7


def test_cuda_timing_synchronises_that_device_before_each_clock_reading(monkeypatch):
    events = []
    gpu = torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("sync", device)))
    monkeypatch.setattr(compare_module.time, "perf_counter", lambda: events.append("clock") or float(len(events)))
    _timed(lambda x: events.append("forward"), SimpleNamespace(device=gpu, is_cuda=True), runs=2)
    timed = [("sync", gpu), "clock", "forward", ("sync", gpu)]
    assert events == timed * 3 + (timed + ["clock"]) * 2  # 3 warm-up forwards, then 2 timed ones


def test_the_model_class_comes_from_the_head_not_the_file_name(recorded, tmp_path, shapes_data):
    detr = _save(tmp_path / "detector.yaml", TINY_RTDETR)  # RT-DETR, no "rtdetr" in the name
    yolo = _save(tmp_path / "tiny-rtdetr.yaml", TINY_YOLO)  # YOLO, "rtdetr" in the name
    assert (_front(detr), _front(yolo)) == (RTDETR, YOLO)
    assert (_front(TINY_RTDETR), _front(TINY_YOLO)) == (RTDETR, YOLO)  # a config dict
    torch.save({"model": build_model(TINY_RTDETR)}, tmp_path / "weights.pt")  # a checkpoint: its model's class
    assert _front(tmp_path / "weights.pt") is RTDETR
    compare([detr, yolo], str(shapes_data), epochs=1, imgsz=64, seeds=1, device="cpu", out=tmp_path / "out", grid=0)
    assert [(c["front"], c["model"]) for c in recorded["train"]] == [("RTDETR", "RTDETRDetectionModel"),
                                                                      ("YOLO", "DetectionModel")]


def test_a_run_stored_before_the_speed_device_was_recorded_is_reused_on_the_cpu(recorded, tmp_path, shapes_data):
    out = tmp_path / "out"
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"x")
    s = Settings(data=str(Path(shapes_data).resolve()), epochs=1, imgsz=64, batch=16, device="cpu", init=None)
    old = asdict(RunResult(model="tiny", seed=0, params=1, gflops=1.0, map50=0.5, map50_95=0.3, latency_ms=7.0,
                           throughput=70.0, train_s=1.0, weights=str(weights)))
    del old["speed_device"]  # as compare wrote it before: CPU latency, throughput on the training device (here CPU)
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "tiny-seed0.json").write_text(json.dumps({"settings": asdict(s), "result": old}))
    compare([_save(tmp_path / "tiny.yaml", TINY_YOLO)], str(shapes_data), epochs=1, imgsz=64, seeds=1, device="cpu",
            out=out, grid=0)
    assert recorded["train"] == [] and recorded["speed"] == []  # neither trained nor measured again
    (run,) = _csv(out / "runs.csv")
    assert (run["latency_ms"], run["throughput"], run["speed_device"]) == ("7.0", "70.0", "cpu")


@pytest.mark.slow  # real training through Model.train
def test_compare_trains_an_rtdetr_config_of_any_name_for_real(tmp_path, shapes_data, monkeypatch):
    """Real training (1 epoch, 64 px, CPU, a few seconds): RT-DETR's trainer for the RT-DETR head in a file without
    "rtdetr" in its name, YOLO's for a YOLO head in one with it; speed measured on the CPU; predictions drawn."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    out = tmp_path / "out"
    cfgs = [_save(tmp_path / "tiny-rtdetr.yaml", TINY_YOLO), _save(tmp_path / "detector.yaml", TINY_RTDETR)]
    compare(cfgs, str(shapes_data), epochs=1, imgsz=64, seeds=1, device="cpu", out=out, batch=8, grid=2, workers=0)
    runs = {r["model"]: r for r in _csv(out / "runs.csv")}
    for name, model, loss in (("tiny-rtdetr", "DetectionModel", "dfl_loss"), ("detector", "RTDETRDetectionModel",
                                                                              "giou_loss")):
        ckpt = torch.load(runs[name]["weights"], map_location="cpu", weights_only=False)
        assert type(ckpt["model"]).__name__ == model, name
        log = _csv(out / "runs" / f"{name}-seed0" / "results.csv")
        assert any(k.strip() == f"train/{loss}" for k in log[0]), (name, list(log[0]))  # the trainer of that model
        assert runs[name]["speed_device"] == "cpu" and float(runs[name]["latency_ms"]) > 0
    assert (out / "predictions.png").stat().st_size > 5000


# --------------------------------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------------------------------
def _loss_run(model: str, seed: int, epochs: list[list[float]]) -> RunResult:
    return dataclasses.replace(_run(model, seed, 0.5, 0.3), loss=[v for e in epochs for v in e])


def test_epoch_means_split_the_batches_into_epochs():
    assert epoch_means([1, 3, 2, 4, 10, 20], 3).tolist() == [2, 3, 15]
    assert epoch_means([1, 2, 3, 4, 5], 2).tolist() == [2, 4.5]  # 3 + 2 batches
    assert epoch_means([4.0], 3).tolist() == [4.0]


def test_curves_draw_one_distinguishable_line_per_model_with_one_point_per_epoch():
    names = ["base", "a", "b"]
    runs = [_loss_run(n, s, [[3 + k * 0.01 + s, 3.2 + s], [2.5 + s, 2.7 + k * 0.01 + s], [2 + s, 2.2 - k * 0.01 + s]])
            for k, n in enumerate(names) for s in range(2)]
    runs.append(dataclasses.replace(_run("ddp", 0, 0.5, 0.3), loss=[]))  # a DDP run: no per-batch loss here
    fig = curves_figure(runs, names + ["ddp"], "t", epochs=3)
    loss_ax, delta_ax = fig.axes[:2]
    assert [ln.get_label() for ln in loss_ax.lines] == names  # one line per model; none for the run without a loss
    for k, ln in enumerate(loss_ax.lines):
        assert np.round(ln.get_xdata()).tolist() == [1, 2, 3]  # one point per epoch, shifted sideways a little
        assert ln.get_ydata() == pytest.approx([3.1 + 0.005 * k + 0.5, 2.6 + 0.005 * k + 0.5, 2.1 - 0.005 * k + 0.5])
    assert len({(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in loss_ax.lines}) == 3
    assert {ln.get_linestyle() for ln in loss_ax.lines} == {"-", "--", "-."}
    assert all(c.get_alpha() <= 0.1 for c in loss_ax.collections)  # light bands: min-max over the two seeds
    (legend,) = fig.legends  # outside the panels
    assert [t.get_text() for t in legend.get_texts()] == names
    assert len(delta_ax.lines) == 3  # the two models against the baseline, and the zero line
    assert delta_ax.lines[1].get_ydata() == pytest.approx([0.01, 0.01, -0.01])  # b − base, paired by seed
    plt = __import__("matplotlib.pyplot").pyplot
    plt.close(fig)
    empty = curves_figure([dataclasses.replace(_run("x", 0, 0.5, 0.3), loss=[])], ["x"], "t", epochs=2)
    assert not empty.legends and "no per-batch loss" in empty.axes[0].texts[0].get_text()
    plt.close(empty)


def test_model_styles_keep_grey_for_the_baseline_and_markers_apart():
    from yolo_attn.compare import _style

    styles = [_style(k) for k in range(12)]
    assert styles[0]["color"] == "dimgray" and all(s["color"] not in ("dimgray", "C7") for s in styles[1:])
    assert len({s["marker"] for s in styles}) == 12  # nine layers and a baseline (the demo): no marker repeats


def test_results_picture_names_models_in_a_legend_in_the_colours_of_the_curves():
    runs = [_run(n, s, 0.5 + 0.01 * k, 0.3 + 0.001 * k) for k, n in enumerate(["base", "a", "b"]) for s in range(2)]
    rows = aggregate(runs, ["base", "a", "b"])
    fig = results_figure(rows, "t")
    curves = curves_figure([dataclasses.replace(r, loss=[3.0, 2.0]) for r in runs], ["base", "a", "b"], "t", 1)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["base", "a", "b"]  # not labels beside close points
    assert not fig.axes[0].texts
    points = [c for c in fig.axes[0].containers]  # one error bar per model, at its latency and mAP50-95
    assert np.array([c.lines[0].get_xydata()[0] for c in points]) == pytest.approx(
        np.array([(r["latency_ms"], r["map50_95"]) for r in rows]))
    assert [(c.lines[0].get_color(), c.lines[0].get_marker()) for c in points] == [
        (ln.get_color(), ln.get_marker()) for ln in curves.axes[0].lines]  # the same model looks the same in both
    plt = __import__("matplotlib.pyplot").pyplot
    plt.close(fig)
    plt.close(curves)


def test_ground_truth_reads_the_label_file_next_to_the_image(tmp_path):
    image = tmp_path / "set" / "images" / "val" / "a.jpg"
    label = tmp_path / "set" / "labels" / "val" / "a.txt"
    label.parent.mkdir(parents=True)
    label.write_text("2 0.5 0.5 0.2 0.4\n1 0.1 0.2 0.3 0.2 0.2 0.6\n")  # a box, then a polygon
    assert ground_truth(image) == [(2, pytest.approx(0.4), pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.7)),
                                   (1, 0.1, 0.2, 0.3, 0.6)]
    assert ground_truth(tmp_path / "set" / "images" / "val" / "none.jpg") == []
    assert ground_truth(tmp_path / "elsewhere.jpg") == []


def test_predictions_draw_the_ground_truth_dashed_and_keep_every_label_inside_the_image(tmp_path):
    image = tmp_path / "images" / "a.jpg"
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.2 0.1 0.2 0.2\n")
    boxes = SimpleNamespace(xyxy=torch.tensor([[32.0, 32.0, 96.0, 96.0], [90.0, 0.0, 128.0, 20.0]]),
                            cls=torch.tensor([0.0, 1.0]), conf=torch.tensor([0.9, 0.4]))
    result = SimpleNamespace(orig_img=np.zeros((128, 128, 3), np.uint8), boxes=boxes,
                             names={0: "rectangle", 1: "ellipse with a long name"})
    fig = predictions_figure({"m1": [result], "m2": [result]}, [image], 0.25, 0)
    fig.canvas.draw()
    for ax in fig.axes:
        dashed = [p for p in ax.patches if p.get_label() == "ground truth"]
        solid = [p for p in ax.patches if p.get_label() == "prediction"]
        assert len(dashed) == 2 and len(solid) == 2
        assert all(p.get_linestyle() not in ("-", "solid") for p in dashed)
        assert all(p.get_linestyle() in ("-", "solid") for p in solid)
        assert dashed[0].get_xy() == pytest.approx((32, 32)) and dashed[0].get_width() == pytest.approx(64)
        frame = ax.get_window_extent()
        labels = [t for t in ax.texts if t.get_text() in ("rectangle 0.90", "ellipse with a long name 0.40")]
        assert len(labels) == 2
        for t in labels:  # the box at the top edge gets its label inside, the right one right-aligned
            e = t.get_window_extent()
            assert frame.x0 - 1 <= e.x0 and e.x1 <= frame.x1 + 1 and frame.y0 - 1 <= e.y0 and e.y1 <= frame.y1 + 1, t
    assert "ground truth" in " ".join(t.get_text() for t in fig.legends[0].get_texts())
    __import__("matplotlib.pyplot").pyplot.close(fig)
