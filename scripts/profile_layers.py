"""Where each layer's time goes: ``torch.profiler`` per forward, eager and compiled, at the YOLOv8n P3-P5 shapes.

Usage:
    python scripts/profile_layers.py                          # CPU, fp32, batch 1 and 16, eager
    python scripts/profile_layers.py --device cuda --dtypes fp32,fp16 --compile  # on a GPU: + CUDA kernels, compiled
    python scripts/profile_layers.py --device fake-cuda --dtypes fp32,fp16 --batches 1 --write  # no GPU: CUDA path ops

Per layer, shape, batch and mode (inference: eval, no_grad, fused as ``yolo predict`` runs it), for one forward
(median of ``--reps`` profiled calls after a warm-up):

* ``ops``: aten operators that reach the kernels (counted by a ``TorchDispatchMode``: after autocast and composite
  decomposition, views left out): on CUDA about one kernel launch each, so at batch 1, where the layers are
  launch-bound, the count that matters;
* ``copies``: of which copies (dtype casts under autocast, ``.contiguous()`` layouts, clones, pads);
* ``kernels``: device kernels launched (CUDA only) and ``gpu_ms`` their summed time, against ``cpu_ms``, the host
  time of the forward: host-bound when ``cpu_ms`` ≫ ``gpu_ms``;
* ``top``: the three operators with the most self device time (CPU: self CPU time);
* compiled (``--compile``): the same through ``torch.compile`` (default mode), plus the graphs Dynamo captured and
  the recompiles after warm-up at this fixed shape (both from ``torch._dynamo.utils.counters``).

Writes a markdown table to stdout, with ``--write`` into BENCHMARKS.md (between ``<!-- profile-section -->``
markers; ``yolo-attn bench`` keeps that section), and with ``--json`` the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from bench_report import PROFILE_SECTION, write_section
from yolo_attn.bench import LAYER_NAMES, LAYER_SHAPES, cpu_name, make_layer
from yolo_attn.layers import fuse_layers

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
ROOT = Path(__file__).resolve().parents[1]
COPIES = {"_to_copy", "copy_", "clone", "constant_pad_nd"}


class OpCount(TorchDispatchMode):
    """Operators that reach the kernels (after autocast and composite decomposition), views left out."""

    def __init__(self):
        super().__init__()
        self.ops, self.copies, self.paused = 0, 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "aten" and not func.is_view and not self.paused:
            self.ops += 1
            self.copies += func.overloadpacket.__name__ in COPIES
        return func(*args, **(kwargs or {}))


def forward_fn(layer: torch.nn.Module, x: torch.Tensor, device: str, amp):
    def run():
        with torch.no_grad(), torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
            layer(x)
    return run


def profile_once(fn, device: str) -> dict:
    """One profiled call of ``fn``: operator and kernel counts, host and device time, top operators."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    if device == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    top_level = [e for e in events if e.name.startswith("aten::") and e.cpu_parent is None]
    ops = [e for e in events if e.name.startswith("aten::")]
    kernels = [e for e in events if getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA") and not e.name.startswith(("aten::", "cuda"))]
    by_self = {}
    for e in ops:
        key = e.name
        t = getattr(e, "self_device_time_total", 0) if device == "cuda" else e.self_cpu_time_total
        by_self[key] = by_self.get(key, 0) + t
    top = sorted(by_self.items(), key=lambda kv: -kv[1])[:3]
    wall = max((e.time_range.end for e in top_level), default=0) - min((e.time_range.start for e in top_level),
                                                                          default=0)
    with OpCount() as count:
        fn()
    return {"ops": count.ops, "copies": count.copies, "kernels": len(kernels),
            "gpu_ms": sum(k.device_time_total for k in kernels) / 1e3 if kernels else 0.0, "cpu_ms": wall / 1e3,
            "top": [name.removeprefix("aten::") for name, _ in top]}


def fake_cuda_counts(name: str, channels: int, side: int, batch: int, dtype: str) -> dict:
    """The CUDA code path without a GPU: the layer and input as fake CUDA tensors (``FakeTensorMode``: shapes,
    dtypes and dispatch, no data), the operators counted. Autocast needs a real GPU, so half precision is the cast
    model (``.half()``, as ``yolo predict half=True`` runs it)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    torch.manual_seed(0)
    layer = make_layer(name, channels, side).eval()
    fuse_layers(layer)
    dt = DTYPES[dtype] or torch.float32
    count = OpCount()
    sdpa = F.scaled_dot_product_attention

    def one_fused_kernel(*args, **kwargs):  # fake tensors cannot pick a fused kernel: count the call as one launch
        count.ops, count.paused = count.ops + 1, True  # (tests/test_cuda.py checks that a fused kernel runs)
        try:
            return sdpa(*args, **kwargs)
        finally:
            count.paused = False

    with FakeTensorMode(allow_non_fake_inputs=True), mock.patch.object(F, "scaled_dot_product_attention",
                                                                         one_fused_kernel):
        layer = layer.to("cuda", dt)
        x = torch.randn(batch, channels, side, side, device="cuda", dtype=dt)
        with torch.no_grad():
            layer(x)  # warm-up: per-size caches filled
            count.ops = count.copies = 0  # (the warm-up's SDPA calls went through one_fused_kernel too)
            with count:
                layer(x)
    return {"layer": name, "channels": channels, "side": side, "batch": batch, "device": "fake-cuda", "dtype": dtype,
            "mode": "eager", "ops": count.ops, "copies": count.copies, "kernels": 0, "gpu_ms": 0.0, "cpu_ms": 0.0,
            "top": []}


def measure(name: str, channels: int, side: int, batch: int, device: str, dtype: str, compiled: bool,
            reps: int) -> dict:
    if device == "fake-cuda":
        return fake_cuda_counts(name, channels, side, batch, dtype)
    torch.manual_seed(0)
    layer = make_layer(name, channels, side).to(device).eval()
    fuse_layers(layer)
    counters = None
    if compiled:
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
        layer = torch.compile(copy.deepcopy(layer))
    x = torch.randn(batch, channels, side, side, device=device)
    fn = forward_fn(layer, x, device, DTYPES[dtype])
    fn()
    fn()  # warm-up (compiled: compile, then the first cached call)
    after_warmup = sum(counters["recompiles"].values()) if counters is not None else 0
    runs = [profile_once(fn, device) for _ in range(reps)]
    row = {k: statistics.median(r[k] for r in runs) for k in ("ops", "copies", "kernels", "gpu_ms", "cpu_ms")}
    row.update(layer=name, channels=channels, side=side, batch=batch, device=device, dtype=dtype,
               mode="compiled" if compiled else "eager", top=runs[-1]["top"])
    if counters is not None:
        row["graphs"] = counters["stats"].get("unique_graphs", 0)
        row["recompiles_after_warmup"] = sum(counters["recompiles"].values()) - after_warmup
    return row


def table(rows: list[dict]) -> str:
    compiled = any(r["mode"] == "compiled" for r in rows)
    fake = all(r["device"] == "fake-cuda" for r in rows)
    head = "| layer | shape | batch | dtype | mode | ops | copies |"
    sep = "|---|---|---:|---|---|---:|---:|"
    if not fake:
        head, sep = head + " kernels | host ms | device ms | top (self time) |", sep + "---:|---:|---:|---|"
    if compiled:
        head, sep = head + " graphs | recompiles |", sep + "---:|---:|"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['layer']} | {r['channels']}@{r['side']}² | {r['batch']} | {r['dtype']} | {r['mode']} | "
                f"{r['ops']:.0f} | {r['copies']:.0f} |")
        if not fake:
            line += f" {r['kernels']:.0f} | {r['cpu_ms']:.2f} | {r['gpu_ms']:.2f} | {', '.join(r['top'])} |"
        if compiled:
            line += f" {r.get('graphs', '-')} | {r.get('recompiles_after_warmup', '-')} |"
        lines.append(line)
    return "\n".join(lines)


def section(rows: list[dict], device: str, command: str) -> str:
    """The profile section of BENCHMARKS.md."""
    where = {"fake-cuda": "the CUDA code path traced with fake CUDA tensors (no GPU: operator counts only; half "
                          "precision is the `.half()` model, SDPA counted as one fused kernel)",
             "cuda": f"CUDA ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else '?'})",
             "cpu": f"CPU ({cpu_name()})"}[device]
    return "\n".join([
        "## Profile: operators per forward", "",
        f"Generated by `{command}`: {where}; torch {torch.__version__}; YOLOv8n P3–P5 shapes, inference, fused. "
        "*ops*: aten operators that launch kernels (views left out; on CUDA about one launch each, the cost at "
        "batch 1, where the layers are launch-bound); *copies*: of which copies (casts, transposed layouts, pads). "
        "What each layer's docstring says about its GPU path comes from this table and from a CUDA profile.", "",
        table(rows), ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "fake-cuda"],
                    help="fake-cuda: operator counts of the CUDA code path with fake tensors, no GPU needed")
    ap.add_argument("--dtypes", default="fp32", help=f"comma-separated, of {', '.join(DTYPES)}")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--layers", default=",".join(LAYER_NAMES))
    ap.add_argument("--compile", action="store_true", help="also profile torch.compile(layer) (default mode)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md (its profile section)")
    args = ap.parse_args(argv)
    rows = []
    for dtype in args.dtypes.split(","):
        for name in args.layers.split(","):
            for level, c, side in LAYER_SHAPES["n"]:
                for batch in (int(b) for b in args.batches.split(",")):
                    for compiled in (False, True) if args.compile else (False,):
                        rows.append(measure(name, c, side, batch, args.device, dtype, compiled, args.reps))
                        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    command = "python scripts/profile_layers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = section(rows, args.device, command.strip())
    print(text)
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", text, PROFILE_SECTION)
    if args.json:
        with contextlib.suppress(OSError), open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
