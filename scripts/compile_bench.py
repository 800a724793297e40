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
from pathlib import Path

import torch

from bench_report import COMPILE_SECTION
from bench_report import write_section as write_between_markers
from yolo_attn.bench import compile_subjects, cpu_name, measure_compiled

ROOT = Path(__file__).resolve().parents[1]


def time_pair(module: torch.nn.Module, x: torch.Tensor, reps: int, budget: float) -> dict:
    """Eager against ``torch.compile(module)`` (default mode) on CPU: ``yolo_attn.bench.measure_compiled``."""
    r = measure_compiled(module, x, "cpu", modes=("default",), min_reps=reps, max_reps=reps * 4,
                         budget_s=budget)["default"]
    return {"eager_ms": r["eager_s"] * 1e3, "compiled_ms": r["s"] * 1e3, "compile_s": r["compile_s"],
            "eager_iqr_ms": r["eager_iqr_s"] * 1e3, "compiled_iqr_ms": r["iqr_s"] * 1e3, "reps": r["reps"]}


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
    for label, _, build in compile_subjects():  # layers at the YOLOv8n shapes (unfused), then the models, fused
        r = time_pair(*build(), args.reps, args.budget)
        rows.append({"what": label, **r})
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
    write_between_markers(ROOT / "BENCHMARKS.md", "\n".join(lines), COMPILE_SECTION)


if __name__ == "__main__":
    raise SystemExit(main())
