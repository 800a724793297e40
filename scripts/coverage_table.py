"""Coverage of every model YAML in the installed Ultralytics by config name: stock YAML × layer × placement.

Usage: python scripts/coverage_table.py [--docs] [--readme PAGE.md] [--layers CGA,LSKA] [--rotate] [--update EMA]

Each case is the config name ``<stock stem>-<layer>[-<placement>].yaml`` (``yolo_attn.names``), built at the
smallest declared scale and run forward (eval, no grad) at two input shapes, 64×64 and 64×96 (64×128 for P6
models); it passes when every output tensor is finite. Stock YAMLs are globbed from ``ultralytics/cfg/models`` (no
hand list); the placements are those the family has (``yolo_attn.names.valid_placements``). With ``--docs`` the
table between the ``coverage-table`` markers of the Model names and placements page is rewritten
(``docs/en/placements.md``; ``scripts/readme_tables.py`` writes the Chinese copy, run it after); ``--readme PAGE.md``
rewrites it in that file.
Every run records its rows in ``benchmarks/coverage_results.json``; ``--update LAYERS`` re-runs only those layers'
cases (a new or changed layer: minutes instead of the whole product) and takes the other rows from that record.
``--rotate`` gives one layer per YAML × placement, rotated so that each layer meets each family.
``tests/test_coverage.py`` runs ``cases(larger_sizes_rotated=True)``: the full product on the smallest YAML of each
size family (:func:`size_family`: ``yolov10n`` of yolov10n/s/m/b/l/x, ``rtdetr-l`` of rtdetr-l/x,
``rtdetr-resnet50`` of resnet50/101) and every placement, layers rotated, on its larger sizes — the same
architecture at more channels, whose cases took 306 s of the product's 758 s on 2 cores (14 layers); the whole
product (this script) is what the docs table records.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path

import torch

from markers import replace_between
from yolo_attn.adapter import build_model
from yolo_attn.layers.registry import REGISTRY
from yolo_attn.names import ConfigName, resolve, stock_configs, valid_placements

def shapes_for(model) -> tuple[tuple[int, int], ...]:
    """Input shapes (h, w): 64×64 and 64×(64 + the largest stride), i.e. 64×96, or 64×128 for a P6 model
    (stride 64), whose stock network only takes multiples of 64."""
    strides = getattr(model, "stride", None)
    stride = max(32, int(max(strides))) if strides is not None else 32
    return (64, 64), (64, 64 + stride)


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage_results.json"
"""The rows of the last run (``--update`` re-runs some layers and takes the others from here)."""

OFFLINE_EXCEPTIONS = {
    "yolo11-cls-resnet18.yaml": "its backbone row is torchvision's ResNet-18 with ImageNet weights, which torchvision "
                                "downloads while the model is built: not buildable offline (online it resolves as "
                                "any other name)",
}
"""Stock YAMLs that cannot be built without the network, with the reason (checked: the build fails on a download)."""


def tensors(y) -> list[torch.Tensor]:
    """Every tensor of a model output (heads return tensors, tuples, lists or dicts of them)."""
    if isinstance(y, torch.Tensor):
        return [y]
    items = y.values() if isinstance(y, dict) else y if isinstance(y, (list, tuple)) else ()
    return [t for x in items for t in tensors(x)]


_SIZES = "ntsmcblxe"  # Ultralytics' size letters, smallest first
_SIZED = (re.compile(rf"^(?P<family>.*\d)(?P<size>[{_SIZES}])(?P<rest>-.+)?$"),  # yolov10n, yolov9c-seg
          re.compile(rf"^(?P<family>.+-)(?P<size>[{_SIZES}])$"),  # rtdetr-l
          re.compile(r"^(?P<family>.*resnet)(?P<size>\d+)(?P<rest>-.+)?$"))  # yolov8-cls-resnet50 (depth)


def size_family(stem: str) -> tuple[str, tuple]:
    """A stock YAML's family (the stem, ``*`` where its size was) and the size's rank (smaller first): ``yolov9c-seg``
    -> ``("yolov9*-seg", (0, 4))``; a YAML without a size letter is a family of its own."""
    for pattern in _SIZED:
        m = pattern.match(stem)
        if m:
            size = m["size"]
            rank = (1, int(size)) if size.isdigit() else (0, _SIZES.index(size))
            return m["family"] + "*" + (m.groupdict().get("rest") or ""), rank
    return stem, (0, 0)


def cases(layers=None, rotate: bool = False, larger_sizes_rotated: bool = False) -> list[tuple[str, str, str]]:
    """``(stock YAML, layer, placement)`` for every stock YAML and placement: every layer, or with ``rotate`` one
    layer per case, rotated so that consecutive cases of a family (and consecutive families) get different layers;
    ``larger_sizes_rotated``: rotated only on the YAMLs that are a larger size of another (:func:`size_family`)."""
    layers = list(layers or REGISTRY)
    families = {base: size_family(Path(base).stem) for base in sorted(stock_configs())}
    smallest = {}  # family -> (rank, YAML) of its smallest size
    for base, (family, rank) in families.items():
        smallest[family] = min(smallest.get(family, (rank, base)), (rank, base))
    out, k = [], 0
    for base, (family, _) in families.items():
        larger = smallest[family][1] != base
        for at in valid_placements(base):
            if rotate or (larger_sizes_rotated and larger):
                out.append((base, layers[k % len(layers)], at))
                k += 1
            else:
                out += [(base, layer, at) for layer in layers]
    return out


def name_of(base: str, layer: str, placement: str) -> str:
    return ConfigName(Path(base).stem, base, layer, placement).name


def check(base: str, layer: str, placement: str) -> dict:
    """Build one case at its smallest scale and run it at :func:`shapes_for`; raises on failure. Returns details."""
    d = resolve(name_of(base, layer, placement))
    scales = list(d.get("scales") or {})
    with contextlib.redirect_stdout(io.StringIO()):
        model = build_model(d, scale=scales[0] if scales else None)
    rows = [k for k, m in enumerate(model.model) if type(m).__name__ == layer]
    assert rows, f"no {layer} row in the built model"
    model.eval()
    with torch.no_grad():
        for h, w in shapes_for(model):
            out = tensors(model(torch.rand(1, 3, h, w)))
            assert out and all(torch.isfinite(t).all() for t in out), f"non-finite output at {h}x{w}"
    return {"scale": scales[0] if scales else "-", "rows": rows, "task": type(model).__name__}


def run(case_list, log=print) -> list[dict]:
    results = []
    for base, layer, at in case_list:
        t0 = time.perf_counter()
        row = {"base": base, "layer": layer, "placement": at, "name": name_of(base, layer, at)}
        try:
            row.update(check(base, layer, at), status="ok")
        except (urllib.error.URLError, OSError) as e:
            row.update(status="offline" if base in OFFLINE_EXCEPTIONS else "fail", error=f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - every failure is a table row
            row.update(status="fail", error=f"{type(e).__name__}: {e}")
        row["seconds"] = time.perf_counter() - t0
        results.append(row)
        log(f"{row['status']:7s} {row['seconds']:5.1f}s {row['name']}" + (f"  {row.get('error', '')[:200]}"
                                                                           if row["status"] != "ok" else ""))
    return results


def table(results: list[dict]) -> str:
    """The docs table: per family directory, cases passed of cases run, and every exception with its reason."""
    by_base = {}
    for r in results:
        by_base.setdefault(r["base"], []).append(r)
    counts = Counter(r["status"] for r in results)
    rotated = len({(r["base"], r["placement"]) for r in results}) == len(results)
    layers = len({r["layer"] for r in results})
    product = (f"every placement with the {layers} layers rotated over the cases" if rotated else
               f"{layers} layers × every placement")
    lines = [f"{counts['ok']} of {len(results)} cases pass ({len(by_base)} stock YAMLs of the installed Ultralytics × "
             f"{product}; smallest scale, forward at 64×64 and 64×96, P6 models 64×128).", "",
             "| stock YAML | placements | cases ok |", "|---|---|---:|"]
    for base, rows in by_base.items():
        ok = sum(r["status"] == "ok" for r in rows)
        lines.append(f"| `{base}` | {', '.join(valid_placements(base))} | {ok}/{len(rows)} |")
    bad = [r for r in results if r["status"] != "ok"]
    if bad:
        lines += ["", "Exceptions:", ""]
        reasons = {}
        for r in bad:
            reason = OFFLINE_EXCEPTIONS.get(r["base"]) if r["status"] == "offline" else r.get("error", "")
            reasons.setdefault((r["base"], reason), []).append(r["name"])
        for (base, reason), names in reasons.items():
            lines.append(f"- `{base}` ({len(names)} cases): {reason}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", default=None, help="rewrite the coverage table in this Markdown file")
    ap.add_argument("--docs", action="store_true",
                    help="rewrite it on the docs' placements page (English; scripts/readme_tables.py writes the Chinese "
                         "copy)")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: every registered layer)")
    ap.add_argument("--rotate", action="store_true", help="one layer per YAML and placement, rotated")
    ap.add_argument("--update", default=None, metavar="LAYERS",
                    help=f"comma-separated layers to re-run; every other row from {RESULTS.name} (the last run)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    if a.update:
        redo = set(a.update.split(","))
        old = {(r["base"], r["layer"], r["placement"]): r for r in json.loads(RESULTS.read_text(encoding="utf-8"))}
        wanted = cases(a.layers.split(",") if a.layers else None, a.rotate)
        fresh = {(r["base"], r["layer"], r["placement"]): r for r in run([c for c in wanted if c[1] in redo], log=log)}
        missing = [c for c in wanted if c[1] not in redo and c not in old]
        if missing:
            ap.error(f"{RESULTS.name} has no row for {len(missing)} cases (e.g. {name_of(*missing[0])}); "
                     "run without --update")
        results = [fresh.get(c) or old[c] for c in wanted]
    else:
        results = run(cases(a.layers.split(",") if a.layers else None, a.rotate), log=log)
    RESULTS.write_text(json.dumps(results, indent=0), encoding="utf-8")
    text = table(results)
    print(text)
    print(f"{len(results)} cases in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    root = Path(__file__).resolve().parents[1]
    pages = ([Path(a.readme)] if a.readme else []) + ([root / "docs" / "en" / "placements.md"] if a.docs else [])
    for path in pages:
        path.write_text(replace_between(path.read_text(encoding="utf-8"), "<!-- coverage-table:start -->",
                                        "<!-- coverage-table:end -->", text, where=str(path)), encoding="utf-8")
    return 0 if all(r["status"] in ("ok", "offline") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
