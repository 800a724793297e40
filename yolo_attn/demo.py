"""``yolo-attn demo``: train stock YOLOv8n and the four after-SPPF attention variants under one budget, offline, and
compare them.

    yolo-attn demo                                  # default budget: fits in ~7 min on 2 CPU cores
    yolo-attn demo --epochs 60 --imgsz 320 --seeds 3 --device 0
    yolo-attn demo --data your.yaml --epochs 100 --imgsz 640 --models yolov8n,lska,shsa

Without ``--data`` it generates the synthetic shapes dataset (``yolo_attn.data.make_shapes``) under ``--out`` if it is
not there yet. Every model trains from scratch with the same data, epochs, image size, batch, seed and device;
then the table gets params, GFLOPs (``yolo_attn.check.count_flops``, attention matmuls included), mAP50 and mAP50-95
of the final validation, latency (ms per image, batch 1, at the demo size on the demo device, median of repeated
runs) and training time (the epochs' training loops; validation excluded). Written to ``--out``: ``results.csv``,
``results.md``, ``results.png`` (mAP50-95 against latency), ``runs.csv`` (one row per model and seed) and the
Ultralytics run directories under ``train/``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["main", "run", "MODELS", "DEFAULTS", "RunResult"]

MODELS = {"yolov8n": None, "cga": "CGA", "lska": "LSKA", "fla": "FLA", "shsa": "SHSA"}
"""Demo model names -> layer inserted after SPPF (None: the stock baseline)."""

DEFAULTS = {"epochs": 10, "imgsz": 128, "train": 320, "val": 80, "batch": 16, "seeds": 1}
"""The default budget: sized so that set-up plus the demo fit in 10 minutes on 2 CPU cores."""

CAVEAT = (
    "What these numbers show: that each variant builds, trains, validates and runs here, and what it costs "
    "(parameters, FLOPs, latency at this size on this device, training time). What they do not show: which layer is "
    "more accurate. At the default budget every model trains from scratch for about a minute on a small synthetic "
    "dataset: mAP stays close to zero, and the differences between models are run-to-run noise (repeat with --seeds "
    "to see its size); nor would a synthetic result carry over to COCO or your data. For an accuracy comparison, "
    "train much longer on your own data with several seeds (--data your.yaml --epochs 100 --imgsz 640 --seeds 3, on "
    "a GPU)."
)


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
    train_s: float
    weights: str


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def _model_cfg(name: str, out: Path) -> str:
    """A config file whose name carries scale n (what Ultralytics reads the scale from)."""
    if name == "yolov8n":
        return "yolov8n.yaml"
    if name.endswith((".yaml", ".yml")):
        return name
    layer = MODELS[name].lower()
    from .configs import cfg_path

    src = cfg_path(f"yolov8-{layer}.yaml")
    dst = out / "configs" / f"yolov8n-{layer}.yaml"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return str(dst)


def _label(name: str) -> str:
    """Table / run-directory name of a model: its demo name, or a YAML's file stem."""
    return Path(name).stem if name.endswith((".yaml", ".yml")) else name


def _ensure_data(args, out: Path) -> str:
    if args.data:
        return args.data
    from .data import make_shapes

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


def _latency_ms(model, imgsz: int, device, runs: int = 20) -> float:
    """Median ms per image (batch 1) of the fused eval model."""
    import copy

    import torch

    m = copy.deepcopy(model).to(device).eval()
    if hasattr(m, "fuse"):  # as Ultralytics' predict and val run it
        with _Quiet():
            try:
                m = m.fuse(verbose=False)
            except TypeError:  # a fuse() without the verbose argument
                m = m.fuse()
    x = torch.zeros(1, 3, imgsz, imgsz, device=device)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for k in range(runs + 3):
            sync()
            t0 = time.perf_counter()
            m(x)
            sync()
            if k >= 3:  # warm-up
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _metric(results, key: str) -> float:
    d = getattr(results, "results_dict", None) or {}
    return float(d.get(key, float("nan")))


class _Quiet:
    """Ultralytics' logger at WARNING (no per-batch bars or summaries) for the duration of a block."""

    def __enter__(self):
        from ultralytics.utils import LOGGER

        self.logger, self.level = LOGGER, LOGGER.level
        LOGGER.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _train_one(name: str, cfg: str, data: str, seed: int, args, out: Path) -> RunResult:
    import torch
    from ultralytics import RTDETR, YOLO

    from .check import count_flops

    model = (RTDETR if "rtdetr" in Path(cfg).name else YOLO)(cfg)
    clock = {"train": 0.0}

    def epoch_start(trainer):
        clock["t0"] = time.perf_counter()

    def epoch_end(trainer):
        dt = time.perf_counter() - clock["t0"]
        clock["train"] += dt
        losses = trainer.label_loss_items(trainer.tloss, prefix="") if trainer.tloss is not None else {}
        loss = " ".join(f"{k.split('/')[-1].replace('_loss', '')} {float(v):.3f}" for k, v in losses.items())
        print(f"  {name:8s} seed {seed}  epoch {trainer.epoch + 1:>3d}/{trainer.epochs}  loss {loss}  "
              f"({dt:.1f} s)", flush=True)

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_epoch_end", epoch_end)
    with _Quiet():
        results = model.train(
            data=data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device, seed=seed,
            deterministic=True, workers=args.workers, plots=False, val=False, project=str(out / "train"),
            name=f"{name}-seed{seed}", exist_ok=True, verbose=False, patience=0,
        )
    trainer = model.trainer
    weights = trainer.best if Path(trainer.best).is_file() else trainer.last
    final = model.model if isinstance(model.model, torch.nn.Module) else YOLO(str(weights)).model
    final = final.float()
    params = sum(p.numel() for p in final.parameters())  # the trained model (class count of the data)
    gflops = count_flops(final, args.imgsz) / 1e9
    latency = _latency_ms(final, args.imgsz, trainer.device)
    r = RunResult(model=name, seed=seed, params=params, gflops=gflops,
                  map50=_metric(results, "metrics/mAP50(B)"), map50_95=_metric(results, "metrics/mAP50-95(B)"),
                  latency_ms=latency, train_s=clock["train"], weights=str(weights))
    print(f"  {name:8s} seed {seed}  mAP50 {r.map50:.4f}  mAP50-95 {r.map50_95:.4f}  latency {latency:.1f} ms/img  "
          f"train {r.train_s:.0f} s", flush=True)
    return r


def _mean_spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _aggregate(runs: list[RunResult], names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        rs = [r for r in runs if r.model == name]
        row = {"model": name, "params": rs[0].params, "gflops": round(rs[0].gflops, 3), "seeds": len(rs)}
        for key in ("map50", "map50_95", "latency_ms", "train_s"):
            mean, sd = _mean_spread([getattr(r, key) for r in rs])
            row[key], row[f"{key}_sd"] = mean, sd
        rows.append(row)
    return rows


def _fmt(row: dict, key: str, digits: int) -> str:
    text = f"{row[key]:.{digits}f}"
    return text + (f" ± {row[key + '_sd']:.{digits}f}" if row["seeds"] > 1 else "")


def _markdown(rows: list[dict], args, data: str, device: str, wall: float) -> str:
    seeds = rows[0]["seeds"]
    lines = [
        "# yolo-attn demo",
        "",
        f"Data: `{data}`; {args.epochs} epochs at {args.imgsz} px, batch {args.batch}, from scratch, device `{device}`, "
        f"{seeds} seed{'s' if seeds > 1 else ''}{' (mean ± standard deviation over seeds)' if seeds > 1 else ''}. "
        f"Wall time {wall / 60:.1f} min.",
        "",
        "| model | params | GFLOPs | mAP50 | mAP50-95 | latency ms/img | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['gflops']:.3f} | {_fmt(r, 'map50', 4)} | "
                     f"{_fmt(r, 'map50_95', 4)} | {_fmt(r, 'latency_ms', 1)} | {_fmt(r, 'train_s', 0)} |")
    lines += ["", f"GFLOPs and latency at {args.imgsz}×{args.imgsz}, batch 1. " + CAVEAT, ""]
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for r in rows:
        ax.errorbar(r["latency_ms"], r["map50_95"], xerr=r["latency_ms_sd"] or None, yerr=r["map50_95_sd"] or None,
                    fmt="o", capsize=3, color="tab:gray" if r["model"] == "yolov8n" else "tab:blue")
        ax.annotate(r["model"], (r["latency_ms"], r["map50_95"]), textcoords="offset points", xytext=(5, 5))
    ax.margins(x=0.3, y=0.3)  # room for the labels
    ax.set_xlabel("latency, ms/img (batch 1)")
    ax.set_ylabel("mAP50-95")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="yolo-attn demo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per model (default %(default)s)")
    ap.add_argument("--imgsz", type=int, default=DEFAULTS["imgsz"], help="train/val/latency size (default %(default)s)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated, from {', '.join(MODELS)} or model YAML paths (default: all)")
    ap.add_argument("--data", default=None, help="dataset YAML (default: generate the synthetic shapes set)")
    ap.add_argument("--device", default=None, help="cpu, 0, 0,1, mps ... (default: Ultralytics' choice)")
    ap.add_argument("--seeds", type=int, default=DEFAULTS["seeds"],
                    help="repeat every model with seeds 0..N-1 and report mean ± sd (default %(default)s)")
    ap.add_argument("--out", default="runs/yolo_attn_demo", help="output directory (default %(default)s)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="batch size (default %(default)s)")
    ap.add_argument("--train", type=int, default=DEFAULTS["train"], help="generated training images (default %(default)s)")
    ap.add_argument("--val", type=int, default=DEFAULTS["val"], help="generated validation images (default %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="dataloader workers (default %(default)s)")
    return ap


def run(args: argparse.Namespace) -> list[dict]:
    """Run the demo for parsed arguments; returns the aggregated table rows (also written under ``args.out``)."""
    t_start = time.perf_counter()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".matplotlib"))
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS and not n.endswith((".yaml", ".yml"))]
    if unknown or not names:
        raise SystemExit(f"yolo-attn demo: unknown model(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(MODELS)} or give model YAML paths")

    from . import register

    register()
    from ultralytics.utils.torch_utils import select_device

    with _Quiet():
        device = select_device(args.device if args.device is not None else "", verbose=False)
    data = _ensure_data(args, out)
    print(f"demo: {len(names)} models × {args.seeds} seed(s), {args.epochs} epochs at {args.imgsz} px, batch "
          f"{args.batch}, device {device}; output {out}", flush=True)
    if args.device is None:  # the same device for every model, also for the latency
        args.device = str(device.index or 0) if device.type == "cuda" else device.type

    runs: list[RunResult] = []
    for seed in range(args.seeds):
        for name in names:
            runs.append(_train_one(_label(name), _model_cfg(name, out), data, seed, args, out))

    rows = _aggregate(runs, [_label(n) for n in names])
    wall = time.perf_counter() - t_start
    with open(out / "runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(runs[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in runs)
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    md = _markdown(rows, args, data, str(device), wall)
    (out / "results.md").write_text(md)
    _plot(rows, out / "results.png",
          f"{Path(data).parent.name if not args.data else Path(data).name}: {args.epochs} epochs, {args.imgsz} px, "
          f"{args.seeds} seed(s), {device}")
    print("\n" + md)
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {out / 'results.png'} ({wall / 60:.1f} min)")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn demo``; returns the exit code."""
    args = _parser().parse_args(argv)
    for key in ("epochs", "imgsz", "seeds", "batch", "train", "val"):
        if getattr(args, key) < 1:
            _parser().error(f"--{key} must be >= 1")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
