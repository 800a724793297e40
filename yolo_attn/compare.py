"""``yolo-attn compare``: train several model configs by one recipe over several seeds and compare them, with spread.

    yolo-attn compare yolov8n.yaml yolov8n-lska.yaml yolov8n-shsa.yaml --data your.yaml --epochs 100 --imgsz 640 \\
        --seeds 3 --device 0
    yolo-attn compare ... --device 0,1          # Ultralytics' multi-GPU (DDP) training on GPUs 0 and 1
    yolo-attn compare ... --init start.pt       # every model initialised from one checkpoint (structural transfer)

Configs are given by path or by name (shipped names such as ``yolov8n-cga.yaml`` resolve without a path); the first
one is the baseline. Every (config, seed) run trains with the same data, epochs, image size, batch, device and
recipe; seed ``k`` of every config uses the same seed, so the differences to the baseline are paired over seeds.
Each run leaves its Ultralytics run directory ``OUT/runs/<label>-seed<k>/`` and, next to it, ``<label>-seed<k>.json``
with its figures; run again with the same settings, ``compare`` reuses every finished run (a killed comparison
resumes), and retrains a run whose settings changed.

``--device`` goes to Ultralytics' training as given (``cpu``, ``0``, ``0,1`` for multi-GPU DDP, ``mps``; none:
Ultralytics' choice) after a check that it names devices this machine has. What ``compare`` runs itself (speed, an
evaluation Ultralytics did not return, the prediction pictures) runs on the training device, the first one of a list.

Per run: params and GFLOPs of the trained model (``yolo_attn.check.count_flops``: attention matmuls counted), latency
(ms per image, batch 1, fused, median of 20) and throughput (images/s, batch 16), both on the training device (the
first GPU of a list; the table names it), final validation mAP50 and mAP50-95, training time (the epochs' training
loops) and the per-batch training loss.
Written to ``OUT``: ``results.md``, ``results.csv``, ``results.tex`` (the table: mean ± sd over seeds, Δ mAP against
the baseline with a 95 % t-interval over the paired seed differences, and whether it exceeds run-to-run noise),
``runs.csv`` (one row per run), ``results.png`` (mAP50-95 against latency with error bars), ``curves.png`` (training
loss of every model) and ``predictions.png`` (every model's predictions on the same validation images).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import register
from .adapter import build_model, front_end, quiet, save_checkpoint
from .adapter.training import (batch_loss, dataset_info, epoch_losses, epoch_progress, image_suffixes,
                               logged_train_seconds, metrics, select_device, trained_weights)
from .check import count_flops
from .transfer import transfer

__all__ = ["main", "compare", "RunResult", "Settings", "aggregate", "t_quantile", "markdown", "latex", "label",
           "resolve_device", "DeviceError", "speed"]

LATENCY_RUNS = 20
THROUGHPUT_BATCH = 16
FINE_TUNE = {"optimizer": "AdamW", "lr0": 0.001, "warmup_epochs": 0}
"""Recipe overrides when every model starts from ``--init`` weights: the learning rate Ultralytics' ``optimizer=auto``
picks for short runs, without the warm-up (its high bias learning rate would first undo the pretrained head)."""


@dataclass
class Settings:
    """What a run depends on; a stored run is reused only when these agree."""

    data: str
    epochs: int
    imgsz: int
    batch: int
    device: str  # the requested device(s), normalised (resolve_device): "cpu", "0", "0,1", ...
    init: str | None
    recipe: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """One trained model (one seed)."""

    model: str
    seed: int
    params: int
    gflops: float
    map50: float
    map50_95: float
    latency_ms: float
    throughput: float
    train_s: float
    weights: str
    cfg: str = ""
    transferred: str = ""
    loss: list = field(default_factory=list)
    speed_device: str = ""  # where latency and throughput were measured ("cpu", "cuda:0"); "" in runs stored before


# --------------------------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------------------------
def _t_cdf(t: float, df: int, steps: int = 2000) -> float:
    """Student-t CDF: 1/2 plus Simpson's rule over the density from 0 to ``t``."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    h = t / steps
    total = 0.0
    for k in range(steps + 1):
        w = 1 if k in (0, steps) else (4 if k % 2 else 2)
        total += w * (1 + (k * h) ** 2 / df) ** (-(df + 1) / 2)
    return 0.5 + c * total * h / 3


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = -1e3, 1e3
    for _ in range(60):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def paired_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided t-interval ``(mean, low, high)``; NaN bounds for < 2 pairs."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


WEAK_SEEDS = 2
"""With this many seeds the t-interval has one degree of freedom: its width rests on the spread of two differences,
which can be small by chance (the same demo gave FLA's Δ mAP50 [+0.0006, +0.0039] on one CPU and [−0.0006, +0.0050]
on another), so an interval that excludes 0 is said to decide little."""


def verdict(low: float, high: float, seeds: int = 3) -> str:
    """Words for a difference's 95 % interval over ``seeds`` paired seeds."""
    if math.isnan(low):
        return "one seed: noise unknown"
    weak = " (2 seeds: decides little)" if seeds <= WEAK_SEEDS else ""
    if low > 0:
        return "better, beyond noise" + weak
    if high < 0:
        return "worse, beyond noise" + weak
    return "within noise"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _joined(values) -> str:
    """The distinct non-empty values in first-seen order, joined by " / "."""
    return " / ".join(dict.fromkeys(v for v in values if v))


def aggregate(runs: list[RunResult], names: list[str]) -> list[dict]:
    """One row per model: means and sds over seeds; Δ mAP against ``names[0]`` paired by seed, with 95 % intervals."""
    rows = []
    base = {r.seed: r for r in runs if r.model == names[0]}
    for name in names:
        rs = sorted((r for r in runs if r.model == name), key=lambda r: r.seed)
        row = {"model": name, "params": rs[0].params, "gflops": round(rs[0].gflops, 3), "seeds": len(rs)}
        for key in ("map50", "map50_95", "latency_ms", "throughput", "train_s"):
            row[key], row[f"{key}_sd"] = _mean_sd([getattr(r, key) for r in rs])
        row["speed_device"] = _joined(r.speed_device for r in rs)
        for key in ("map50", "map50_95"):
            diffs = [getattr(r, key) - getattr(base[r.seed], key) for r in rs if r.seed in base]
            d, lo, hi = paired_interval(diffs) if diffs else (math.nan, math.nan, math.nan)
            row[f"d_{key}"], row[f"d_{key}_lo"], row[f"d_{key}_hi"] = d, lo, hi
            row[f"d_{key}_verdict"] = "baseline" if name == names[0] else verdict(lo, hi, len(diffs))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------------------------
def speed_device(rows: list[dict]) -> str:
    """The device(s) the rows' latency and throughput were measured on ("" when the rows do not say)."""
    return _joined(r.get("speed_device", "") for r in rows)


def columns(rows: list[dict]) -> tuple[str, ...]:
    """Column headers of the table; the speed columns name the device they were measured on."""
    where = speed_device(rows)
    where = f"{where}, " if where else ""
    return ("model", "params", "GFLOPs", f"latency ms/img ({where}batch 1)",
            f"throughput img/s ({where}batch {THROUGHPUT_BATCH})", "mAP50", "mAP50-95", "train s", "Δ mAP50 [95% CI]",
            "Δ mAP50-95 [95% CI]", "vs noise (mAP50 / mAP50-95)")


def _pm(row: dict, key: str, digits: int, pm: str = " ± ") -> str:
    text = f"{row[key]:.{digits}f}"
    return text + (f"{pm}{row[key + '_sd']:.{digits}f}" if row["seeds"] > 1 else "")


def _delta(row: dict, key: str) -> str:
    if row[f"d_{key}_verdict"] == "baseline":
        return "—"
    text = f"{row[f'd_{key}']:+.4f}"
    lo, hi = row[f"d_{key}_lo"], row[f"d_{key}_hi"]
    return text if math.isnan(lo) else f"{text} [{lo:+.4f}, {hi:+.4f}]"


def _cells(row: dict, pm: str = " ± ") -> list[str]:
    words = ("baseline" if row["d_map50_verdict"] == "baseline"
             else f"{row['d_map50_verdict']} / {row['d_map50_95_verdict']}")
    return [row["model"], f"{row['params']:,}", f"{row['gflops']:.3f}", _pm(row, "latency_ms", 1, pm),
            _pm(row, "throughput", 0, pm), _pm(row, "map50", 4, pm), _pm(row, "map50_95", 4, pm),
            _pm(row, "train_s", 0, pm), _delta(row, "map50"), _delta(row, "map50_95"), words]


def markdown(rows: list[dict], header: str) -> str:
    """The comparison as a Markdown table after ``header``."""
    lines = [header, "", "| " + " | ".join(columns(rows)) + " |", "|---|" + "---:|" * 7 + "---:|---:|---|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"),
                 ("±", "$\\pm$"), ("Δ", "$\\Delta$"), ("—", "--"), ("−", "$-$"), ("`", "")):
        text = text.replace(a, b)
    return text


def latex(rows: list[dict], caption: str) -> str:
    """The comparison as a LaTeX ``table`` (booktabs)."""
    cols = [_tex(c) for c in columns(rows)]
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{_tex(caption)}}}",
             "\\begin{tabular}{l" + "r" * 9 + "l}", "\\toprule", " & ".join(cols) + " \\\\", "\\midrule"]
    lines += [" & ".join(_tex(c) for c in _cells(r)) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict], digits: int | None = 6) -> None:
    """Rows (dicts with the same keys) as CSV; floats rounded to ``digits`` (None: as they are)."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (round(v, digits) if digits is not None and isinstance(v, float) else v)
                     for k, v in r.items()} for r in rows)


# --------------------------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------------------------
def label(cfg: str) -> str:
    """Table / run-directory name of a config: its file stem."""
    return Path(cfg).stem


def _front(source):
    """Ultralytics' front end, ``RTDETR`` or ``YOLO``, for a config, checkpoint or model, chosen from the model's head
    whatever the file is called (:func:`yolo_attn.adapter.front_end`)."""
    with quiet():
        return front_end(source)


class DeviceError(ValueError):
    """A ``--device`` that names no device of this machine; raised before anything is trained or written."""


DEVICE_FORMS = ("'cpu', a GPU index such as '0' (or 'cuda:0'), GPU indices such as '0,1' for Ultralytics' multi-GPU "
                "(DDP) training, 'mps', or none for Ultralytics' default")


def resolve_device(device) -> tuple[str, torch.device]:
    """Check a ``--device`` request; return ``(request, device)``.

    ``request`` is the request normalised (``"cpu"``, ``"0"``, ``"0,1"``; none: what Ultralytics picks, ``"cpu"`` or
    ``"0"``), what a stored run is matched on; ``device`` is the ``torch.device`` Ultralytics' ``select_device`` gives
    for it, the first GPU of a list: where ``compare`` measures and evaluates in this process. Ultralytics' training
    gets the request as the user wrote it, not these. Raises :class:`DeviceError` naming the bad value and the
    accepted forms: a GPU index that is no number, one listed twice, one this machine does not have, ``mps`` where
    there is none.
    """
    text = "" if device is None else str(device).strip()
    low = text.lower().replace(" ", "")
    ids: list[str] = []
    if low not in ("", "none", "cpu", "mps", "mps:0") and not low.startswith(("npu", "xpu")):
        ids = ["0"] if low == "cuda" else low.replace("cuda:", "").split(",")
        bad = [x for x in ids if not (x.isdigit() or x == "-1")]  # -1: Ultralytics picks an idle GPU
        if bad:
            raise DeviceError(f"--device {text!r}: {bad[0]!r} is not a device; use {DEVICE_FORMS}")
        ids = [str(int(x)) for x in ids]
        twice = [x for x in ids if x != "-1" and ids.count(x) > 1]
        if twice:
            raise DeviceError(f"--device {text!r} lists GPU {twice[0]} twice; use {DEVICE_FORMS}")
        n = torch.cuda.device_count()
        missing = [x for x in ids if x != "-1" and int(x) >= n]
        if missing:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            have = "no CUDA GPU" if n == 0 else f"{n} CUDA GPU{'s' if n > 1 else ''} (0{f'-{n - 1}' if n > 1 else ''})"
            raise DeviceError(f"--device {text!r}: GPU {missing[0]} does not exist on this machine, which has {have}"
                              + (f" under CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "")
                              + f"; use {DEVICE_FORMS}")
    try:
        with quiet():
            dev = select_device(text)
    except Exception as e:  # ValueError in every checked version: the first line says why
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeviceError(f"--device {text!r} is not usable here ({reason}); use {DEVICE_FORMS}") from e
    if not isinstance(dev, torch.device):  # 'tpu', 'intel', 'vulkan': Ultralytics hands the string back
        raise DeviceError(f"--device {text!r} is no PyTorch device compare can train and measure on; use "
                          f"{DEVICE_FORMS}")
    if low in ("mps", "mps:0") and dev.type != "mps":  # Ultralytics would fall back to the CPU without a word
        raise DeviceError(f"--device {text!r}: this machine has no MPS (Apple GPU); use {DEVICE_FORMS}")
    if dev.type in ("cpu", "mps"):
        return dev.type, dev
    if ids:
        return ",".join(ids), dev
    return low or (str(dev.index) if dev.type == "cuda" else str(dev)), dev


def _ultralytics_device(device) -> str:
    """A ``torch.device`` as Ultralytics' ``device=`` argument: "cpu", "mps", "0", "npu:0"."""
    return str(device.index) if device.type == "cuda" and device.index is not None else str(device)


def _fused(model):
    m = copy.deepcopy(model).float().eval()
    if hasattr(m, "fuse"):  # as Ultralytics' predict and val run it
        with quiet():
            m = m.fuse(verbose=False)
    return m


def _sync(device):
    """What makes the clock wait for ``device``'s queued work (nothing on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def _timed(m, x, runs: int) -> float:
    sync = _sync(x.device)
    times = []
    with torch.inference_mode():
        for k in range(runs + 3):
            sync()
            t0 = time.perf_counter()
            m(x)
            sync()
            if k >= 3:  # warm-up
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(model, imgsz: int, device) -> tuple[float, float]:
    """``(latency ms/img at batch 1, throughput img/s at batch 16)`` of the fused eval model, both on ``device``
    (a ``torch.device`` or its name; on CUDA the clock is read after ``torch.cuda.synchronize``)."""
    device = torch.device(device)
    m = _fused(model).to(device)
    latency = _timed(m, torch.zeros(1, 3, imgsz, imgsz, device=device), LATENCY_RUNS) * 1e3
    throughput = THROUGHPUT_BATCH / _timed(m, torch.zeros(THROUGHPUT_BATCH, 3, imgsz, imgsz, device=device), 5)
    return latency, throughput


def _init_checkpoint(cfg: str, nc: int, init: str, seed: int, path: Path) -> str:
    """A checkpoint of ``cfg`` with ``nc`` classes initialised from ``init`` by the structural transfer (layers the
    checkpoint lacks keep their initialisation under ``seed``); returns "transferred/total" tensors."""
    torch.manual_seed(seed)
    with quiet():
        model = build_model(cfg, nc=nc)  # the model class the head needs (RT-DETR or not); the head's width: nc
    report = transfer(model, init)
    save_checkpoint(model, path)
    return f"{report.n_transferred}/{report.total}"


_AS_SETTINGS = object()


def train_one(cfg: str, seed: int, s: Settings, runs_dir: Path, workers: int = 2, device=_AS_SETTINGS,
              local=None) -> RunResult:
    """Train ``cfg`` with seed ``seed`` under settings ``s``; the run directory is ``runs_dir/<label>-seed<k>``.

    ``device`` goes to Ultralytics' training unchanged (default ``s.device``); ``local`` is the ``torch.device`` this
    process measures speed and evaluates on (default: the first device of ``device``, see :func:`resolve_device`).
    """
    if device is _AS_SETTINGS:
        device = s.device
    if local is None:
        local = resolve_device(device)[1]
    name = label(cfg)
    run_name = f"{name}-seed{seed}"
    front = _front(cfg)
    transferred = ""
    source = cfg
    if s.init:
        source = str(runs_dir / "init" / f"{run_name}.pt")
        transferred = _init_checkpoint(cfg, _dataset(s.data)["nc"], s.init, seed, Path(source))
    model = front(source)
    clock = {"train": 0.0, "epochs": 0}
    losses: list[float] = []

    def epoch_start(trainer):
        clock["t0"] = time.perf_counter()

    def batch_end(trainer):
        losses.append(round(batch_loss(trainer), 4))

    def epoch_end(trainer):
        dt = time.perf_counter() - clock["t0"]
        clock["train"] += dt
        clock["epochs"] += 1
        text = " ".join(f"{k} {v:.3f}" for k, v in epoch_losses(trainer).items())
        epoch, epochs = epoch_progress(trainer)
        print(f"  {name:14s} seed {seed}  epoch {epoch:>3d}/{epochs}  loss {text}  ({dt:.1f} s)", flush=True)

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_batch_end", batch_end)
    model.add_callback("on_train_epoch_end", epoch_end)
    with quiet():
        results = model.train(
            data=s.data, epochs=s.epochs, imgsz=s.imgsz, batch=s.batch, device=device, seed=seed,
            deterministic=True, workers=workers, plots=False, val=False,
            project=str(runs_dir), name=run_name, exist_ok=True, verbose=False, patience=0,
            **s.recipe,
        )
    trainer = model.trainer
    weights = trained_weights(trainer)
    final = (model.model if isinstance(model.model, torch.nn.Module) else front(str(weights)).model).float()
    params, gflops = sum(p.numel() for p in final.parameters()), count_flops(final, s.imgsz) / 1e9
    latency, throughput = speed(final, s.imgsz, local)
    d = metrics(results)
    if "metrics/mAP50-95(B)" not in d:  # validation ran in the DDP workers and nothing came back: evaluate here
        with quiet():
            d = metrics(model.val(data=s.data, imgsz=s.imgsz, batch=s.batch, device=_ultralytics_device(local),
                                   workers=workers, plots=False, verbose=False, project=str(runs_dir),
                                   name=f"{run_name}-val", exist_ok=True))
    r = RunResult(model=name, seed=seed, params=params, gflops=gflops, map50=float(d.get("metrics/mAP50(B)", math.nan)),
                  map50_95=float(d.get("metrics/mAP50-95(B)", math.nan)), latency_ms=latency, throughput=throughput,
                  train_s=clock["train"] if clock["epochs"] else logged_train_seconds(trainer), weights=str(weights),
                  cfg=cfg, transferred=transferred, loss=losses, speed_device=str(local))
    print(f"  {name:14s} seed {seed}  mAP50 {r.map50:.4f}  mAP50-95 {r.map50_95:.4f}  latency {latency:.1f} ms/img  "
          f"{throughput:.0f} img/s on {local}  train {r.train_s:.0f} s", flush=True)
    return r


def _measured_again(r: RunResult, s: Settings, local) -> RunResult:
    """A reused run whose speed was measured elsewhere (stored before the device was recorded: latency on the CPU,
    throughput on the training device) with its speed on ``local``; on a CPU that is what it already holds."""
    if not r.speed_device and local.type == "cpu":
        return dataclasses.replace(r, speed_device=str(local))
    with quiet():
        final = _front(r.weights)(r.weights).model.float()
    latency, throughput = speed(final, s.imgsz, local)
    print(f"  {r.model:14s} seed {r.seed}  speed measured again on {local}: latency {latency:.1f} ms/img  "
          f"{throughput:.0f} img/s", flush=True)
    return dataclasses.replace(r, latency_ms=latency, throughput=throughput, speed_device=str(local))


def _stored(path: Path, s: Settings) -> RunResult | None:
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored.get("settings") != asdict(s) or not Path(stored["result"]["weights"]).is_file():
            return None
        return RunResult(**stored["result"])
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib  # lazy: matplotlib is imported only when pictures are drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9")  # matplotlib's cycle without its grey (C7)


def _style(k: int) -> dict:
    """Colour, line style and marker of the ``k``-th model (0: the baseline, the only grey one): distinguishable in
    colour and, printed in grey or for a colour-blind reader, in line style and marker (12 models before a marker
    repeats)."""
    return {"color": "dimgray" if k == 0 else COLORS[(k - 1) % len(COLORS)], "ls": STYLES[k % len(STYLES)],
            "marker": MARKERS[k % len(MARKERS)]}


def results_figure(rows: list[dict], title: str):
    """The figure of :func:`plot_results`: mAP50-95 against latency (on the device the rows were measured on), error
    bars = sd over seeds; each model in the colour and marker it has in ``curves.png``, named in the legend (labels
    next to close points would overlap)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120, layout="constrained")
    for k, r in enumerate(rows):
        style = _style(k)
        ax.errorbar(r["latency_ms"], r["map50_95"], xerr=r["latency_ms_sd"], yerr=r["map50_95_sd"], ls="none",
                    marker=style["marker"], color=style["color"], ms=6, capsize=3, label=r["model"])
    ax.margins(x=0.3, y=0.3)
    where = speed_device(rows)
    ax.set_xlabel(f"latency{f' on {where}' if where else ''}, ms/img (batch 1)")
    ax.set_ylabel("mAP50-95 (mean ± sd over seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(len(rows), 5), fontsize=8, frameon=False)
    return fig


def plot_results(rows: list[dict], path: Path, title: str) -> None:
    """mAP50-95 against latency of every model (:func:`results_figure`)."""
    plt = _pyplot()
    fig = results_figure(rows, title)
    fig.savefig(path)
    plt.close(fig)


def epoch_means(loss: list[float], epochs: int) -> np.ndarray:
    """Per-batch losses of one run as one mean per epoch (the batches split into ``epochs`` consecutive, equal
    parts; fewer when there are fewer batches than epochs)."""
    parts = np.array_split(np.asarray(loss, dtype=float), max(1, min(epochs, len(loss))))
    return np.array([p.mean() for p in parts])


def curves_figure(runs: list[RunResult], names: list[str], title: str, epochs: int = 1):
    """The figure of :func:`plot_curves`: left, each model's training loss per epoch (mean over the epoch's batches,
    then over seeds; band: min-max over seeds); right, its difference to the baseline ``names[0]``, paired by seed.
    One line per model, one point per epoch, each model in its own colour, line style and marker, the points of the
    models shifted a little sideways so that equal values stay visible; the legend below the panels."""
    plt = _pyplot()
    fig, (ax, dax) = plt.subplots(1, 2, figsize=(10, 4.4), dpi=120, layout="constrained")
    per_model = {}
    for name in names:
        rs = {r.seed: epoch_means(r.loss, epochs) for r in runs if r.model == name and r.loss}
        if rs:
            n = min(len(c) for c in rs.values())
            per_model[name] = {seed: c[:n] for seed, c in rs.items()}
    base = per_model.get(names[0], {})
    shown = [k for k, name in enumerate(names) if name in per_model]
    for slot, k in enumerate(shown):
        name, style = names[k], _style(k)
        curves = per_model[name]
        a = np.array(list(curves.values()))
        x = np.arange(1, a.shape[1] + 1) + (slot - (len(shown) - 1) / 2) * min(0.03, 0.3 / max(len(shown), 1))
        ax.plot(x, a.mean(0), label=name, lw=1.6, ms=5, **style)
        if len(a) > 1:
            ax.fill_between(x, a.min(0), a.max(0), alpha=0.08, color=style["color"], lw=0)
        paired = [curves[s][:len(base[s])] - base[s][:len(curves[s])] for s in curves if s in base]
        if paired and name != names[0]:
            m = min(len(d) for d in paired)
            d = np.array([p[:m] for p in paired])
            dax.plot(x[:m], d.mean(0), lw=1.6, ms=5, **style)
            if len(d) > 1:
                dax.fill_between(x[:m], d.min(0), d.max(0), alpha=0.08, color=style["color"], lw=0)
    dax.axhline(0, **{**_style(0), "marker": None}, lw=1.2)
    for a_, ylabel in ((ax, "training loss (sum of the logged terms), mean per epoch"),
                       (dax, f"Δ loss against {names[0]} (same seed)")):
        a_.set_xlabel("epoch")
        a_.set_ylabel(ylabel, fontsize=8)
        a_.grid(alpha=0.3)
        a_.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_title("per epoch; band: min-max over seeds", fontsize=8)
    dax.set_title("difference to the baseline (below 0: lower loss)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    if ax.lines:  # runs trained by multi-GPU DDP have no per-batch loss here (it was logged in the workers)
        fig.legend(loc="outside lower center", ncol=min(len(ax.lines), 5), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no per-batch loss recorded\n(multi-GPU DDP runs log it in their workers)",
                transform=ax.transAxes, ha="center", va="center", fontsize=8)
    return fig


def plot_curves(runs: list[RunResult], names: list[str], path: Path, title: str, epochs: int = 1) -> None:
    """Training loss of every model per epoch, and its difference to the baseline (:func:`curves_figure`)."""
    plt = _pyplot()
    fig = curves_figure(runs, names, title, epochs)
    fig.savefig(path)
    plt.close(fig)


def _dataset(data: str) -> dict:
    with quiet():
        return dataset_info(data)


def val_images(data: str, n: int) -> list[Path]:
    """The first ``n`` validation images of a dataset YAML (sorted by name)."""
    d = _dataset(data)
    suffixes = image_suffixes()
    val = d["val"] if isinstance(d["val"], (list, tuple)) else [d["val"]]
    files = sorted(p for v in val for p in Path(v).rglob("*") if p.suffix[1:].lower() in suffixes)
    return files[:n]


def ground_truth(image: Path) -> list[tuple[int, float, float, float, float]]:
    """The labelled boxes of a dataset image, ``(class, x1, y1, x2, y2)`` as fractions of its width and height, from
    its YOLO label file (``.../images/...`` -> ``.../labels/....txt``, the layout Ultralytics reads; a polygon label
    gives its bounding box); none when there is no label file."""
    parts = str(image).rsplit(f"{os.sep}images{os.sep}", 1)
    if len(parts) != 2:
        return []
    path = Path(f"{os.sep}labels{os.sep}".join(parts)).with_suffix(".txt")
    boxes = []
    if path.is_file():
        for line in path.read_text().splitlines():
            v = line.split()
            if len(v) == 5:
                c, xc, yc, w, h = int(float(v[0])), *map(float, v[1:])
                boxes.append((c, xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
            elif len(v) > 5:  # segment: x y pairs
                xs, ys = [float(t) for t in v[1::2]], [float(t) for t in v[2::2]]
                boxes.append((int(float(v[0])), min(xs), min(ys), max(xs), max(ys)))
    return boxes


def _box_label(ax, text: str, x1: float, y1: float, x2: float, w: int, h: int, color, fontsize: float,
               panel_pt: float) -> None:
    """A box's label on its top edge, kept inside the image: above the box where there is room, else just inside
    its top; right-aligned to the box when it would run off the right edge."""
    per_pt = max(w, h) / panel_pt  # image pixels per typographic point in this panel
    tw, th = 0.62 * fontsize * len(text) * per_pt, 1.45 * fontsize * per_pt
    above = y1 - th >= 0
    left = x1 + tw <= w or x2 - tw < 0
    ax.text(max(x1, 0) if left else min(x2, w), y1 if above else max(y1, 0), text, fontsize=fontsize,
            color="white", ha="left" if left else "right", va="bottom" if above else "top", clip_on=True,
            bbox={"boxstyle": "square,pad=0.1", "fc": color, "ec": "none", "alpha": 0.85})


def _class_color(c: int):
    import matplotlib

    return matplotlib.colormaps["tab10"](c % 10)


def predictions_figure(predictions: dict[str, list], images: list[Path], conf: float, seed: int):
    """The figure of :func:`plot_predictions` from each model's Ultralytics results on ``images``: one row per model,
    one column per image; the ground truth as dashed white boxes, the predictions as solid boxes in their class's
    colour with class and confidence, every label inside the image."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    names = list(predictions)
    side = 2.3
    fig, axes = plt.subplots(len(names), len(images), figsize=(side * len(images), side * len(names) + 0.7), dpi=110,
                             squeeze=False, layout="constrained")
    panel_pt = side * 72 * 0.9
    for i, name in enumerate(names):
        for j, p in enumerate(predictions[name]):
            ax = axes[i][j]
            img = p.orig_img[..., ::-1]  # BGR -> RGB
            h, w = img.shape[:2]
            ax.imshow(img, extent=(0, w, h, 0))
            for c, x1, y1, x2, y2 in ground_truth(images[j]):
                for color, lw in (("black", 1.5), ("white", 0.8)):  # white dashes on a black outline: any background
                    ax.add_patch(Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False, ec=color,
                                           lw=lw, ls=(0, (3, 2)) if color == "white" else "-", alpha=0.75,
                                           label="ground truth" if color == "white" else None))
            boxes = p.boxes
            for (x1, y1, x2, y2), c, s in zip(boxes.xyxy.tolist(), boxes.cls.tolist(), boxes.conf.tolist()):
                color = _class_color(int(c))
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=1.4, ls="-",
                                       label="prediction"))
                _box_label(ax, f"{p.names[int(c)]} {s:.2f}", x1, y1, x2, w, h, color, 5.5, panel_pt)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if i == 0:
                ax.set_title(f"{images[j].name} ({len(ground_truth(images[j]))} labelled)", fontsize=7)
    fig.suptitle(f"predictions (conf ≥ {conf}) of each model's seed-{seed} weights", fontsize=9)
    fig.legend(handles=[Line2D([], [], color="white", ls=(0, (3, 2)), lw=0.8, path_effects=_outline()),
                        Line2D([], [], color=_class_color(0), lw=1.4)],
               labels=["ground truth (labelled box)", "prediction: class confidence (colour: class)"],
               loc="outside lower center", ncol=2, fontsize=7, frameon=False, facecolor="none")
    return fig


def _outline():
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=1.5, foreground="black"), patheffects.Normal()]


def plot_predictions(runs: list[RunResult], names: list[str], images: list[Path], path: Path, imgsz: int,
                     conf: float = 0.25, device: str = "cpu") -> None:
    """Grid: one row per model (its lowest seed's weights), one column per validation image, ground truth and
    predicted boxes drawn (:func:`predictions_figure`); predicted on ``device`` (Ultralytics' ``device=`` form)."""
    plt = _pyplot()
    predictions = {}
    for name in names:
        r = min((r for r in runs if r.model == name), key=lambda r: r.seed)
        with quiet():
            predictions[name] = _front(r.weights)(r.weights).predict([str(p) for p in images], imgsz=imgsz,
                                                                     conf=conf, verbose=False, device=device)
    fig = predictions_figure(predictions, images, conf, min(r.seed for r in runs))
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------------------------------
def compare(cfgs: list[str], data: str, *, epochs: int, imgsz: int, seeds: int, device: str | None, out: str | Path,
            batch: int = 16, init: str | None = None, note: str = "", grid: int = 4, workers: int = 2) -> list[dict]:
    """Train every config with seeds ``0..seeds-1`` (reusing stored runs), write the table and pictures; returns rows.

    ``device`` goes to Ultralytics' training as given (``"0,1"``: multi-GPU DDP) once :func:`resolve_device` has
    checked it (:class:`DeviceError` before anything is trained or written); speed, evaluation and the prediction
    pictures run in this process on its first device, which the table names.
    """
    t_start = time.perf_counter()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = Path(out).resolve()
    names = [label(c) for c in cfgs]
    if len(set(names)) != len(names):
        raise SystemExit(f"yolo-attn compare: two configs share a name ({', '.join(names)}); rename one")
    request, local = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".matplotlib"))
    register()
    s = Settings(data=str(Path(data).resolve()) if Path(data).is_file() else data, epochs=epochs, imgsz=imgsz,
                 batch=batch, device=request, init=str(Path(init).resolve()) if init else None,
                 recipe=dict(FINE_TUNE) if init else {})
    start = f"initialised from {Path(init).name} by structural transfer" if init else "from scratch"
    multi = "," in request
    trained_on = f"`{request}`" + (" (Ultralytics' multi-GPU DDP)" if multi else "")
    measured_on = f"`{local}`" + (f", the first of the training devices {request}" if multi else "")
    print(f"compare: {len(cfgs)} models × {seeds} seed(s), {epochs} epochs at {imgsz} px, batch {batch}, device "
          f"{trained_on.replace('`', '')}, speed measured on {measured_on.replace('`', '')}, {start}; output {out}",
          flush=True)
    runs_dir = out / "runs"
    runs: list[RunResult] = []
    reused = 0
    for seed in range(seeds):
        for cfg in cfgs:
            store = runs_dir / f"{label(cfg)}-seed{seed}.json"
            r = _stored(store, s)
            if r is None:
                r = train_one(cfg, seed, s, runs_dir, workers, device=device, local=local)
                store.write_text(json.dumps({"settings": asdict(s), "result": asdict(r)}, indent=1) + "\n")
            else:
                reused += 1
                print(f"  {r.model:14s} seed {seed}  reused {store.name}", flush=True)
                if r.speed_device != str(local):
                    r = _measured_again(r, s, local)
                    store.write_text(json.dumps({"settings": asdict(s), "result": asdict(r)}, indent=1) + "\n")
            runs.append(r)
    rows = aggregate(runs, names)
    wall = time.perf_counter() - t_start
    _write_csv(out / "runs.csv", [{k: v for k, v in asdict(r).items() if k != "loss"} for r in runs], digits=None)
    _write_csv(out / "results.csv", rows)
    transferred = ", ".join(f"{r.model} {r.transferred}" for r in runs if r.seed == 0 and r.transferred)
    recipe = ", ".join(f"{k}={v}" for k, v in s.recipe.items()) or "Ultralytics defaults"
    header = (
        f"Data: `{s.data}`. {epochs} epochs at {imgsz} px, batch {batch}, device {trained_on}, one recipe for every "
        f"model ({recipe}); {seeds} seed{'s' if seeds > 1 else ''} (mean ± sd over seeds); every model "
        f"{start}" + (f" (tensors transferred: {transferred})" if transferred else "") + ". "
        f"Baseline: {names[0]}. Δ = model − baseline, paired by seed, with a 95 % t-interval over the seed "
        f"differences; 'within noise' when the interval contains 0"
        + ("; with 2 seeds the interval has one degree of freedom and can be narrow by chance, so a 'beyond noise' "
           "decides little: use 3 or more seeds to conclude" if seeds == WEAK_SEEDS else "")
        + f". Latency (batch 1) and throughput (batch "
        f"{THROUGHPUT_BATCH}): fused, at {imgsz} px, measured on {measured_on}. Wall time {wall / 60:.1f} min"
        + (f" ({reused} of {len(runs)} runs reused)" if reused else "") + "."
    )
    md = markdown(rows, "# yolo-attn compare\n\n" + header + (f"\n\n{note}" if note else ""))
    (out / "results.md").write_text(md)
    (out / "results.tex").write_text(latex(rows, header))
    title = f"{Path(s.data).parent.name if s.data.endswith('data.yaml') else Path(s.data).name}: {epochs} ep, " \
            f"{imgsz} px, {seeds} seed(s), {start.split(' by')[0]}"
    plot_results(rows, out / "results.png", title)
    plot_curves(runs, names, out / "curves.png", title, epochs)
    images = val_images(s.data, grid)
    if images:
        plot_predictions(runs, names, images, out / "predictions.png", imgsz, device=_ultralytics_device(local))
    print("\n" + md)
    print(f"wrote {', '.join(str(out / f) for f in ('results.md', 'results.csv', 'results.tex', 'runs.csv'))}, "
          f"results.png, curves.png, predictions.png ({(time.perf_counter() - t_start) / 60:.1f} min)", flush=True)
    return rows


def _parser(prog: str = "yolo-attn compare") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cfgs", nargs="+", metavar="CFG", help="model configs (paths or shipped names); first = baseline")
    ap.add_argument("--data", required=True, help="dataset YAML")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per run (default %(default)s)")
    ap.add_argument("--imgsz", type=int, default=640, help="train/val/latency size (default %(default)s)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per config (default %(default)s)")
    ap.add_argument("--device", default=None,
                    help="cpu, 0, 0,1 (multi-GPU DDP), mps (default: Ultralytics' choice); speed is measured on the "
                         "first")
    ap.add_argument("--batch", type=int, default=16, help="batch size (default %(default)s)")
    ap.add_argument("--init", default=None, help="initialise every model from this checkpoint (structural transfer)")
    ap.add_argument("--workers", type=int, default=2, help="dataloader workers (default %(default)s)")
    ap.add_argument("--out", default="runs/yolo_attn_compare", help="output directory (default %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn compare``; returns the exit code."""
    ap = _parser()
    args = ap.parse_args(argv)
    for key in ("epochs", "imgsz", "seeds", "batch"):
        if getattr(args, key) < 1:
            ap.error(f"--{key} must be >= 1")
    try:
        compare(args.cfgs, args.data, epochs=args.epochs, imgsz=args.imgsz, seeds=args.seeds, device=args.device,
                out=args.out, batch=args.batch, init=args.init, workers=args.workers)
    except DeviceError as e:  # raised before anything is trained or written
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
