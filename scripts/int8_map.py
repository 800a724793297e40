"""mAP of trained models after OpenVINO export, fp32 and INT8: what quantisation costs on a dataset.

Usage:
    python scripts/int8_map.py runs/yolo_attn_demo                  # a `yolo-attn compare` / demo output directory
    python scripts/int8_map.py runs/yolo_attn_demo --seeds 0 1 --weights last
    python scripts/int8_map.py a.pt b.pt --data data.yaml --imgsz 640 --out int8_map

From a compare/demo directory it takes every ``runs/<model>-seed<k>/weights/<best|last>.pt`` of the chosen seeds
(default: seed 0; in the order of its ``runs.csv``, baseline first), and the dataset YAML and image size each run was trained with (``runs/<model>-seed<k>.json``;
``--data`` / ``--imgsz`` override them). For each model it

1. copies the checkpoint to ``OUT/<model>/`` (the exports are written next to it; the input directory is only read),
2. exports it to OpenVINO fp32 (``format=openvino``) and INT8 (``quantize=8``, i.e. ``int8=True``: NNCF post-training
   quantisation calibrated on every image of the dataset's **train** split),
3. validates the PyTorch model, the fp32 export and the INT8 export with Ultralytics' own ``val`` on the **val**
   split (same image size, ``rect=False`` for all three, as exported models validate: letterboxed square inputs).

Precision: Ultralytics' OpenVINO backend compiles with OpenVINO's default precision, which on a CPU with bf16
support (AVX512-BF16/AMX) is bf16, not f32. The fp32 export is therefore validated with
``INFERENCE_PRECISION_HINT=f32`` (added to the backend's ``compile_model`` call while this script validates it, as the
deployment tests do), so its column shows what the fp32 graph gives; the INT8 export is validated as Ultralytics runs
it (default precision: int8 kernels, the non-quantised parts in the CPU's default). The precision each compiled
model really used is read back from OpenVINO and written to the JSON file and under the table.

Output: a Markdown table on stdout (and ``OUT/int8_map.md``) and ``OUT/int8_map.json`` (every figure, the
precisions, image counts, versions). ``Δ INT8`` = INT8 export minus the PyTorch model.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import sys
import time
from importlib.metadata import version as dist_version
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import openvino as ov  # noqa: E402

import yolo_attn  # noqa: E402,F401  (registers the layers: the checkpoints pickle them)
from ultralytics import YOLO  # noqa: E402
from ultralytics.data.utils import IMG_FORMATS, check_det_dataset  # noqa: E402
from yolo_attn.bench import cpu_name  # noqa: E402

COLUMNS = [("pytorch", "PyTorch"), ("openvino_fp32", "OpenVINO fp32"), ("openvino_int8", "OpenVINO INT8")]


@contextlib.contextmanager
def openvino_compiles(precision: str | None):
    """While active, every ``openvino.Core().compile_model`` (Ultralytics' backend included) gets
    ``INFERENCE_PRECISION_HINT=precision`` (None: OpenVINO's default); yields the list of the precisions the compiled
    models report."""
    used: list[str] = []
    base = ov.Core

    class Core(base):
        def compile_model(self, *args, **kwargs):
            if precision is not None:
                if len(args) >= 3:  # (model, device_name, config)
                    args = (*args[:2], {**(args[2] or {}), "INFERENCE_PRECISION_HINT": precision}, *args[3:])
                else:
                    kwargs["config"] = {**(kwargs.get("config") or {}), "INFERENCE_PRECISION_HINT": precision}
            compiled = super().compile_model(*args, **kwargs)
            used.append(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
            return compiled

    ov.Core = Core
    try:
        yield used
    finally:
        ov.Core = base


def from_compare_dir(root: Path, seeds: list[int], weights: str) -> list[dict]:
    """Models of a compare/demo output directory: name, checkpoint, data and imgsz of their run."""
    found = []
    for record in sorted((root / "runs").glob("*-seed*.json")):
        label, seed = record.stem.rsplit("-seed", 1)
        if not seed.isdigit() or int(seed) not in seeds:
            continue
        run = root / "runs" / record.stem / "weights"
        pt = run / f"{weights}.pt"
        if not pt.is_file():
            pt = run / "last.pt" if weights == "best" else pt
        if not pt.is_file():
            raise SystemExit(f"{record.stem}: no {weights}.pt under {run}")
        settings = json.loads(record.read_text())["settings"]
        found.append({"model": record.stem, "pt": pt, "data": settings["data"], "imgsz": settings["imgsz"]})
    if not found:
        raise SystemExit(f"no runs/<model>-seed<k>.json with seed in {seeds} under {root}")
    if (root / "runs.csv").is_file():  # the comparison's own order (its baseline first)
        with open(root / "runs.csv", newline="") as f:
            order = {f"{r['model']}-seed{r['seed']}": i for i, r in enumerate(csv.DictReader(f))}
        found.sort(key=lambda item: order.get(item["model"], len(order)))
    return found


def validate(path: str, data: str, imgsz: int, project: Path, name: str) -> dict:
    metrics = YOLO(path, task="detect").val(data=data, imgsz=imgsz, batch=16, split="val", device="cpu", rect=False,
                                            plots=False, verbose=False, project=str(project), name=name,
                                            exist_ok=True)
    return {"map50": float(metrics.box.map50), "map50_95": float(metrics.box.map)}


def measure(item: dict, out: Path) -> dict:
    """Export one model to OpenVINO fp32 and INT8 and validate all three; the row of the table."""
    work = out / item["model"]
    work.mkdir(parents=True, exist_ok=True)
    pt = work / f"{item['model']}.pt"
    shutil.copy(item["pt"], pt)
    data, imgsz = item["data"], item["imgsz"]
    t0 = time.time()
    fp32 = YOLO(str(pt)).export(format="openvino", imgsz=imgsz)
    int8 = YOLO(str(pt)).export(format="openvino", imgsz=imgsz, quantize=8, data=data, split="train", fraction=1.0)
    export_s = time.time() - t0
    row = {"model": item["model"], "weights": str(item["pt"]), "data": data, "imgsz": imgsz,
           "pytorch": validate(str(pt), data, imgsz, work, "val_pytorch")}
    with openvino_compiles("f32") as used:
        row["openvino_fp32"] = {**validate(fp32, data, imgsz, work, "val_fp32"), "precision": sorted(set(used))}
    with openvino_compiles(None) as used:
        row["openvino_int8"] = {**validate(int8, data, imgsz, work, "val_int8"), "precision": sorted(set(used))}
    row["int8_drop"] = {k: row["openvino_int8"][k] - row["pytorch"][k] for k in ("map50", "map50_95")}
    row["export_s"] = round(export_s, 1)
    return row


def markdown(rows: list[dict]) -> str:
    head = ["model"]
    for _, label in COLUMNS:
        head += [f"{label} mAP50", f"{label} mAP50-95"]
    head += ["Δ INT8 mAP50", "Δ INT8 mAP50-95"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [r["model"]]
        for key, _ in COLUMNS:
            cells += [f"{r[key]['map50']:.4f}", f"{r[key]['map50_95']:.4f}"]
        cells += [f"{r['int8_drop']['map50']:+.4f}", f"{r['int8_drop']['map50_95']:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(result: dict) -> str:
    """The lines under the table: what was measured on what."""
    rows, info = result["rows"], result["setup"]
    fp32 = sorted({p for r in rows for p in r["openvino_fp32"]["precision"]})
    int8 = sorted({p for r in rows for p in r["openvino_int8"]["precision"]})
    return (f"Weights: {', '.join(r['weights'] for r in rows)}. Data: {', '.join(info['data'])} "
            f"({info['val_images']} val images for every mAP, {info['train_images']} train images for INT8 "
            f"calibration), imgsz {', '.join(map(str, info['imgsz']))}. OpenVINO {info['versions']['openvino']}, "
            f"NNCF {info['versions']['nncf']}, Ultralytics {info['versions']['ultralytics']}, CPU "
            f"{info['cpu']}; OpenVINO compiled the fp32 export in {'/'.join(fp32)}, the INT8 export in "
            f"{'/'.join(int8)} (its non-quantised ops). Δ INT8 = INT8 export − PyTorch.")


def count_images(data: str) -> tuple[int, int]:
    """(train, val) image counts of a detection dataset YAML, as Ultralytics resolves it."""
    d = check_det_dataset(data)
    def n(split):
        paths = d[split] if isinstance(d[split], list) else [d[split]]
        return sum(sum(1 for f in Path(p).rglob("*") if f.suffix[1:].lower() in IMG_FORMATS) for p in paths)

    return n("train"), n("val")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="a compare/demo output directory, or .pt files (with --data)")
    parser.add_argument("--data", help="dataset YAML (required with .pt files; overrides a compare directory's)")
    parser.add_argument("--imgsz", type=int, help="image size (default: the run's; 640 for .pt files)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of a compare directory (default 0)")
    parser.add_argument("--weights", choices=["best", "last"], default="best", help="checkpoint of each run")
    parser.add_argument("--out", default="int8_map", help="output directory (copies, exports, int8_map.json/.md)")
    args = parser.parse_args(argv)

    items = []
    for entry in map(Path, args.inputs):
        if entry.is_dir():
            items += from_compare_dir(entry, args.seeds, args.weights)
        elif entry.suffix == ".pt" and entry.is_file():
            if not args.data:
                parser.error(f"{entry}: a .pt file needs --data")
            items.append({"model": entry.stem if entry.stem not in ("best", "last") else entry.parents[1].name,
                          "pt": entry, "data": args.data, "imgsz": args.imgsz or 640})
        else:
            parser.error(f"{entry}: neither a compare output directory nor a .pt file")
    for item in items:
        item["data"] = str(args.data or item["data"])
        item["imgsz"] = args.imgsz or item["imgsz"]
    if len({i["model"] for i in items}) != len(items):
        parser.error("two inputs have the same model name")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [measure(item, out) for item in items]
    counts = [count_images(d) for d in sorted({i["data"] for i in items})]
    result = {
        "setup": {
            "data": sorted({i["data"] for i in items}),
            "imgsz": sorted({i["imgsz"] for i in items}),
            "train_images": "/".join(str(c[0]) for c in counts),
            "val_images": "/".join(str(c[1]) for c in counts),
            "versions": {p: dist_version(p) for p in ("openvino", "nncf", "ultralytics", "torch")},
            "cpu": cpu_name(),
            "command": "python scripts/int8_map.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "rows": rows,
    }
    table = markdown(rows)
    (out / "int8_map.json").write_text(json.dumps(result, indent=1))
    (out / "int8_map.md").write_text(f"{table}\n\n{describe(result)}\n")
    print(f"\n{table}\n\n{describe(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
