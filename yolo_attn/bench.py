"""``yolo-attn bench``: time the registered attention layers, fast path against their textbook form.

    yolo-attn bench                              # every registered layer at the YOLOv8n P3-P5 shapes, CPU, fp32
    yolo-attn bench --layers SHSA --batch 1,16   # one layer, two batch sizes
    yolo-attn bench --device cuda --dtypes fp32,fp16 --official PATH --models --compile --json out.json

Each row: one layer at one feature-map shape (the P3/P4/P5 maps of YOLOv8n, or YOLOv8s, at 640, with the arguments
the shipped configs use there), batch size, mode (*infer*: eval, no grad, fast path fused; *train*: forward + backward
of the mean) and precision (fp16/bf16: autocast). Variants, same weights, timed interleaved (fast, textbook, fast,
...) so that load drifts hit both alike: *fast*, the default forward; *textbook*, the same layer inside
``yolo_attn.layers.textbook()`` (its attention in the explicit form); *official*, the official module with the same
weights: by default as the layer's file restates it (its reference formulation, ``LayerSpec.reference``), or from a
file of official classes (``--official PATH``) through the layer's ``official_module`` declaration. Peak
memory: bytes allocated during one call beyond what existed before it (CUDA: ``torch.cuda.max_memory_allocated``;
CPU: the allocator events of ``torch.profiler``). A user's layer (``YOLO_ATTN_IMPORTS``, an entry point) is
measured like the shipped ones.

``--models``: stock YOLOv8n against each layer after SPPF (the shipped ``cfg/yolov8-<layer>.yaml``, else the layer
inserted), scale n, fused, batch-1 latency. ``--compile``: ``torch.compile`` against eager at batch 1.

Output: a plain table on stdout and, with ``--json PATH``, every figure (the samples too). The project's report
(BENCHMARKS.md: its method prose, targets and GPU section) is written by ``scripts/bench_report.py`` of the
repository, which measures with the functions of this module.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch._dynamo
import torch.nn.functional as F
from torch._dynamo.utils import counters
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .check import count_flops
from .configs import cfg_path, insert
from . import register
from .adapter import build_model
from .adapter.training import attach_loss
from .layers import fuse_layers, textbook
from .layers.registry import REGISTRY, builtin_specs, discover, find

__all__ = ["main", "LAYER_SHAPES", "LAYER_NAMES", "make_layer", "measure_layer", "run_layers", "run_models",
           "same_operators", "cpu_name", "model_configs", "fused_model", "no_grad_call", "load_official",
           "official_counterpart", "run_layers_inprocess", "run_models_inprocess", "measure_compiled",
           "compile_subjects", "run_compile", "run_gpu", "layer_table", "model_table"]

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

    if device == "cuda":
        torch.cuda.synchronize()


def peak_bytes(fn, device: str) -> int:
    """Peak bytes allocated during one call of ``fn`` beyond what was allocated before it (see module docstring)."""

    if device == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated() - base)

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
    rechecks: list = field(default_factory=list)  # speed-ups of re-runs in fresh interpreters (run_layers' ``recheck``)
    same_code: bool | None = None  # fast and textbook dispatch the same operators (:func:`same_operators`); CPU rows

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


@dataclass
class OfficialLayerRow(LayerRow):
    """A :class:`LayerRow` with the official module's figures (the GPU table; ``--device cuda``)."""

    official_s: float | None = None
    official_iqr_s: float | None = None
    official_peak: int | None = None
    official_samples: list = field(default_factory=list)
    official_note: str = ""

    @property
    def official_ratio(self) -> float | None:
        """fast time / official time (below 1: the fast path is faster)."""
        return None if self.official_s is None else self.fast_s / self.official_s


def _layer_callables(layer, x, mode: str, device: str, amp, official=None) -> list:
    """[fast, textbook] callables for one configuration, then the official module's when ``official`` is given (built
    from ``layer``'s weights by :func:`official_counterpart`; unfused, run as it is)."""


    autocast = (lambda: torch.autocast(device, dtype=amp)) if amp is not None else contextlib.nullcontext
    if mode == "infer":
        ref = layer.eval()
        fast = copy.deepcopy(layer).eval()
        fuse_layers(fast)

        def infer(module, form=contextlib.nullcontext):
            def run():
                with torch.no_grad(), autocast(), form():
                    module(x)

            return run

        return [infer(fast), infer(ref, textbook)] + ([infer(official.eval())] if official is not None else [])

    def step(module, use_textbook: bool):
        module.train()
        xg = x.clone().requires_grad_(True)

        def run():
            module.zero_grad(set_to_none=True)
            xg.grad = None
            with autocast(), textbook(use_textbook):
                y = module(xg)
            y.float().mean().backward()

        return run

    return [step(layer, False), step(layer, True)] + ([step(official, False)] if official is not None else [])


class _OperatorLog(TorchDispatchMode):
    """The operators a call dispatches, each with its outputs' shapes, strides and dtypes."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append((func.name(), [(tuple(t.shape), t.stride(), t.dtype) for t in tree_leaves(out)
                                       if isinstance(t, torch.Tensor)]))
        return out


def same_operators(name: str, c: int, side: int, batch: int, mode: str, level: str = "",
                   device: str = "cpu") -> bool | None:
    """Whether a row's *fast* and *textbook* variants (:func:`_layer_callables`) dispatch the same operators on the
    same shapes, strides and dtypes — the same code, so their speed-up measures only the timing's noise.

    So it is for a layer with no separate attention form (SE, ECA, LSKA, ... : ``textbook()`` changes nothing), and in
    training for a layer whose only fast-path change is folding BatchNorm (inference only). Traced once each with fake
    tensors of the row's shape (``FakeTensorMode``: dispatch and shapes, no data, well under a second), so the
    size-dependent choices of the dispatch are the row's. fp32, forward (and backward in training). None when the
    layer cannot run on fake tensors (a user's layer that reads a value, ``.item()``): then the row is judged as one
    whose textbook form differs. A layer that memoises tensors across calls must keep what a fake-tensor call builds
    apart from what real calls read (CGA keeps its bias index per fake mode), or later real calls get fake tensors.
    """
    torch.manual_seed(0)
    layer = make_layer(name, c, side, level).to(device)
    fake = FakeTensorMode(allow_non_fake_inputs=True)  # the layer's real weights, a fake input: fake results
    with fake:
        x = torch.randn(batch, c, side, side, device=device)
    logs = []
    for fn in _layer_callables(layer, x, mode, device, None):  # (built outside the mode: it copies the layer)
        try:
            with fake, _OperatorLog() as log:
                fn()
        except Exception:  # noqa: BLE001 - not traceable without data: unknown, not "the same"
            return None
        logs.append(log.ops)
    return logs[0] == logs[1]


def measure_layer(device: str, dtype_name: str, model: str, level: str, channels: int, side: int, name: str,
                  batch: int, mode: str, min_reps: int, max_reps: int, budget_s: float,
                  max_textbook_gb: float, official=None) -> LayerRow:
    """One row: the layer's fast path and its textbook form, peak memory then interleaved timing.

    ``official``: a namespace of official classes (:func:`load_official`); then the official module with the same
    weights is a third variant and the row an :class:`OfficialLayerRow`. It is skipped when the layer's token×token
    estimate (``textbook_bytes``) passes ``max_textbook_gb``, and so is the textbook, unless the textbook dispatches
    the fast path's operators (:func:`same_operators`, CPU rows: FLA's is linear); dropped with a note when it cannot
    be built or fails.
    """

    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    layer = make_layer(name, channels, side, level).to(device)
    x = torch.randn(batch, channels, side, side, device=device)
    est = textbook_bytes(name, channels, side, batch, mode == "train")
    same = same_operators(name, channels, side, batch, mode, level) if device == "cpu" else None
    too_big = est > max_textbook_gb * GiB
    skip_ref = too_big and not same  # a textbook form that runs the fast path's operators builds no such matrix
    counterpart, off_note = (None, "") if official is None or too_big else official_counterpart(name, layer,
                                                                                                official, device)
    fns = _layer_callables(layer, x, mode, device, amp, counterpart)
    variants = ["fast"] + ([] if skip_ref else ["textbook"]) + (["official"] if counterpart is not None else [])
    fns = [fns[["fast", "textbook", "official"].index(v)] for v in variants]
    peaks = []
    for v, f in zip(variants, fns):
        try:
            peaks.append(peak_bytes(f, device))
        except Exception as e:  # noqa: BLE001 - only the official module's failure is tolerated (not our layer's)
            if v != "official":
                raise
            off_note = f"official failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            variants.pop(), fns.pop()
            _free(device)
    t = dict(zip(variants, interleaved(fns, device, min_reps, max_reps, budget_s)))
    peak = dict(zip(variants, peaks))
    note = (f"textbook not run: its token×token matrices need ~{est / GiB:.1f} GiB "
            f"(> --max-textbook-gb {max_textbook_gb:g})") if skip_ref else ""
    row = dict(
        device=device, dtype=dtype_name, layer=name, model=f"yolov8{model}", level=level, channels=channels,
        side=side, batch=batch, mode=mode, fast_s=t["fast"].median, fast_iqr_s=t["fast"].iqr, fast_peak=peak["fast"],
        textbook_s=None if skip_ref else t["textbook"].median, textbook_iqr_s=None if skip_ref else t["textbook"].iqr,
        textbook_peak=None if skip_ref else peak["textbook"], reps=len(t["fast"].samples),
        note=note, fast_samples=t["fast"].samples, textbook_samples=[] if skip_ref else t["textbook"].samples,
        same_code=same,
    )
    if official is None:
        return LayerRow(**row)
    o = t.get("official")
    if too_big:
        row["note"] = (note.replace("textbook not run", "textbook and official not run") if skip_ref else
                       f"official not run: its token×token matrices need ~{est / GiB:.1f} GiB "
                       f"(> --max-textbook-gb {max_textbook_gb:g})")
    return OfficialLayerRow(**row, official_s=o.median if o else None, official_iqr_s=o.iqr if o else None,
                            official_peak=peak.get("official"), official_samples=o.samples if o else [],
                            official_note=off_note)


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

    discover()  # a user's layer named by YOLO_ATTN_IMPORTS (inherited from the parent)
    spec = json.loads(spec_json)
    torch.set_num_threads(spec.pop("threads"))
    print(json.dumps(asdict(measure_layer(**spec))), flush=True)


def _row_spec(device: str, dtype_name: str, model: str, level: str, name: str, batch: int, mode: str,
              timing: dict) -> dict:
    """:func:`measure_isolated`'s spec for one row; ``timing``: min_reps, max_reps, budget_s, max_textbook_gb."""

    c, side = next((c, side) for lv, c, side in LAYER_SHAPES[model] if lv == level)
    return dict(device=device, dtype_name=dtype_name, model=model, level=level, channels=c, side=side, name=name,
                batch=batch, mode=mode, threads=torch.get_num_threads(), **timing)


def _row_line(row: LayerRow) -> str:
    """One progress line: the row's figures, and its re-runs if any."""
    sp = "-" if row.speedup is None else f"{row.speedup:.2f}x"
    if row.rechecks:
        sp += " (re-runs " + ", ".join(f"{r:.2f}x" for r in row.rechecks) + ")"
    line = (f"  {row.device} {row.dtype} {row.layer:4s} {row.model[-1]} {row.level} {row.channels}@{row.side}² "
            f"b{row.batch} {row.mode:5s} fast {row.fast_s * 1e3:9.2f} ms  textbook "
            f"{'-' if row.textbook_s is None else f'{row.textbook_s * 1e3:9.2f} ms'}  speed-up {sp}")
    if isinstance(row, OfficialLayerRow):
        line += (f"  official {'-' if row.official_s is None else f'{row.official_s * 1e3:9.2f} ms'}  "
                 f"fast/official {_x(row.official_ratio)}")
    return line


def run_layers(devices: list[str], models: list[str], batches: list[int], modes: list[str], dtypes: dict,
               min_reps: int, max_reps: int, budget_s: float, max_textbook_gb: float, layers=LAYER_NAMES,
               log=print, *, levels=None, recheck=None, rechecks: int = 0) -> list[LayerRow]:
    """Every layer × shape × batch × mode × dtype on each device, each row in its own fresh interpreter.

    CPU low-precision rows only for the first model and the smallest batch (time budget). ``levels``: only these of
    P3/P4/P5. ``recheck``: a test of a row (e.g. "slower than textbook by more than the noise"); a row that passes
    it is measured ``rechecks`` more times, each in a fresh interpreter, their speed-ups kept in ``row.rechecks``.
    """
    timing = dict(min_reps=min_reps, max_reps=max_reps, budget_s=budget_s, max_textbook_gb=max_textbook_gb)
    grid = [(device, dtype_name, model, level, name, batch, mode)
            for device in devices for dtype_name in dtypes[device] for model in models
            for level, _, _ in LAYER_SHAPES[model] if levels is None or level in levels
            for name in layers for batch in batches for mode in modes
            if dtype_name == "fp32" or device != "cpu" or (batch == min(batches) and model == models[0])]
    rows = []
    for device, dtype_name, *rest in grid:
        spec = _row_spec(device, dtype_name, *rest, timing)
        row = measure_isolated(spec)
        if recheck is not None and recheck(row):  # confirm or refute afresh
            row.rechecks = [measure_isolated(spec).speedup for _ in range(rechecks)]
        rows.append(row)
        log(_row_line(row))
    return rows


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

    torch.manual_seed(0)
    m = build_model(cfg, scale="n").to(device).eval()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        m.fuse(verbose=False)
    return m


def no_grad_call(m, x, amp=None):
    """A no-argument function running ``m(x)`` without autograd (what :func:`interleaved` times); ``amp``: a dtype to
    run it under ``torch.autocast`` in."""

    autocast = (lambda: torch.autocast(x.device.type, dtype=amp)) if amp is not None else contextlib.nullcontext

    def run():
        with torch.no_grad(), autocast():
            m(x)
    return run


def run_models(devices: list[str], imgsz: int, min_reps: int, max_reps: int, budget_s: float, tp_batch: int,
               tp_reps: int, log=print, layers=LAYER_NAMES) -> list[ModelRow]:
    """Stock YOLOv8n and each after-SPPF config at scale n: fused, eval, batch 1 latency + batch throughput."""

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
# fresh interpreters
# ----------------------------------------------------------------------------------------------------------------------
def _py_last_line(code: str, env: dict, flags=(), args=()) -> str:
    """Run ``code`` in a fresh interpreter; the last line it printed (its result), or an error with its stderr."""
    proc = subprocess.run([sys.executable, *flags, "-c", code, *args], env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"benchmark child {code.strip()[:80]!r} {' '.join(args)[:200]} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return lines[-1]


# ----------------------------------------------------------------------------------------------------------------------
# figures as text
# ----------------------------------------------------------------------------------------------------------------------
def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:,.0f}"


def _mb(b) -> str:
    return "-" if b is None else f"{b / 1e6:,.1f}"


def _x(r) -> str:
    return "-" if r is None else f"{r:.2f}×"


def _pct(s, iqr) -> str:
    return "" if s is None or iqr is None or not s else f" ±{iqr / s * 50:.0f}%"


# ----------------------------------------------------------------------------------------------------------------------
# every row in this process (``--device cuda``, and the plain run). The device is a parameter throughout.
# ----------------------------------------------------------------------------------------------------------------------
GPU_CASES = ((1, "infer"), (16, "infer"), (16, "train"))
"""(batch, mode) of every GPU layer row: inference at batch 1 and 16 (fast path fused), a training step at batch 16."""
_AMP = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}

REFERENCE = "reference"
"""``--official reference`` (the default): the official modules as each layer file restates them (its reference
formulation, ``LayerSpec.reference``), with the layer's weights."""


def load_official(path):
    """What the official column is built from: :data:`REFERENCE` for the layer files' own restatements, else the
    Python file ``path`` as a module — a namespace of official classes under their official names
    (``LocalWindowAttention``, ``FocusedLinearAttention``, ``LSKA``, ``SHSA``), e.g. a file that imports them from
    the official repositories (its folder is on ``sys.path`` while it runs), from which each layer's
    ``official_module`` declaration builds."""
    if str(path) == REFERENCE:
        return REFERENCE
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"yolo_attn_official_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no Python file of official classes at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def official_counterpart(name: str, layer, official, device: str = "cpu"):
    """``(module, note)``: the official module of the registered layer ``name`` with ``layer``'s weights (B×C×H×W in
    and out, our residual included), on ``device`` — for ``official`` = :data:`REFERENCE` the layer file's
    restatement (``spec.reference``), else as the layer's ``official_module`` declaration builds it from the
    namespace ``official``; ``(None, why)`` when the layer declares none or building fails."""
    spec = REGISTRY[name]
    if official == REFERENCE:
        if spec.reference is None:
            return None, f"{name} declares no reference formulation (register_module(..., reference=...))"
        build = lambda _, layer: spec.reference(layer)  # noqa: E731
    elif spec.official_module is None:
        return None, f"{name} declares no official counterpart (register_module(..., official_module=...))"
    else:
        build = spec.official_module
    try:
        return build(official, layer).to(device), ""
    except Exception as e:  # noqa: BLE001 - a user's file of official classes may lack a class or differ
        return None, f"official {name} not built: {type(e).__name__}: {e}"[:240]


def _free(device: str) -> None:
    """Release what the last row left (its tensors are garbage by now) back to the device."""

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _warm_up(device: str) -> None:
    """On CUDA, initialise the libraries the rows use (cuBLAS and its workspace, cuDNN, the SDPA kernels) in every
    precision before the first row, so no row's peak memory or time carries their one-off set-up."""

    if device != "cuda":
        return
    x = torch.randn(2, 8, 16, 16, device=device, requires_grad=True)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1).to(device)
    for amp in (None, torch.float16, torch.bfloat16):
        with torch.autocast(device, dtype=amp or torch.float16, enabled=amp is not None):
            q = conv(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, N, C)
            y = F.scaled_dot_product_attention(q, q, q) + (q @ q.transpose(-2, -1)).mean()
        y.float().sum().backward()
    _sync(device)
    _free(device)


def layer_shapes(models=("n", "s"), levels=None) -> list[tuple[str, str, int, int]]:
    """(model, level, channels, side) of :data:`LAYER_SHAPES`, for the models (and levels) given."""
    return [(m, lv, c, side) for m in models for lv, c, side in LAYER_SHAPES[m] if levels is None or lv in levels]


def run_layers_inprocess(device: str, shapes, dtypes, layers=LAYER_NAMES, cases=GPU_CASES, official=None, *,
                         min_reps: int, max_reps: int, budget_s: float, max_textbook_gb: float,
                         log=print, on_row=None) -> list[LayerRow]:
    """Every dtype × shape (``(model, level, channels, side)``) × layer × case (``(batch, mode)``) on ``device``, each
    row by :func:`measure_layer` in this process (fast, textbook and, with the namespace ``official``, official),
    memory freed between rows; ``on_row`` is called with the rows so far after each."""
    rows = []
    for dtype_name in dtypes:
        for model, level, c, side in shapes:
            for name in layers:
                for batch, mode in cases:
                    rows.append(measure_layer(device, dtype_name, model, level, c, side, name, batch, mode, min_reps,
                                              max_reps, budget_s, max_textbook_gb, official=official))
                    _free(device)
                    log(_row_line(rows[-1]))
                    if on_row is not None:
                        on_row(rows)
    return rows


@dataclass
class DeviceModelRow:
    """One model of the GPU model table."""

    device: str
    name: str
    cfg: str
    kind: str  # "stock" | "after-sppf" | "other"
    params: int
    dtype: str  # inference: the fused model and its input cast to this dtype (.half() for fp16)
    latency_s: float
    latency_iqr_s: float
    throughput: float | None
    throughput_batch: int
    train_s: float | None
    train_iqr_s: float | None
    train_peak: int | None
    train_batch: int
    train_amp: str  # autocast dtype of the training step ("fp32": none)
    loss: str  # "ultralytics" (the model's own loss, model.loss(batch)) or "sum of output means"
    reps: int
    samples: list = field(default_factory=list)
    train_samples: list = field(default_factory=list)
    overhead: float | None = None  # latency / stock's - 1
    throughput_loss: float | None = None  # 1 - throughput / stock's
    memory_ratio: float | None = None  # training peak / stock's


def synthetic_batch(batch: int, imgsz: int, device: str, nc: int = 80, boxes: int = 4) -> dict:
    """A detection batch as Ultralytics' trainer hands it to ``model.loss``: images in [0, 1] and ``boxes`` labelled
    boxes per image (class, normalised xywh, image index), seeded."""

    g = torch.Generator().manual_seed(0)
    n = batch * boxes
    xywh = torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05], 1)
    return {"img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float().to(device), "bboxes": xywh.to(device),
            "batch_idx": torch.arange(batch).repeat_interleave(boxes).float().to(device)}


def _tensors(out):
    """The tensors in a model output (nested tuples, lists, dicts)."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return [out] if hasattr(out, "float") else []


def train_step(m, batch: dict, amp=None, own_loss: bool = True):
    """``(step, loss)``: a no-argument training step of ``m`` (train mode; forward and loss under ``torch.autocast``
    in ``amp`` when given, as Ultralytics' AMP trainer runs them, then backward; gradients reset each step, no
    optimizer step, no loss scaling) and the name of the loss: the model's own Ultralytics loss
    (``yolo_attn.adapter.training.attach_loss``, ``model.loss(batch)``) when ``own_loss`` and it can be set up, else the sum of the
    output means."""

    device = batch["img"].device.type
    autocast = (lambda: torch.autocast(device, dtype=amp)) if amp is not None else contextlib.nullcontext
    m.train()
    kind = "sum of output means"
    if own_loss:
        try:
            attach_loss(m)
            kind = "ultralytics"
        except Exception:  # noqa: BLE001 - a model without an Ultralytics loss
            pass

    def run():
        m.zero_grad(set_to_none=True)
        with autocast():
            loss = m.loss(batch)[0].sum() if kind == "ultralytics" else sum(
                t.float().mean() for t in _tensors(m(batch["img"])))
        loss.backward()

    return run, kind


def _dtype(name: str | None):

    return None if name is None else getattr(torch, name)


def run_models_inprocess(device: str, cfgs: dict, imgsz: int = 640, dtype_name: str = "fp16",
                         train_amp: str = "fp16", after_sppf=(), *, min_reps: int, max_reps: int, budget_s: float,
                         tp_batch: int = 32, tp_reps: int = 5, train_batch: int = 16, train_reps: int = 5,
                         log=print) -> list[DeviceModelRow]:
    """Each config of ``cfgs`` (label -> config; the first is the baseline, stock YOLOv8n) at scale n on ``device``:
    fused eval in ``dtype_name`` (``.to(dtype)``: ``.half()`` for fp16) latency at batch 1 (all models round-robin)
    and throughput at ``tp_batch``; then a training step at ``train_batch`` (:func:`train_step`, autocast
    ``train_amp``) with its peak memory. Ratios against the first config. ``after_sppf``: the labels that are
    after-SPPF configs (judged by the latency and throughput targets)."""

    register()
    dt = {"fp32": torch.float32, **{k: _dtype(v) for k, v in _AMP.items() if v}}[dtype_name]
    models = {label: fused_model(cfg, device).to(dt) for label, cfg in cfgs.items()}
    params = {label: sum(p.numel() for p in m.parameters()) for label, m in models.items()}
    x1 = torch.zeros(1, 3, imgsz, imgsz, device=device, dtype=dt)
    lat = interleaved([no_grad_call(m, x1) for m in models.values()], device, min_reps, max_reps, budget_s)
    tps = [None] * len(models)
    if tp_batch > 1 and tp_reps > 0:
        xb = torch.zeros(tp_batch, 3, imgsz, imgsz, device=device, dtype=dt)
        tps = [tp_batch / t.median for t in interleaved([no_grad_call(m, xb) for m in models.values()], device,
                                                         tp_reps, tp_reps, 0)]
        del xb
    del models, x1
    _free(device)
    train, peaks, kinds = [None] * len(cfgs), [None] * len(cfgs), ["-"] * len(cfgs)
    if train_batch > 0 and train_reps > 0:
        steps, nets = [], []
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            for cfg in cfgs.values():
                torch.manual_seed(0)
                nets.append(build_model(cfg, scale="n").to(device))
        batch = synthetic_batch(train_batch, imgsz, device, nc=nets[0].model[-1].nc)
        for i, m in enumerate(nets):  # the first call measures the peak (and warms up): no gradients exist yet
            step, kinds[i] = train_step(m, batch, _dtype(_AMP[train_amp]))
            try:
                peaks[i] = peak_bytes(step, device)
            except Exception:  # noqa: BLE001 - Ultralytics' loss did not run on this model: the fallback loss
                step, kinds[i] = train_step(m, batch, _dtype(_AMP[train_amp]), own_loss=False)
                peaks[i] = peak_bytes(step, device)
            steps.append(step)
        train = interleaved(steps, device, train_reps, train_reps, 0)
        del steps, nets, batch
        _free(device)
    rows = []
    for i, (label, cfg) in enumerate(cfgs.items()):
        t, tt = lat[i], train[i]
        rows.append(DeviceModelRow(
            device=device, name=label, cfg=cfg if isinstance(cfg, str) else "yolov8.yaml + layer (yolo-attn insert)",
            kind="stock" if i == 0 else "after-sppf" if label in after_sppf else "other", params=params[label],
            dtype=dtype_name, latency_s=t.median, latency_iqr_s=t.iqr, throughput=tps[i], throughput_batch=tp_batch,
            train_s=tt.median if tt else None, train_iqr_s=tt.iqr if tt else None, train_peak=peaks[i],
            train_batch=train_batch,
            train_amp=train_amp, loss=kinds[i], reps=len(t.samples), samples=t.samples,
            train_samples=tt.samples if tt else [], overhead=t.median / lat[0].median - 1,
            throughput_loss=None if tps[i] is None else 1 - tps[i] / tps[0],
            memory_ratio=None if peaks[i] is None or not peaks[0] else peaks[i] / peaks[0]))
        r = rows[-1]
        log(f"  {device} {label:20s} {r.latency_s * 1e3:8.2f} ms ({r.overhead * 100:+.1f}%)  "
            f"{'-' if r.throughput is None else f'{r.throughput:.0f}'} img/s  train "
            f"{'-' if r.train_s is None else f'{r.train_s * 1e3:.1f} ms'} peak {_mb(r.train_peak)} MB ({r.loss})")
    return rows


def _compile_counts() -> tuple[int, int, int]:
    """Dynamo's compiled frames, its graphs and inductor's CUDA-graph skips so far (``torch._dynamo.utils.counters``,
    which ``torch._dynamo.reset()`` does not clear: compare differences)."""

    return (counters["frames"]["total"], counters["stats"]["unique_graphs"],
            counters["inductor"]["cudagraph_skips"])


def measure_compiled(module, x, device: str, modes=("default", "reduce-overhead"), amp=None, *, min_reps: int,
                     max_reps: int, budget_s: float, warmup: int = 3, backend: str = "inductor") -> dict:
    """mode -> figures: eager ``module(x)`` against ``torch.compile(module, mode=mode)``, inference (no grad; ``amp``:
    autocast dtype).

    Per mode: Dynamo reset, the first call (compiles; ``compile_s``), ``warmup`` more calls (reduce-overhead records
    its CUDA graphs in the first calls), then eager and compiled timed round-robin (:func:`interleaved`).
    ``recompiles``: frames Dynamo compiled after the warm-up, while the same fixed-shape input was timed (0: the graph
    was reused); ``graphs``: graphs compiled up to the warm-up; ``cudagraph_skips``: graphs inductor left out of CUDA
    graphs. A ``backend`` other than inductor (the tests: ``"eager"``) ignores the mode.
    """

    eager = no_grad_call(module, x, amp)
    out = {}
    for mode in modes:
        torch._dynamo.reset()
        start = _compile_counts()
        compiled = torch.compile(module, mode=mode) if backend == "inductor" else torch.compile(module,
                                                                                                  backend=backend)
        call = no_grad_call(compiled, x, amp)
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            call()
        warm = _compile_counts()
        e, c = interleaved([eager, call], device, min_reps, max_reps, budget_s)
        end = _compile_counts()
        out[mode] = {"compile_s": compile_s, "eager_s": e.median, "eager_iqr_s": e.iqr, "s": c.median,
                     "iqr_s": c.iqr, "reps": len(c.samples), "recompiles": end[0] - warm[0],
                     "graphs": warm[1] - start[1], "cudagraph_skips": end[2] - start[2],
                     "eager_samples": e.samples, "samples": c.samples}
        del compiled, call
    torch._dynamo.reset()
    return out


def compile_subjects(device: str = "cpu", layers=LAYER_NAMES, shapes=None, cfgs=None, fuse: bool = False,
                     model_dtype=None, imgsz: int = 640) -> list[tuple[str, str, object]]:
    """``(label, kind, build)`` for the torch.compile rows: each layer at ``shapes`` (default the YOLOv8n P3-P5
    shapes; batch 1, eval; ``fuse``: BatchNorm folded as for inference), then each config of ``cfgs`` (default
    :func:`model_configs`: stock and after-SPPF) at ``imgsz``, fused, in ``model_dtype``. ``build()`` makes
    ``(module, input)`` on ``device`` when called, so one row's module is alive at a time."""


    def layer(name, level, c, side):
        def build():
            torch.manual_seed(0)
            m = make_layer(name, c, side, level).to(device).eval()
            if fuse:
                fuse_layers(m)
            return m, torch.randn(1, c, side, side, device=device)
        return build

    def model(cfg):
        def build():
            m = fused_model(cfg, device)
            return (m, torch.zeros(1, 3, imgsz, imgsz, device=device)) if model_dtype is None else (
                m.to(model_dtype), torch.zeros(1, 3, imgsz, imgsz, device=device, dtype=model_dtype))
        return build

    out = [(f"{name} {level} ({c}×{side}×{side})", "layer", layer(name, level, c, side))
           for name in layers for _, level, c, side in (layer_shapes(["n"]) if shapes is None else shapes)]
    return out + [(f"{label} {imgsz} (fused)", "model", model(cfg))
                  for label, cfg in (model_configs(layers) if cfgs is None else cfgs).items()]


def run_compile(device: str, subjects, amp=None, *, min_reps: int, max_reps: int, budget_s: float,
                backend: str = "inductor", log=print) -> list[dict]:
    """:func:`measure_compiled` (default and reduce-overhead) for each of :func:`compile_subjects`; layers under
    autocast ``amp`` (models come in their own dtype). ``backend``: see :func:`measure_compiled`."""
    rows = []
    for label, kind, build in subjects:
        module, x = build()
        modes = measure_compiled(module, x, device, amp=amp if kind == "layer" else None, min_reps=min_reps,
                                 max_reps=max_reps, budget_s=budget_s, backend=backend)
        rows.append({"what": label, "kind": kind, "modes": modes})
        del module, x
        _free(device)
        log(f"  {label:32s} " + "  ".join(
            f"{mode} {r['s'] * 1e3:.2f} ms vs eager {r['eager_s'] * 1e3:.2f} ms, {r['recompiles']} recompiles, "
            f"compile {r['compile_s']:.0f} s" for mode, r in modes.items()))
    return rows


def _driver() -> str | None:
    """The NVIDIA driver version (NVML, else nvidia-smi), or None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 - no NVML
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_gpu(device: str, layers, run: dict, skip=(), official_path=None, max_textbook_gb: float = 40.0,
            dtypes=None, command: str = "", log=print, *, on_part=None, shapes=None, compile_shapes=None,
            imgsz: int = 640, backend: str = "inductor") -> dict:
    """The GPU benchmark in this process: layers (fast, textbook, official), models, torch.compile; returns what
    ``scripts/bench_report.py`` renders (and stores as ``benchmarks/gpu_results.json``). ``run``: timing and grid
    (``scripts/bench_report.py``'s ``GPU_RUNS``: models, dtypes, min_reps, max_reps, budget_s, m_*, tp_*, train_*,
    c_*). ``on_part``:
    called with the figures so far after each part (a run stopped later keeps them). ``shapes``, ``compile_shapes``
    (``(model, level, channels, side)``), ``imgsz`` and ``backend`` (see :func:`measure_compiled`) replace the
    defaults for a small run (the tests run it on CPU)."""

    import ultralytics

    t0 = time.perf_counter()
    wall = {}
    official = load_official(official_path) if official_path else None
    cuda = device == "cuda" and torch.cuda.is_available()
    data = {"meta": {
        "command": command, "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "wall_s": 0.0,
        "wall_parts_s": wall, "device_type": device,
        "device": torch.cuda.get_device_name(0) if cuda else f"{cpu_name()} (CPU)",
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "driver": _driver() if cuda else None, "ultralytics": ultralytics.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "official": None if official_path is None else str(official_path), "max_textbook_gb": max_textbook_gb,
        "imgsz": imgsz, "compile_backend": backend,
        "timing": {k: v for k, v in run.items() if k not in ("models", "dtypes")},
    }, "layers": [], "models": [], "compile": []}

    def done(part: str, rows: list, since: float) -> None:
        data[part] = rows
        wall[part] = time.perf_counter() - since
        data["meta"]["wall_s"] = time.perf_counter() - t0
        if on_part is not None:
            on_part(data)

    _warm_up(device)
    if "layers" not in skip:
        log("layers (fast path vs textbook vs official, in this process):")
        t = saved = time.perf_counter()

        def partial(rows: list) -> None:  # the rows so far, every 20 s: a run stopped by a time limit keeps them
            nonlocal saved
            if time.perf_counter() - saved > 20:
                done("layers", [asdict(r) for r in rows], t)
                saved = time.perf_counter()

        rows = run_layers_inprocess(device, shapes or layer_shapes(run["models"]), dtypes or run["dtypes"], layers,
                                    official=official, min_reps=run["min_reps"], max_reps=run["max_reps"],
                                    budget_s=run["budget_s"], max_textbook_gb=max_textbook_gb, log=log,
                                    on_row=partial)
        done("layers", [asdict(r) for r in rows], t)
    if "models" not in skip:
        log(f"models (stock YOLOv8n, after-SPPF configs, yolov8n-shsa-neck; {imgsz}):")
        t = time.perf_counter()
        sppf = model_configs(layers)
        cfgs = {**sppf, **({"yolov8n-shsa-neck": str(cfg_path("yolov8-shsa-neck.yaml"))} if "SHSA" in layers
                           else {})}
        rows = run_models_inprocess(device, cfgs, imgsz, "fp16" if device == "cuda" else "fp32",
                                    "fp16" if device == "cuda" else "fp32", after_sppf=list(sppf)[1:],
                                    min_reps=run["m_min"], max_reps=run["m_max"], budget_s=run["m_budget"],
                                    tp_batch=run["tp_batch"], tp_reps=run["tp_reps"], train_batch=run["train_batch"],
                                    train_reps=run["train_reps"], log=log)
        done("models", [asdict(r) for r in rows], t)
    if "compile" not in skip:
        log("torch.compile (default, reduce-overhead) against eager, batch 1:")
        t = time.perf_counter()
        cfgs = model_configs(layers)
        if run["c_models"] is not None:
            cfgs = dict(list(cfgs.items())[:run["c_models"]])
        half = torch.float16 if device == "cuda" else None
        subjects = compile_subjects(device, layers, compile_shapes or layer_shapes(["n"], run["c_levels"]), cfgs,
                                    fuse=True, model_dtype=half, imgsz=imgsz)
        rows = []
        for subject in subjects:  # the figures so far after each row: compiling is the long part
            rows += run_compile(device, [subject], amp=half, min_reps=run["c_min"], max_reps=run["c_max"],
                                budget_s=run["c_budget"], backend=backend, log=log)
            done("compile", rows, t)
    data["meta"]["wall_s"] = time.perf_counter() - t0
    return data


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




def layer_table(rows: list[LayerRow]) -> str:
    """The layer rows as a plain fixed-width table (times in ms, peaks in MB = 10⁶ bytes; speed-up: textbook time /
    fast time, ``=`` where both run the same code; fast/official below 1: the fast path is faster)."""
    official = any(isinstance(r, OfficialLayerRow) for r in rows)
    head = ["layer", "shape", "batch", "mode", "dtype", "fast ms", "textbook ms", "speed-up", "fast MB", "textbook MB"]
    head += ["official ms", "fast/official", "official MB"] if official else []
    table = [head]
    for r in rows:
        cells = [r.layer, f"{r.model} {r.level} {r.channels}@{r.side}x{r.side}", str(r.batch), r.mode, r.dtype,
                 _ms(r.fast_s), _ms(r.textbook_s), _x(r.speedup).replace("×", "x") + ("=" if r.same_code else ""),
                 _mb(r.fast_peak),
                 _mb(r.textbook_peak)]
        if official:
            o = r if isinstance(r, OfficialLayerRow) else None
            cells += [_ms(o and o.official_s), _x(o and o.official_ratio).replace("×", "x"), _mb(o and o.official_peak)]
        table.append(cells)
    notes = sorted({n for r in rows for n in (r.note, getattr(r, "official_note", "")) if n})
    if any(r.same_code for r in rows):
        notes.append("'=' after a speed-up: fast and textbook run the same operators (no separate textbook form "
                     "here): that speed-up is the timing's noise")
    return _plain(table) + "".join(f"\n  note: {n}" for n in notes)


def model_table(rows: list[ModelRow]) -> str:
    """The model rows as a plain fixed-width table (overhead: latency against the first row's, stock YOLOv8n)."""
    table = [["model", "params", "GFLOPs", "latency ms", "overhead"]]
    table += [[r.name, f"{r.params:,}", f"{r.gflops:.2f}", _ms(r.latency_s), f"{r.overhead * 100:+.1f}%"]
              for r in rows]
    return _plain(table)


def _plain(table: list[list[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip() for row in table)


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="yolo-attn bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Time the registered attention layers (a user's layer included): fast path against the textbook "
                    "form (and the official module, given --official), with peak memory; print a plain table.",
        epilog="Example: yolo-attn bench --layers SHSA,CGA --batch 1,16 --json bench.json\n"
               "The project's BENCHMARKS.md is written by scripts/bench_report.py of the repository.")
    ap.add_argument("--layers", default=None, help="comma-separated registered layers or aliases (default: every "
                                                   "registered layer, a user's layer found through YOLO_ATTN_IMPORTS "
                                                   "or its entry point included)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    ap.add_argument("--sizes", default="n", help="YOLOv8 scales whose P3/P4/P5 shapes at 640 are measured: n "
                                                 "(64@80x80, 128@40x40, 256@20x20), s (twice the channels) or n,s "
                                                 "(default n)")
    ap.add_argument("--levels", default="P3,P4,P5", help="feature maps to measure (default P3,P4,P5)")
    ap.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    ap.add_argument("--modes", default="infer,train", help="infer (eval, no grad, fast path fused) and/or train "
                                                          "(forward + backward) (default infer,train)")
    ap.add_argument("--dtypes", default="fp32", help="comma-separated precisions of fp32, fp16, bf16 (fp16/bf16: "
                                                     "autocast; default fp32)")
    ap.add_argument("--official", default=None, metavar="PATH",
                    help="what the official column runs: 'reference' (default), the official modules as each layer "
                         "file restates them, with the layer's weights; a Python file defining the official classes "
                         "(LocalWindowAttention, FocusedLinearAttention, LSKA, SHSA), e.g. imported from the official "
                         "repositories; 'none': leave the column out")
    ap.add_argument("--isolate", action="store_true", help="CPU: measure every row in a fresh interpreter, so that "
                                                           "no row inherits the allocator state of the rows before "
                                                           "it (slower; no official column)")
    ap.add_argument("--models", action="store_true", help="also time stock YOLOv8n against each layer inserted after "
                                                          "SPPF (scale n, fused, batch 1, --imgsz)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile against eager (batch 1; the "
                                                           "layers, and the models with --models)")
    ap.add_argument("--imgsz", type=int, default=640, help="model input size for --models and --compile (default 640)")
    ap.add_argument("--reps", default="3,20", metavar="MIN,MAX", help="timing rounds per row: at least MIN, at most "
                                                                      "MAX (default 3,20)")
    ap.add_argument("--budget", type=float, default=1.0, metavar="S", help="stop timing a row after S seconds once "
                                                                          "MIN rounds are done (default 1)")
    ap.add_argument("--max-textbook-gb", type=float, default=4.0, metavar="GB",
                    help="skip the textbook (and official) variant where its token x token matrices need more "
                         "(default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write every figure (samples included) to "
                                                                 "this JSON file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``yolo-attn bench``; returns the exit code."""
    ap = _parser()
    args = ap.parse_args(argv)
    discover()
    layers = []
    for name in _csv(args.layers) if args.layers else list(REGISTRY):
        try:
            layers.append(find(name).name)
        except ValueError as e:
            ap.error(str(e))
    sizes, levels, modes, dtypes = _csv(args.sizes), _csv(args.levels), _csv(args.modes), _csv(args.dtypes)
    for what, got, allowed in (("--sizes", sizes, LAYER_SHAPES), ("--levels", levels, ("P3", "P4", "P5")),
                               ("--modes", modes, ("infer", "train")), ("--dtypes", dtypes, _AMP)):
        if not got or set(got) - set(allowed):
            ap.error(f"{what}: choose from {', '.join(allowed)}")
    try:
        batches = [int(b) for b in _csv(args.batch)]
        min_reps, max_reps = (int(n) for n in args.reps.split(","))
    except ValueError:
        ap.error("--batch: integers; --reps: MIN,MAX")


    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    official_path = args.official or REFERENCE
    if str(official_path).lower() == "none":
        official_path = None
    timing = dict(min_reps=min_reps, max_reps=max_reps, budget_s=args.budget)
    t0 = time.perf_counter()
    if args.isolate and args.device == "cpu":
        rows = run_layers(["cpu"], sizes, batches, modes, {"cpu": dtypes}, max_textbook_gb=args.max_textbook_gb,
                          layers=layers, levels=levels, log=lambda s: None, **timing)
    else:
        official = load_official(official_path) if official_path else None
        _warm_up(args.device)
        shapes = [s for s in layer_shapes(sizes) if s[1] in levels]
        cases = [(b, m) for b in batches for m in modes]
        rows = run_layers_inprocess(args.device, shapes, dtypes, layers, cases, official,
                                    max_textbook_gb=args.max_textbook_gb, log=lambda s: None, **timing)
    print(layer_table(rows), flush=True)
    models, compiled = [], []
    if args.models:
        models = run_models([args.device], args.imgsz, tp_batch=1, tp_reps=0, layers=layers, log=lambda s: None,
                            **timing)
        print("\n" + model_table(models), flush=True)
    if args.compile:
        cfgs = model_configs(layers) if args.models else {}
        subjects = compile_subjects(args.device, layers, [s for s in layer_shapes(sizes) if s[1] in levels], cfgs,
                                    fuse=True, imgsz=args.imgsz)
        compiled = run_compile(args.device, subjects, log=lambda s: None, **timing)
        print("\ntorch.compile against eager (batch 1, inference):")
        print(_plain([["what", *(f"{m} ms" for m in ("eager", "default", "reduce-overhead")), "recompiles"]] + [
            [r["what"], _ms(r["modes"]["default"]["eager_s"]), _ms(r["modes"]["default"]["s"]),
             _ms(r["modes"]["reduce-overhead"]["s"]), str(sum(f["recompiles"] for f in r["modes"].values()))]
            for r in compiled]), flush=True)
    if args.json:
        import ultralytics

        meta = {"command": "yolo-attn bench " + " ".join(sys.argv[1:] if argv is None else argv),
                "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t0,
                "device": torch.cuda.get_device_name(0) if args.device == "cuda" else f"{cpu_name()} (CPU)",
                "threads": torch.get_num_threads(), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
                "python": platform.python_version(), "official": None if official_path is None else str(official_path),
                "isolated": bool(args.isolate and args.device == "cpu"), **timing}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "layers": [asdict(r) for r in rows],
                                    "models": [asdict(r) for r in models], "compile": compiled}, indent=1))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
