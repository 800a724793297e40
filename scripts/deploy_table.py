"""Write the docs' deployment table (format × layer) from what tests/test_deploy.py measured.

Usage:
    python scripts/deploy_table.py            # run tests/test_deploy.py (slow tests included, ~12 min on 2 cores),
                                              # record benchmarks/deploy_results.json, rewrite the docs table
    python scripts/deploy_table.py --no-run   # rewrite the table from the recorded benchmarks/deploy_results.json

The table sits on the Deployment page (docs/en/deployment.md) between ``<!-- deploy-table -->`` and
``<!-- /deploy-table -->``; scripts/readme_tables.py writes the Chinese page's copy (run it after). A cell shows what the
test established for that format and layer: exported (Ultralytics' exporter), ran (the format's own runtime, in a
process where yolo_attn cannot be imported), parity (within the format's tolerance, see tests/test_deploy.py) with
the largest box error relative to the largest box; for OpenVINO INT8 the box correlation instead. A format or layer
the tests did not reach shows "not measured".

The RT-DETR column (``rtdetr-l-attn.yaml``: RT-DETR-l with every registered layer after AIFI) shows the largest
difference of matched output rows (normalised boxes and scores, 0..1) instead; where stock RT-DETR itself does not
run in a format, the tests record why (``unsupported``) and the cell says so, with the reason under the table. A
layer that declares a format unsupported (``unsupported_formats``) shows "refused at export", with the declared
operator and the runtime's own error on the files exported with the refusal bypassed under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from markers import replace_between
from yolo_attn.layers.registry import builtin_specs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "deploy_results.json"
PAGES = [ROOT / "docs" / "en" / "deployment.md"]  # the Chinese copy: scripts/readme_tables.py
START, END = "<!-- deploy-table -->", "<!-- /deploy-table -->"

# (results key, row label, runtime column; {v} = the runtime version(s) the tests recorded)
FORMATS = [
    ("torchscript", "TorchScript (`format=torchscript`)", "torch.jit {v}"),
    ("onnx", "ONNX (`format=onnx`)", "ONNX Runtime {v}"),
    ("openvino", "OpenVINO fp32 (`format=openvino`)", "OpenVINO {v}, f32 precision hint"),
    ("openvino-int8", "OpenVINO INT8 (`format=openvino quantize=8`)", "OpenVINO {v}"),
    ("ncnn", "NCNN (`format=ncnn`)", "ncnn {v}, and `yolo predict`"),
    ("litert", "LiteRT / TFLite (`format=litert`)", "{v} interpreter"),
    ("coreml", "CoreML (`format=coreml`)", "none: spec read back on Linux; predicts on macOS only"),
]


def _err(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}"


def cell(fmt: str, row: dict | None) -> str:
    if row and row.get("unsupported"):
        return "stock RT-DETR fails too ¹"
    if row and row.get("refused"):
        return "refused at export ²"
    if not row or not row.get("exported"):
        return "not measured" if not row else "export fails"
    if fmt == "coreml":
        return "exports ✓ · spec ✓"
    if not row.get("runs"):
        return "exports ✓ · does not run"
    if fmt == "openvino-int8":
        return f"✓ ✓ · box corr {row['box_corr']:.2f}"
    if not row.get("parity"):
        return f"✓ ✓ · **no parity** ({_err(row['box'])})"
    return f"✓ ✓ ✓ · {_err(row['box'])}"


def layer_of(cfg: str) -> str:
    """The layer a shipped config holds, as the registry spells it (``yolov8-simam.yaml`` -> SimAM)."""
    if cfg.startswith("rtdetr"):
        return "RT-DETR-l, every layer after AIFI"
    stem = Path(cfg).stem.split("-", 1)[1]
    return {name.lower(): name for name in builtin_specs()}.get(stem, stem.upper())


def table(results: dict) -> str:
    cfgs = sorted({cfg for rows in results.values() for cfg in rows},
                  key=lambda c: (c.startswith("rtdetr"), layer_of(c)))  # the YOLOv8 configs, then RT-DETR
    head = ["format", *[f"{layer_of(c)} (`{c}`)" for c in cfgs], "runtime tested"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, runtime in FORMATS:
        rows = results.get(key, {})
        versions = sorted({r.get("runtime", "") for r in rows.values() if r.get("runtime")})
        tested = runtime.format(v=", ".join(versions)).replace("  ", " ")
        lines.append("| " + " | ".join([label, *[cell(key, rows.get(c)) for c in cfgs], tested]) + " |")
    notes = sorted({f"{label.split(' (')[0]}: {r['unsupported']}" for key, label, _ in FORMATS
                    for r in results.get(key, {}).values() if r.get("unsupported")})
    if notes:
        lines += ["", "¹ " + "; ".join(notes) + "."]
    refused = sorted({f"{layer_of(c)} in {label.split(' (')[0]}: {r['refused']} (exported anyway, the runtime "
                      f"fails: `{r.get('runtime_error', '?')}`)" for key, label, _ in FORMATS
                      for c, r in results.get(key, {}).items() if r.get("refused")})
    if refused:
        lines += ["", "² the layer declares the format unsupported, and `yolo export` stops with that reason before "
                  "writing a file: " + "; ".join(refused) + "."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="use the recorded results, run no test")
    args = parser.parse_args()
    if not args.no_run:
        RESULTS.unlink(missing_ok=True)
        env = {**os.environ, "YOLO_ATTN_DEPLOY_RESULTS": str(RESULTS), "YOLO_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--runslow", "tests/test_deploy.py"],
                              cwd=ROOT, env=env)
        if proc.returncode != 0:
            print("tests/test_deploy.py failed: the table shows what was measured", file=sys.stderr)
    results = json.loads(RESULTS.read_text())
    for page in PAGES:  # scripts/readme_tables.py --check (tests/test_docs.py) checks them against the record
        page.write_text(replace_between(page.read_text(encoding="utf-8"), START, END, table(results), where=str(page)),
                        encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
