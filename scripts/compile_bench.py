"""torch.compile (inductor) against eager: each layer at the YOLOv8n P3-P5 shapes and each after-SPPF model.

Usage: python scripts/compile_bench.py [--threads N] [--reps N] [--from-json]
Writes the "torch.compile" section of BENCHMARKS.md (replacing the one there) and benchmarks/compile_results.json
(``--from-json``: rewrite the section from that file, measuring nothing).
Inference, batch 1, fp32, eval, fused models at 640; the compiled and eager callables are timed round-robin
(``yolo_attn.bench.interleaved``) after the compile (whose time is reported separately).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from markers import replace_between
from yolo_attn.bench import (LAYER_NAMES, LAYER_SHAPES, cpu_name, fused_model, interleaved, make_layer, model_configs,
                             no_grad_call)

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- compile-section -->", "<!-- /compile-section -->"


def time_pair(module: torch.nn.Module, x: torch.Tensor, reps: int, budget: float) -> dict:
    torch._dynamo.reset()
    compiled = torch.compile(module)
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled(x)  # compile
    compile_s = time.perf_counter() - t0

    eager, comp = interleaved([no_grad_call(module, x), no_grad_call(compiled, x)], "cpu", reps, reps * 4, budget)
    return {"eager_ms": eager.median * 1e3, "compiled_ms": comp.median * 1e3, "compile_s": compile_s,
            "eager_iqr_ms": eager.iqr * 1e3, "compiled_iqr_ms": comp.iqr * 1e3, "reps": len(eager.samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per row after --reps rounds")
    parser.add_argument("--from-json", action="store_true", help="rewrite the section from the recorded results")
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "compile_results.json"
    if args.from_json:
        recorded = json.loads(results.read_text())
        meta, rows = recorded["meta"], recorded["rows"]
    else:
        meta, rows = measure(args)
        results.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    write_section(meta, rows)
    return 0


def measure(args) -> tuple[dict, list[dict]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in LAYER_NAMES:
        for level, c, side in LAYER_SHAPES["n"]:
            torch.manual_seed(0)
            layer = make_layer(name, c, side, level).eval()
            r = time_pair(layer, torch.randn(1, c, side, side), args.reps, args.budget)
            rows.append({"what": f"{name} {level} ({c}×{side}×{side})", **r})
            print(rows[-1], flush=True)
    for label, cfg in model_configs().items():
        r = time_pair(fused_model(cfg), torch.zeros(1, 3, 640, 640), args.reps, args.budget)
        rows.append({"what": f"{label} 640 (fused)", **r})
        print(rows[-1], flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "load_average": os.getloadavg()}
    return meta, rows


def summary(rows: list[dict], models: bool) -> str:
    ratios = [r["eager_ms"] / r["compiled_ms"] for r in rows if ("640" in r["what"]) == models]
    return f"{min(ratios):.2f}–{max(ratios):.2f}×"


def write_section(meta: dict, rows: list[dict]) -> None:
    load = meta.get("load_average")
    load = f"{load[0]:.1f} at the end of the run" if load else "not recorded; 6-10 around the run"
    lines = [
        "## torch.compile (inductor) against eager",
        "",
        f"`python scripts/compile_bench.py`: CPU, fp32, batch 1, inference (eval, no grad), `torch.compile(m)` with "
        f"default settings (inductor); torch {meta['torch']}, {meta['threads']} thread(s) on {meta['cores']} cores. "
        "Median (± interquartile range) of interleaved rounds after the first (compiling) call; compile time is "
        "that first call (inductor's on-disk cache was warm for the layers from an earlier run). "
        f"**Caveat**: the 2 cores were shared with other jobs (load average {load}), so single figures are noisy (see the spreads); the eager and compiled calls alternate, so "
        "their ratio is the robust figure. Re-run on an idle machine for absolute latencies. On a loaded machine "
        "use `--threads 1`: with 2 threads, OpenMP regions wait for a descheduled thread (FLA at P5 took "
        "200-400 ms eager instead of ~3 ms in such a run).",
        "",
        f"Summary: compiled layers run {summary(rows, False)} the eager speed; whole models "
        f"{summary(rows, True)} (the attention layer is a small part of YOLOv8n's time, and inductor gains little on "
        "its plain convolutions).",
        "",
        "| layer / model | eager ms | compiled ms | speed-up | compile s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['what']} | {r['eager_ms']:.2f} ± {r['eager_iqr_ms']:.1f} | {r['compiled_ms']:.2f} ± "
                     f"{r['compiled_iqr_ms']:.1f} | {r['eager_ms'] / r['compiled_ms']:.2f}× | {r['compile_s']:.0f} |")
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    if START in text:
        text = replace_between(text, START, END, "\n".join(lines), where=str(path))
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join([START, *lines, END]) + "\n"
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
