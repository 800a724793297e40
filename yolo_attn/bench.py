"""``yolo-attn bench``: layer and model benchmarks; writes BENCHMARKS.md, a latency plot and the raw figures.

    yolo-attn bench            # full run (~15 min on 2 CPU cores): BENCHMARKS.md, benchmarks/latency.png, .json
    yolo-attn bench --quick    # smoke run (~2 min): YOLOv8n shapes, batch 1, few repeats

Layers: each layer at the P3/P4/P5 shapes of YOLOv8n and YOLOv8s at 640, batch 1 and 16, inference (eval, no_grad;
fast path *fused*, textbook unfused) and training step (train mode, forward + backward), fast path against the
textbook formulation kept in the package (``yolo_attn.layers.textbook``) in the same run, timed interleaved
(fast, textbook, fast, ...) so that machine load drifts hit both alike. Models: each after-SPPF config
(``cfg/yolov8-<layer>.yaml`` at scale n) against stock YOLOv8n at 640, fused. Start-up: ``import yolo_attn`` against
``import ultralytics`` and the ``.pth`` hook, in fresh interpreters.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the call minus what was allocated before it; on CPU the
same quantity from the allocator events of ``torch.profiler`` (``profile_memory=True``): the running sum of every
allocation and free during one call, maximised — inputs and parameters made before the call are not counted, every
temporary (score matrices, saved activations, gradients) is. The profiled call doubles as the first warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .check import count_flops
from .configs import cfg_path, insert
from .integration import build_model, register
from .layers.registry import REGISTRY, builtin_specs, discover, find

__all__ = ["main", "LAYER_SHAPES", "run_layers", "run_models", "run_startup", "cpu_name", "model_configs",
           "fused_model", "no_grad_call"]

LAYER_SHAPES = {  # model: [(level, channels, side)] at 640: P3 = 640/8, P4 = 640/16, P5 = 640/32
    "n": [("P3", 64, 80), ("P4", 128, 40), ("P5", 256, 20)],
    "s": [("P3", 128, 80), ("P4", 256, 40), ("P5", 512, 20)],
}
LAYER_NAMES = tuple(builtin_specs())  # the shipped layers; ``--layers`` adds registered user layers
GiB = 1024**3


def make_layer(name: str, c: int, side: int, level: str = ""):
    """The layer as a YAML row at that place builds it: the registry's per-map defaults for a ``side``-wide map
    (what the shipped configs use: CGA 4 heads, FLA window = the map's grid, LSKA 53/41/23 at P3/P4/P5, SHSA qk 16)."""
    spec = REGISTRY[name]
    return spec.cls(c, *spec.default_args(side))


def textbook_bytes(name: str, c: int, side: int, batch: int, train: bool) -> int:
    """Rough size of the textbook form's token×token matrices (what makes it infeasible at large sizes), as the
    layer's registry declaration gives it (0: it has none)."""
    estimate = REGISTRY[name].textbook_bytes
    return estimate(c, side, batch, train) if estimate is not None else 0


# ----------------------------------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_bytes(fn, device: str) -> int:
    """Peak bytes allocated during one call of ``fn`` beyond what was allocated before it (see module docstring)."""
    import torch

    if device == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if getattr(e.device_type(), "name", "CPU") == "CPU":  # the CPU allocator's events
            live += e.nbytes()
            peak = max(peak, live)
    return int(peak)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines, which go to file descriptor 2 directly."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class Timing:
    """Seconds per call: the samples, and their median and interquartile range."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def iqr(self) -> float:
        if len(self.samples) < 4:
            return max(self.samples) - min(self.samples) if self.samples else float("nan")
        q = statistics.quantiles(self.samples, n=4)
        return q[2] - q[0]


def interleaved(fns: list, device: str, min_reps: int, max_reps: int, budget_s: float) -> list[Timing]:
    """Time the callables round-robin (one call each per round) after one warm-up round.

    Stops after ``max_reps`` rounds, or once ``min_reps`` rounds are done and ``budget_s`` seconds have passed.
    """
    timings = [Timing() for _ in fns]
    for fn in fns:  # warm-up (the memory measurement ran before: this is the second call)
        fn()
    _sync(device)
    start = time.perf_counter()
    for r in range(max_reps):
        for fn, t in zip(fns, timings):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            t.samples.append(time.perf_counter() - t0)
        if r + 1 >= min_reps and time.perf_counter() - start > budget_s:
            break
    return timings


# ----------------------------------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class LayerRow:
    device: str
    dtype: str
    layer: str
    model: str
    level: str
    channels: int
    side: int
    batch: int
    mode: str  # "infer" | "train"
    fast_s: float
    fast_iqr_s: float
    fast_peak: int
    textbook_s: float | None
    textbook_iqr_s: float | None
    textbook_peak: int | None
    reps: int
    note: str = ""
    fast_samples: list = field(default_factory=list)
    textbook_samples: list = field(default_factory=list)
    rechecks: list = field(default_factory=list)  # speed-ups of re-runs in fresh interpreters (see RECHECKS)

    @property
    def speedup(self) -> float | None:
        return None if self.textbook_s is None else self.textbook_s / self.fast_s

    @property
    def verdict_speedup(self) -> float | None:
        """The median speed-up over this run and its re-runs: what the no-slower target is judged on."""
        return None if self.speedup is None else statistics.median([self.speedup, *self.rechecks])

    @property
    def mem_ratio(self) -> float | None:
        if self.textbook_peak is None or not self.textbook_peak:
            return None
        return self.fast_peak / self.textbook_peak


def _layer_callables(layer, x, mode: str, device: str, amp):
    """(fast, textbook) callables for one configuration."""
    import torch

    from .layers import fuse_layers, textbook

    autocast = (lambda: torch.autocast(device, dtype=amp)) if amp is not None else contextlib.nullcontext
    if mode == "infer":
        ref = layer.eval()
        fast = copy.deepcopy(layer).eval()
        fuse_layers(fast)

        def run_fast():
            with torch.no_grad(), autocast():
                fast(x)

        def run_ref():
            with torch.no_grad(), autocast(), textbook():
                ref(x)

        return run_fast, run_ref

    layer.train()
    xg = x.clone().requires_grad_(True)

    def step(use_textbook: bool):
        def run():
            layer.zero_grad(set_to_none=True)
            xg.grad = None
            with autocast(), textbook(use_textbook):
                y = layer(xg)
            y.float().mean().backward()

        return run

    return step(False), step(True)


def measure_layer(device: str, dtype_name: str, model: str, level: str, channels: int, side: int, name: str,
                  batch: int, mode: str, min_reps: int, max_reps: int, budget_s: float,
                  max_textbook_gb: float) -> LayerRow:
    """One row: the layer's fast path and its textbook form, peak memory then interleaved timing."""
    import torch

    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    layer = make_layer(name, channels, side, level).to(device)
    x = torch.randn(batch, channels, side, side, device=device)
    fast, ref = _layer_callables(layer, x, mode, device, amp)
    est = textbook_bytes(name, channels, side, batch, mode == "train")
    skip_ref = est > max_textbook_gb * GiB
    fns = [fast] if skip_ref else [fast, ref]
    peaks = [peak_bytes(f, device) for f in fns]
    t = interleaved(fns, device, min_reps, max_reps, budget_s)
    return LayerRow(
        device=device, dtype=dtype_name, layer=name, model=f"yolov8{model}", level=level, channels=channels,
        side=side, batch=batch, mode=mode, fast_s=t[0].median, fast_iqr_s=t[0].iqr, fast_peak=peaks[0],
        textbook_s=None if skip_ref else t[1].median, textbook_iqr_s=None if skip_ref else t[1].iqr,
        textbook_peak=None if skip_ref else peaks[1], reps=len(t[0].samples),
        note=(f"textbook not run: its token×token matrices need ~{est / GiB:.1f} GiB "
              f"(> --max-textbook-gb {max_textbook_gb:g})") if skip_ref else "",
        fast_samples=t[0].samples, textbook_samples=[] if skip_ref else t[1].samples,
    )


KEEP_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
"""glibc malloc settings under which freed memory stays in the process (no mmap/munmap per large tensor), used for
the second SHSA P3 figure: the explicit form without the cost of paging in its score matrices on every call."""


def measure_isolated(spec: dict, env: dict | None = None) -> LayerRow:
    """:func:`measure_layer` in a fresh interpreter, so no row inherits the allocator state earlier rows left.

    ``spec`` holds measure_layer's arguments plus ``threads`` (see :func:`_row_spec`); ``env`` adds environment
    variables for the child.
    """
    out = _py_last_line("import sys; from yolo_attn.bench import _row_worker; _row_worker(sys.argv[1])",
                        {**os.environ, **(env or {})}, args=(json.dumps(spec),))
    return LayerRow(**json.loads(out))


def _row_worker(spec_json: str) -> None:
    """Child side of :func:`measure_isolated`: measure one row, print it as JSON on the last line."""
    import torch

    discover()  # a user's layer named by YOLO_ATTN_IMPORTS (inherited from the parent)
    spec = json.loads(spec_json)
    torch.set_num_threads(spec.pop("threads"))
    print(json.dumps(asdict(measure_layer(**spec))), flush=True)


def _row_spec(device: str, dtype_name: str, model: str, level: str, name: str, batch: int, mode: str,
              timing: dict) -> dict:
    """:func:`measure_isolated`'s spec for one row; ``timing``: min_reps, max_reps, budget_s, max_textbook_gb."""
    import torch

    c, side = next((c, side) for lv, c, side in LAYER_SHAPES[model] if lv == level)
    return dict(device=device, dtype_name=dtype_name, model=model, level=level, channels=c, side=side, name=name,
                batch=batch, mode=mode, threads=torch.get_num_threads(), **timing)


def _row_line(row: LayerRow) -> str:
    """One progress line: the row's figures, and its re-runs if any."""
    sp = "-" if row.speedup is None else f"{row.speedup:.2f}x"
    if row.rechecks:
        sp += " (re-runs " + ", ".join(f"{r:.2f}x" for r in row.rechecks) + ")"
    return (f"  {row.device} {row.dtype} {row.layer:4s} {row.model[-1]} {row.level} {row.channels}@{row.side}² "
            f"b{row.batch} {row.mode:5s} fast {row.fast_s * 1e3:9.2f} ms  textbook "
            f"{'-' if row.textbook_s is None else f'{row.textbook_s * 1e3:9.2f} ms'}  speed-up {sp}")


def run_layers(devices: list[str], models: list[str], batches: list[int], modes: list[str], dtypes: dict,
               min_reps: int, max_reps: int, budget_s: float, max_textbook_gb: float, layers=LAYER_NAMES,
               log=print) -> list[LayerRow]:
    """Every layer × shape × batch × mode × dtype on each device, each row in its own fresh interpreter.

    CPU low-precision rows only for the first model and the smallest batch (time budget).
    """
    timing = dict(min_reps=min_reps, max_reps=max_reps, budget_s=budget_s, max_textbook_gb=max_textbook_gb)
    grid = [(device, dtype_name, model, level, name, batch, mode)
            for device in devices for dtype_name in dtypes[device] for model in models
            for level, _, _ in LAYER_SHAPES[model] for name in layers for batch in batches for mode in modes
            if dtype_name == "fp32" or device != "cpu" or (batch == min(batches) and model == models[0])]
    rows = []
    for device, dtype_name, *rest in grid:
        spec = _row_spec(device, dtype_name, *rest, timing)
        row = measure_isolated(spec)
        if device == "cpu" and dtype_name == "fp32" and _below_noise(row):  # confirm or refute afresh
            row.rechecks = [measure_isolated(spec).speedup for _ in range(RECHECKS)]
        rows.append(row)
        log(_row_line(row))
    return rows


def run_resident(min_reps: int, max_reps: int, budget_s: float, log=print) -> LayerRow:
    """SHSA at P3 of YOLOv8n, batch 1, inference, CPU fp32, with ``KEEP_MEMORY_ENV`` (see the targets table)."""
    timing = dict(min_reps=min_reps, max_reps=max_reps, budget_s=budget_s, max_textbook_gb=4.0)
    row = measure_isolated(_row_spec("cpu", "fp32", "n", "P3", "SHSA", 1, "infer", timing), env=KEEP_MEMORY_ENV)
    log(_row_line(row) + ", freed memory kept by malloc")
    return row


# ----------------------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ModelRow:
    device: str
    name: str
    cfg: str
    params: int
    gflops: float
    latency_s: float
    latency_iqr_s: float
    throughput: float | None
    throughput_batch: int
    reps: int
    samples: list = field(default_factory=list)
    overhead: float | None = None


def find_configs(layers=LAYER_NAMES) -> dict[str, Path | dict]:
    """The after-SPPF YOLOv8 config of each layer: the shipped ``cfg/yolov8-<layer>.yaml`` (see
    :func:`yolo_attn.configs.cfg_path`), else (a user's layer) stock YOLOv8 with the layer inserted after SPPF."""
    out = {}
    for name in layers:
        try:
            out[name] = cfg_path(f"yolov8-{name.lower()}.yaml")
        except FileNotFoundError:
            out[name] = insert("yolov8.yaml", name, "after-sppf")
    return out


def model_configs(layers=LAYER_NAMES) -> dict[str, str | dict]:
    """Label -> config: stock YOLOv8n, then the after-SPPF config of each layer (:func:`find_configs`)."""
    return {"yolov8n (stock)": "yolov8.yaml", **{f"yolov8n-{n.lower()}": p if isinstance(p, dict) else str(p)
                                                  for n, p in find_configs(layers).items()}}


def fused_model(cfg: str | dict, device: str = "cpu"):
    """``cfg`` at scale n with seed-0 weights, eval, fused as Ultralytics' predict runs it (ours folded by the
    registered hook)."""
    import torch

    torch.manual_seed(0)
    m = build_model(cfg, scale="n").to(device).eval()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        m.fuse(verbose=False)
    return m


def no_grad_call(m, x):
    """A no-argument function running ``m(x)`` without autograd (what :func:`interleaved` times)."""
    import torch

    def run():
        with torch.no_grad():
            m(x)
    return run


def run_models(devices: list[str], imgsz: int, min_reps: int, max_reps: int, budget_s: float, tp_batch: int,
               tp_reps: int, log=print, layers=LAYER_NAMES) -> list[ModelRow]:
    """Stock YOLOv8n and each after-SPPF config at scale n: fused, eval, batch 1 latency + batch throughput."""
    import torch

    register()
    cfgs = model_configs(layers)
    rows = []
    for device in devices:
        models = {label: fused_model(cfg, device) for label, cfg in cfgs.items()}
        flops = {label: count_flops(m, imgsz) for label, m in models.items()}
        x1 = torch.zeros(1, 3, imgsz, imgsz, device=device)
        lat = interleaved([no_grad_call(m, x1) for m in models.values()], device, min_reps, max_reps, budget_s)
        tps = [None] * len(models)
        if tp_batch > 1 and tp_reps > 0:
            xb = torch.zeros(tp_batch, 3, imgsz, imgsz, device=device)
            tpt = interleaved([no_grad_call(m, xb) for m in models.values()], device, tp_reps, tp_reps, 0)
            tps = [tp_batch / t.median for t in tpt]
        base = lat[0].median
        for (label, m), t, tp in zip(models.items(), lat, tps):
            cfg = cfgs[label] if isinstance(cfgs[label], str) else "yolov8.yaml + layer after SPPF (yolo-attn insert)"
            row = ModelRow(device=device, name=label, cfg=cfg, params=sum(p.numel() for p in m.parameters()),
                           gflops=flops[label] / 1e9, latency_s=t.median, latency_iqr_s=t.iqr, throughput=tp,
                           throughput_batch=tp_batch, reps=len(t.samples), samples=t.samples,
                           overhead=t.median / base - 1)
            rows.append(row)
            log(f"  {device} {label:18s} {row.latency_s * 1e3:8.2f} ms  overhead {row.overhead * 100:+6.1f}%  "
                f"{row.params:,} params  {row.gflops:.2f} GFLOPs")
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# start-up
# ----------------------------------------------------------------------------------------------------------------------
_IMPORT_SNIPPET = """
import time, sys
t = time.perf_counter()
import ultralytics
{extra}
sys.stdout.write(repr(time.perf_counter() - t))
"""

_HOOK_SNIPPET = """
import sys, time, os  # os: site.py has imported it before any .pth line runs
sys.path.insert(0, {root!r})
t = time.perf_counter()
import yolo_attn_autoload; yolo_attn_autoload.startup()
sys.stdout.write(repr(time.perf_counter() - t))
"""


def _py_last_line(code: str, env: dict, flags=(), args=()) -> str:
    """Run ``code`` in a fresh interpreter; the last line it printed (its result), or an error with its stderr."""
    proc = subprocess.run([sys.executable, *flags, "-c", code, *args], env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"benchmark child {code.strip()[:80]!r} {' '.join(args)[:200]} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return lines[-1]


def _py(code: str, env: dict, flags=()) -> float:
    return float(_py_last_line(code, env, flags))


def run_startup(reps: int, log=print) -> dict:
    """Fresh-interpreter timings: import ultralytics vs + import yolo_attn; the .pth line on its own.

    Bytecode is cached as after ``pip install`` (which byte-compiles): ``PYTHONDONTWRITEBYTECODE`` is dropped and
    ``PYTHONPYCACHEPREFIX`` points to a scratch folder filled by one untimed run, so an environment that disables
    bytecode writing (or an editable checkout without ``__pycache__``) does not charge compilation to yolo_attn.
    """
    import tempfile

    import yolo_attn_autoload

    with tempfile.TemporaryDirectory(prefix="yolo_attn_pyc_") as pyc:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(YOLO_ATTN_AUTOLOAD="0", YOLO_OFFLINE="1", PYTHONPYCACHEPREFIX=pyc)
        root = str(Path(yolo_attn_autoload.__file__).resolve().parent)
        hook_env = {**env, "YOLO_ATTN_AUTOLOAD": "1"}
        _py(_IMPORT_SNIPPET.format(extra="import yolo_attn"), env)  # fill the bytecode cache (untimed)
        _py(_HOOK_SNIPPET.format(root=root), hook_env, flags=("-S",))
        base, plus = Timing(), Timing()
        for _ in range(reps):  # interleaved
            base.samples.append(_py(_IMPORT_SNIPPET.format(extra=""), env))
            plus.samples.append(_py(_IMPORT_SNIPPET.format(extra="import yolo_attn"), env))
        hook = Timing([_py(_HOOK_SNIPPET.format(root=root), hook_env, flags=("-S",)) for _ in range(max(reps, 5))])
    res = {
        "import_ultralytics_s": base.median, "import_ultralytics_iqr_s": base.iqr, "import_ultralytics_samples":
        base.samples, "import_both_s": plus.median, "import_both_iqr_s": plus.iqr, "import_both_samples":
        plus.samples, "import_overhead": plus.median / base.median - 1, "hook_s": hook.median, "hook_iqr_s":
        hook.iqr, "hook_samples": hook.samples,
    }
    log(f"  import ultralytics {base.median * 1e3:.0f} ms, + import yolo_attn {plus.median * 1e3:.0f} ms "
        f"({res['import_overhead'] * 100:+.1f}%); .pth hook {hook.median * 1e3:.3f} ms")
    return res


# ----------------------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------------------
def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:,.0f}"


def _mb(b) -> str:
    return "-" if b is None else f"{b / 1e6:,.1f}"


def _x(r) -> str:
    return "-" if r is None else f"{r:.2f}×"


def _pct(s, iqr) -> str:
    return "" if s is None or iqr is None or not s else f" ±{iqr / s * 50:.0f}%"


NOISE_FLOOR = 0.02
"""A row counts as slower than textbook only when its speed-up is below 1 − max(NOISE_FLOOR, the row's spread)."""


RECHECKS = 2
"""A row whose speed-up falls below 1 by more than the noise is measured this many more times, each in a fresh
interpreter; the target is judged on the median of all its runs (on this machine the same row's speed-up moves by
±15% between processes with the allocator's state, e.g. SHSA at P5 of YOLOv8n, batch 16: 0.84× to 1.21×)."""


def _spread(r: LayerRow) -> float:
    """The larger relative half-IQR of the row's two timings."""
    return max(r.fast_iqr_s / r.fast_s, (r.textbook_iqr_s or 0) / r.textbook_s) / 2


def _below_noise(r: LayerRow, speedup: float | None = None) -> bool:
    """Whether the row is slower than textbook by more than max(NOISE_FLOOR, its spread)."""
    speedup = r.speedup if speedup is None else speedup
    return speedup is not None and speedup < 1 - max(NOISE_FLOOR, _spread(r))


def evaluate_targets(layer_rows: list[LayerRow], model_rows: list[ModelRow], startup: dict | None,
                     resident: LayerRow | None = None) -> list[dict]:
    """The issue's targets, each with met/missed and the figures behind the verdict."""
    out = []
    cpu32 = [r for r in layer_rows if r.device == "cpu" and r.dtype == "fp32"]
    shsa = {r.mode: r for r in cpu32 if r.layer == "SHSA" and r.model == "yolov8n" and r.level == "P3"
            and r.batch == 1}
    if "infer" in shsa and shsa["infer"].speedup is not None:
        r = shsa["infer"]
        tr = shsa.get("train")
        extra = "" if tr is None or tr.mem_ratio is None else (
            f"; training step {_x(tr.speedup)} faster, peak memory {tr.mem_ratio:.3f} of textbook "
            f"({_mb(tr.fast_peak)} vs {_mb(tr.textbook_peak)} MB)")
        out.append({"target": "SHSA at P3 of YOLOv8n (64@80×80, batch 1): ≥ 5× faster than textbook, peak memory "
                              "≤ 1/4", "met": r.speedup >= 5 and r.mem_ratio <= 0.25,
                    "figures": f"inference {_ms(r.fast_s)} ms vs {_ms(r.textbook_s)} ms = {_x(r.speedup)} faster; "
                               f"peak memory {_mb(r.fast_peak)} MB vs {_mb(r.textbook_peak)} MB = "
                               f"{r.mem_ratio:.3f} of textbook{extra}"})
    if resident is not None and resident.speedup is not None:
        r = resident
        out.append({"target": "the same, with malloc keeping freed memory (the textbook's score "
                              "matrices are paged in once, not on every call)",
                    "met": r.speedup >= 5 and r.mem_ratio <= 0.25,
                    "figures": f"inference {_ms(r.fast_s)} ms vs {_ms(r.textbook_s)} ms = {_x(r.speedup)} faster; "
                               f"peak memory {r.mem_ratio:.3f} of textbook"})
    measured = [r for r in cpu32 if r.speedup is not None]
    if measured:
        slower = [r for r in measured if _below_noise(r, r.verdict_speedup)]
        noise = [r for r in measured if r.verdict_speedup < 1 and r not in slower]
        worst = min(measured, key=lambda r: r.speedup)
        skipped = [r for r in cpu32 if r.speedup is None]
        label = lambda r: (f"{r.layer} {r.model} {r.level} b{r.batch} {r.mode} {_x(r.speedup)} "  # noqa: E731
                           f"(spread ±{_spread(r) * 100:.0f}%" + (
                               f"; re-runs in fresh interpreters {', '.join(_x(x) for x in r.rechecks)}, median "
                               f"{_x(r.verdict_speedup)}" if r.rechecks else "") + ")")
        rechecked = [r for r in measured if r.rechecks and r not in slower and r not in noise]
        figures = (f"{len(measured) - len(slower) - len(noise)} of {len(measured)} measured rows at or above 1.00× "
                   f"(median speed-up {statistics.median(r.speedup for r in measured):.2f}×, lowest "
                   f"{_x(worst.speedup)}: {worst.layer} {worst.model} {worst.level} b{worst.batch} {worst.mode})")
        if noise:
            figures += (f"; below 1.00× by less than the measurement noise (max of {NOISE_FLOOR:.0%} and the row's "
                        f"spread): " + ", ".join(label(r) for r in noise))
        if rechecked:
            figures += "; below 1.00× at first, at or above it over the re-runs: " + ", ".join(
                label(r) for r in rechecked)
        if slower:
            figures += "; slower: " + ", ".join(label(r) for r in slower)
        if skipped:
            figures += (f"; {len(skipped)} rows without a textbook figure (token×token matrices too large to run, "
                        f"see the table)")
        out.append({"target": "Every layer at every YOLOv8n/s shape (CPU, fp32): no slower than textbook",
                    "met": not slower, "figures": figures})
    cpu_models = [r for r in model_rows if r.device == "cpu"]
    if cpu_models:
        base = cpu_models[0]
        worst = max(cpu_models[1:], key=lambda r: r.overhead)
        out.append({"target": "After-SPPF configs ≤ 10% slower than stock YOLOv8n (640, batch 1, CPU, fused)",
                    "met": worst.overhead <= 0.10,
                    "figures": f"stock {_ms(base.latency_s)} ms; " + ", ".join(
                        f"{r.name} {_ms(r.latency_s)} ms ({r.overhead * 100:+.1f}%)" for r in cpu_models[1:])})
    if startup:
        out.append({"target": "`import yolo_attn` ≤ 5% over `import ultralytics` alone",
                    "met": startup["import_overhead"] <= 0.05,
                    "figures": f"{startup['import_ultralytics_s'] * 1e3:.0f} ms → "
                               f"{startup['import_both_s'] * 1e3:.0f} ms ({startup['import_overhead'] * 100:+.1f}%)"})
        out.append({"target": "`.pth` start-up hook ≤ 1 ms", "met": startup["hook_s"] <= 1e-3,
                    "figures": f"{startup['hook_s'] * 1e3:.3f} ms (median of {len(startup['hook_samples'])} fresh "
                               f"interpreters, spread ±{startup['hook_iqr_s'] / startup['hook_s'] * 50:.0f}%)"})
    return out


def _layer_table(rows: list[LayerRow]) -> list[str]:
    lines = ["| layer | model | level | C @ H×W | batch | mode | fast ms | textbook ms | speed-up | fast peak MB "
             "| textbook peak MB | memory ratio |", "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.layer} | {r.model} | {r.level} | {r.channels} @ {r.side}×{r.side} | {r.batch} | {r.mode} | "
            f"{_ms(r.fast_s)}{_pct(r.fast_s, r.fast_iqr_s)} | "
            f"{_ms(r.textbook_s)}{_pct(r.textbook_s, r.textbook_iqr_s) if r.textbook_s else ''} | "
            f"{_x(r.speedup)} | {_mb(r.fast_peak)} | {_mb(r.textbook_peak)} | "
            f"{'-' if r.mem_ratio is None else f'{r.mem_ratio:.3f}'} |")
    return lines


def write_report(path: Path, meta: dict, layer_rows, model_rows, startup, targets, plot_path: Path | None) -> None:
    L = ["# Benchmarks", "", f"Generated by `{meta['command']}` on {meta['date']} in {meta['wall_s'] / 60:.1f} min. "
         "Regenerate everything (this file, the plot, the raw JSON) with that one command; `yolo-attn bench --quick` "
         "is a two-minute smoke run that writes `benchmarks/quick.md` instead.", "",
         "## Machine", "", f"- device(s): {', '.join(meta['devices'])}; CPU: {meta['cpu']}; "
         f"{meta['threads']} torch threads (`--threads`)", f"- torch {meta['torch']}, ultralytics "
         f"{meta['ultralytics']}, Python {meta['python']}, {meta['platform']}",
         f"- GPU: {meta['gpu']}", ""]
    L += ["## Targets", "", "| target | met | figures |", "|---|---|---|"]
    for t in targets:
        L.append(f"| {t['target']} | {'**met**' if t['met'] else '**missed**'} | {t['figures']} |")
    L += ["", "## Method", "",
          "- **Layers**: each layer at the P3/P4/P5 feature maps of YOLOv8n and YOLOv8s at 640 (channels @ side), with "
          "the arguments the shipped configs use there (CGA `[4, 16, 7, 5]`; FLA `[8, side, 3, 5]`, its native "
          "grid; LSKA k = 53/41/23 at P3/P4/P5; SHSA `[16]`, pdim = C/4). *fast* is the default forward; "
          "*textbook* is the same layer (same weights) inside `with yolo_attn.layers.textbook():` — explicit "
          "attention matrices (SHSA, CGA), a Python loop over CGA's windows, FLA in the quadratic order "
          "(φ(q)φ(k)ᵀ first), LSKA with the official `clone()`. *infer*: eval mode under `torch.no_grad()`, fast "
          "path fused with `yolo_attn.layers.fuse_layers` (BatchNorm folded), textbook unfused. *train*: train mode, "
          "forward + backward of the mean, gradients reset each step; both unfused.",
          f"- **Timing**: one profiled call (peak memory) and one warm-up call per variant, then rounds that call "
          f"fast and textbook alternately (so load drifts hit both alike): at least {meta['min_reps']} rounds, up to "
          f"{meta['max_reps']}, stopping after {meta['budget_s']:g} s. Table figures are medians; ± is half the "
          "interquartile range (min–max below 4 samples) relative to the median. Raw samples: "
          f"`{meta['json']}`. A row counts as slower than textbook only when its speed-up is below 1 by more than "
          f"the larger of {NOISE_FLOOR:.0%} and its spread; rows below 1.00× within that are listed as noise. A row "
          f"below by more is measured {RECHECKS} more times, each in a fresh interpreter, and judged on the median "
          "speed-up of all its runs (the table shows the first run; the targets table lists the re-runs).",
          "- **Isolation**: every layer row runs in its own fresh interpreter. The explicit (textbook) forms allocate "
          "score matrices far above glibc's mmap threshold, so in a default process every call maps fresh memory "
          "and page-faults it in — SHSA at P3 of YOLOv8n: three 164 MB matrices, ~122,000 minor faults per call, "
          "more than half of the textbook's time. Whether later allocations reuse that memory depends on what the "
          "process allocated before (in one long process the same textbook row measured anywhere from 60 to 200 ms "
          "depending on the rows before it), so no row inherits another's allocator state. The SHSA P3 target is "
          "also measured with malloc keeping freed memory (`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` "
          "set to 16 GiB: the matrices are paged in once), which shows the arithmetic alone.",
          "- **Peak memory**: bytes allocated during one call beyond what existed before it (inputs and parameters "
          "excluded; every temporary, saved activation and gradient included). CPU: running sum of the allocator "
          "events recorded by `torch.profiler` with `profile_memory=True`, maximised; CUDA: "
          "`torch.cuda.max_memory_allocated()` minus `memory_allocated()` before the call.",
          f"- Textbook rows whose token×token matrices would need more than {meta['max_textbook_gb']:g} GiB are not "
          "run (`--max-textbook-gb`); the row says so.",
          "- **Models**: `cfg/yolov8-<layer>.yaml` (layer after SPPF) and stock `yolov8.yaml`, both at scale n, "
          "random weights, eval, fused by `model.fuse()` (Ultralytics' fuse plus ours via the registered hook), "
          "640×640 input, timed round-robin over the five models. GFLOPs from `yolo_attn.check.count_flops` at "
          "640 (counts the attention matmuls; 2 FLOPs per multiply-add). Throughput: images/s at batch "
          f"{meta['tp_batch']}.",
          "- **Start-up**: fresh interpreters, `YOLO_ATTN_AUTOLOAD=0`, wall time of `import ultralytics` against "
          "`import ultralytics; import yolo_attn`, interleaved; the `.pth` line "
          "(`import yolo_attn_autoload; yolo_attn_autoload.startup()`) timed alone in `python -S` after `import os` "
          "(which site.py has done before any `.pth` line). Bytecode cached as after `pip install` (a scratch "
          "`PYTHONPYCACHEPREFIX`, filled by one untimed run): without a `.pyc` every start compiles the hook "
          "module from source, ~2 ms here.",
          "- The machine may be shared: compare ratios within this run, not absolute figures across runs.", ""]
    if plot_path is not None:
        rel = os.path.relpath(plot_path, path.parent)
        L += ["## Latency against feature-map size", "", f"![layer latency]({rel})", "",
              "Inference, batch 1, CPU fp32; solid: fast path (fused), dashed: textbook.", ""]
    groups = {}
    for r in layer_rows:
        groups.setdefault((r.device, r.dtype), []).append(r)
    for (device, dtype), rows in groups.items():
        L += [f"## Layers: {device}, {dtype}{' autocast' if dtype != 'fp32' else ''}", ""]
        L += _layer_table(rows)
        notes = sorted({r.note for r in rows if r.note})
        L += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    if model_rows:
        L += ["## Models (640, fused)", "", "| device | model | params | GFLOPs | latency ms (batch 1) | overhead | "
              f"throughput img/s (batch {meta['tp_batch']}) |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in model_rows:
            tp = "-" if r.throughput is None else f"{r.throughput:.1f}"
            L.append(f"| {r.device} | {r.name} | {r.params:,} | {r.gflops:.2f} | {_ms(r.latency_s)}"
                     f"{_pct(r.latency_s, r.latency_iqr_s)} | {r.overhead * 100:+.1f}% | {tp} |")
        L.append("")
    if startup:
        L += ["## Start-up", "", "| measure | median | spread |", "|---|---:|---:|",
              f"| `import ultralytics` | {startup['import_ultralytics_s'] * 1e3:.0f} ms | "
              f"±{startup['import_ultralytics_iqr_s'] * 500:.0f} ms |",
              f"| `import ultralytics; import yolo_attn` | {startup['import_both_s'] * 1e3:.0f} ms | "
              f"±{startup['import_both_iqr_s'] * 500:.0f} ms |",
              f"| `.pth` hook line | {startup['hook_s'] * 1e3:.3f} ms | ±{startup['hook_iqr_s'] * 500:.3f} ms |", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L))


def write_plot(path: Path, layer_rows: list[LayerRow]) -> Path | None:
    """Latency against tokens (H·W) per layer: batch 1 inference, CPU fp32, fast vs textbook, YOLOv8n and s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in layer_rows if r.device == "cpu" and r.dtype == "fp32" and r.mode == "infer"
            and r.batch == min(x.batch for x in layer_rows)]
    if not rows:
        return None
    names = list(dict.fromkeys(r.layer for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), sharey=False, squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, names):
        for model, color in (("yolov8n", "tab:blue"), ("yolov8s", "tab:orange")):
            rs = sorted((r for r in rows if r.layer == name and r.model == model), key=lambda r: r.side)
            if not rs:
                continue
            xs = [r.side * r.side for r in rs]
            ax.plot(xs, [r.fast_s * 1e3 for r in rs], "o-", color=color, label=f"{model} fast")
            tb = [(x, r.textbook_s * 1e3) for x, r in zip(xs, rs) if r.textbook_s is not None]
            if tb:
                ax.plot(*zip(*tb), "s--", color=color, alpha=0.7, label=f"{model} textbook")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([400, 1600, 6400], ["20² (P5)", "40² (P4)", "80² (P3)"])
        ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel("feature-map tokens")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("latency, ms (batch 1, CPU fp32)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn bench``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="yolo-attn bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: YOLOv8n shapes, batch 1, few repeats")
    ap.add_argument("--out", default=None, help="report (default BENCHMARKS.md; --quick: benchmarks/quick.md)")
    ap.add_argument("--plot", default=None, help="PNG (default benchmarks/latency.png; --quick: ...quick.png)")
    ap.add_argument("--json", default=None, help="raw figures (default benchmarks/results.json)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CPU, and CUDA if present")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--max-textbook-gb", type=float, default=None,
                    help="skip textbook rows whose token×token matrices need more (default 4; --quick: 1)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: layers, models, startup")
    ap.add_argument("--layers", default=",".join(LAYER_NAMES),
                    help="comma-separated registered layers (default: the shipped ones; a user's layer is found "
                         "through YOLO_ATTN_IMPORTS or its entry point)")
    args = ap.parse_args(argv)
    discover()
    layers = []
    for name in (n.strip() for n in args.layers.split(",") if n.strip()):
        try:
            layers.append(find(name).name)
        except ValueError as e:
            ap.error(str(e))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"],
               "cuda": ["cuda"]}[args.device]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    stem = "quick" if args.quick else None
    out = Path(args.out or ("benchmarks/quick.md" if stem else "BENCHMARKS.md"))
    plot = Path(args.plot or f"benchmarks/{'quick-' if stem else ''}latency.png")
    js = Path(args.json or f"benchmarks/{'quick-' if stem else ''}results.json")
    if args.quick:
        cfg = dict(models=["n"], batches=[1], min_reps=2, max_reps=5, budget_s=0.3, m_min=3, m_max=5, m_budget=2.0,
                   tp_batch=1, tp_reps=0, su_reps=3, dtypes={"cpu": ["fp32"], "cuda": ["fp32", "fp16"]})
    else:
        cfg = dict(models=["n", "s"], batches=[1, 16], min_reps=5, max_reps=11, budget_s=1.5, m_min=10, m_max=40,
                   m_budget=25.0, tp_batch=8, tp_reps=3, su_reps=7,
                   dtypes={"cpu": ["fp32", "bf16"], "cuda": ["fp32", "fp16"]})
    if args.max_textbook_gb is None:
        args.max_textbook_gb = 1.0 if args.quick else 4.0
    t0 = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    layer_rows, model_rows, startup, resident = [], [], None, None
    if "layers" not in skip:
        log("layers (fast path vs textbook):")
        layer_rows = run_layers(devices, cfg["models"], cfg["batches"], ["infer", "train"], cfg["dtypes"],
                                cfg["min_reps"], cfg["max_reps"], cfg["budget_s"], args.max_textbook_gb,
                                layers=layers, log=log)
        if "cpu" in devices and "SHSA" in layers:
            resident = run_resident(cfg["min_reps"], cfg["max_reps"], cfg["budget_s"], log=log)
    if "models" not in skip:
        log("models (after-SPPF configs vs stock YOLOv8n, fused, 640):")
        model_rows = run_models(devices, 640, cfg["m_min"], cfg["m_max"], cfg["m_budget"], cfg["tp_batch"],
                                cfg["tp_reps"], log=log, layers=layers)
    if "startup" not in skip:
        log("start-up:")
        startup = run_startup(cfg["su_reps"], log=log)
    targets = evaluate_targets(layer_rows, model_rows, startup, resident)
    import ultralytics

    meta = {
        "command": "yolo-attn bench" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t0,
        "devices": devices, "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "gpu": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else
                "none available in this run — no GPU figures were taken; on a machine with CUDA the same command "
                "adds CUDA rows (fp32 and fp16 autocast)"),
        "min_reps": cfg["min_reps"], "max_reps": cfg["max_reps"], "budget_s": cfg["budget_s"],
        "max_textbook_gb": args.max_textbook_gb, "tp_batch": cfg["tp_batch"], "json": str(js),
    }
    plot_path = write_plot(plot, layer_rows) if layer_rows else None
    write_report(out, meta, layer_rows, model_rows, startup, targets, plot_path)
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps({"meta": meta, "targets": targets, "layers": [asdict(r) for r in layer_rows],
                              "models": [asdict(r) for r in model_rows], "startup": startup,
                              "shsa_p3_resident": None if resident is None else asdict(resident)}, indent=1))
    log(f"\nwrote {out}, {plot_path or '(no plot)'}, {js} in {meta['wall_s'] / 60:.1f} min")
    for t in targets:
        log(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['figures']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
