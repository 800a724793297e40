"""Insert attention layers into Ultralytics model configs, renumbering every absolute ``from`` index.

Inserting a row into a model YAML shifts the index of every later row, so every absolute ``from`` after it (skip
connections, the head's input list) must shift too. ``insert`` does that; the inserted layer takes the place of the
row it follows for every later consumer (what read SPPF now reads SPPF → LSKA), so the result is the same network
with the layer spliced in.

Placements (``at``):

* ``after-sppf`` — after the P5 context block (the last SPPF / SPP / SPPELAN for YOLO, AIFI for RT-DETR); a model
  without one (YOLO12, YOLOv3, every classification model) gets it after its last backbone row, the P5 stage;
* ``neck`` — after each row whose output feeds the head (P3, P4, P5 for the stock detectors), so the head and every
  other consumer of those maps read the attended maps; a classification model has no neck (refused);
* ``backbone`` — after the backbone rows at stride 8 and 16 (P3, P4) that the head reads as skip inputs (for a
  classification model, whose head reads no skip input: the last backbone rows at stride 8 and 16); P5 is
  covered by ``after-sppf``;
* a row index or a list of them (``at=[4, 6]``), in the base config's numbering.

``yolo-attn insert`` is the command line of the same::

    yolo-attn insert yolov8.yaml --layer LSKA --at neck -o yolov8-lska-neck.yaml
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import sys
from pathlib import Path
from typing import Iterable, Sequence

import torch
import yaml

from .adapter import build_model, guess_scale, load_config, register
from .layers.registry import find, lookup

__all__ = [
    "load_base", "insert", "insert_rows", "find_after_sppf", "placement_rows", "default_args", "dump",
    "declared_scales", "cfg_path", "shipped_configs", "shipped_config", "PLACEMENTS", "main", "is_classify",
]

PLACEMENTS = ("after-sppf", "neck", "backbone")
CFG_DIRS = (Path(__file__).resolve().parent / "cfg", Path(__file__).resolve().parents[1] / "cfg")
"""Where the shipped configs live: inside the installed package (wheel), else the repository's cfg/ (editable)."""


@functools.lru_cache(maxsize=None)
def shipped_configs() -> dict[str, Path]:
    """File name -> path of every config shipped with yolo_attn."""
    for d in CFG_DIRS:
        files = sorted(d.glob("*.yaml")) if d.is_dir() else []
        if files:
            return {p.name: p for p in files}
    return {}


def unscaled(name: str) -> str:
    """A config name without its scale letter, as Ultralytics unifies it: ``yolov8s-lska.yaml`` -> ``yolov8-lska.yaml``."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)


def cfg_path(name: str) -> Path:
    """Path of a shipped config, e.g. ``cfg_path("yolov8-lska.yaml")``; a scaled name (``yolov8s-lska.yaml``)
    gives the same file (Ultralytics takes the scale from the name you pass it, not from the file)."""
    files = shipped_configs()
    name = Path(name).name if Path(name).suffix else f"{Path(name).name}.yaml"
    unified = unscaled(Path(name).stem) + ".yaml"
    for candidate in (name, unified):
        if candidate in files:
            return files[candidate]
    raise FileNotFoundError(
        f"yolo_attn ships no config named '{name}'. Shipped: {', '.join(files) or 'none (package data missing)'}."
    )


def shipped_config(name: str) -> dict | None:
    """The model dict of the shipped config a bare name stands for (``yolov8s-lska.yaml``), or None; a config
    resolver (``yolo_attn.register`` passes it to the adapter), so Ultralytics' ``yaml_model_load`` finds shipped
    configs by name."""
    path = Path(name)
    if len(path.parts) > 1 or Path(unscaled(name)).exists():
        return None
    shipped = shipped_configs().get(Path(unscaled(name)).name)
    if shipped is None:
        return None
    with open(shipped, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


_P5_CONTEXT = ("SPPF", "SPP", "SPPELAN", "AIFI")  # the P5 context block after which 'after-sppf' inserts


def load_base(cfg: str | Path | dict) -> dict:
    """A model config as a dict: a dict (deep-copied), a YAML path, or a stock name like ``yolov8.yaml``."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    path = Path(cfg)
    if not path.is_file():
        return load_config(cfg)  # resolves stock names (yolov8n.yaml -> yolov8.yaml + scale n)
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def declared_scales(cfg: str | Path | dict) -> list:
    """Scales a config builds at: the one its file name fixes (``yolov8s-lska.yaml``), else every scale it
    declares, else ``[None]`` (no ``scales`` block)."""
    if not isinstance(cfg, dict):
        fixed = guess_scale(cfg)
        if fixed:
            return [fixed]
    d = cfg if isinstance(cfg, dict) else load_base(cfg)
    return list(d.get("scales") or {}) or [None]


def _rows(d: dict) -> list:
    return list(d["backbone"]) + list(d["head"])


def is_classify(d: dict) -> bool:
    """Whether a config is a classification model (its head ends in Classify), which has no neck."""
    head = d.get("head") or []
    return bool(head) and str(head[-1][2]).lower() in {"classify", "classifier", "cls", "fc"}


def find_after_sppf(d: dict) -> int:
    """Index of the last P5 context block (SPPF for YOLO, AIFI for RT-DETR); for a config without one (YOLO12,
    YOLOv3, classification models) the last backbone row, which ends the P5 stage."""
    hits = [i for i, row in enumerate(_rows(d)) if row[2] in _P5_CONTEXT]
    if hits:
        return hits[-1]
    if not d.get("backbone"):
        raise ValueError(f"no {'/'.join(_P5_CONTEXT)} row and no backbone in this config: give an explicit layer "
                         "index instead")
    return len(d["backbone"]) - 1


def _shift(f, j: int, after: int):
    """New ``from`` of row j (old index) once a layer is inserted after row ``after``."""
    if isinstance(f, list):
        return [_shift(x, j, after) for x in f]
    absolute = f if f >= 0 else j + f
    new = absolute + 1 if absolute >= after else absolute  # 'after' itself now means the inserted layer
    new_j = j + 1 if j > after else j
    return new if f >= 0 else new - new_j


def insert_rows(base: str | Path | dict, layer: str, after: int | Iterable[int], args: Sequence | dict = ()) -> dict:
    """Return a copy of ``base`` with ``[-1, 1, layer, args]`` after each row index in ``after`` (old indices).

    ``args`` is one list for every insert, or a dict mapping each row index in ``after`` to its list. Rows after an
    insertion point are renumbered; references to the row an insert follows are redirected to the inserted layer.
    Inserts land in the backbone if they follow a backbone row, else in the head.
    """
    d = load_base(base)
    points = sorted({after} if isinstance(after, int) else set(after), reverse=True)
    _check_points(points, _rows(d))
    for p in points:
        row_args = args[p] if isinstance(args, dict) else args
        nb = len(d["backbone"])
        rows = _rows(d)
        new_rows = []
        for j, (f, n, m, a) in enumerate(rows):
            new_rows.append([_shift(f, j, p) if j > p else f, n, m, a])
            if j == p:
                new_rows.append([-1, 1, layer, list(row_args)])
        split = nb + 1 if p < nb else nb
        d["backbone"], d["head"] = new_rows[:split], new_rows[split:]
    return d


def _check_points(points: Iterable, rows: list) -> None:
    """Insert positions must be row indices of the base config, before its head (the last row: nothing follows it)."""
    n_rows = len(rows)
    for p in points:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < n_rows:
            raise ValueError(f"insert position {p!r} is outside the config's rows 0..{n_rows - 1}")
        if p == n_rows - 1:
            raise ValueError(f"insert position {p} is the head ({rows[p][2]}), and nothing may follow the head; "
                             f"insert after one of rows 0..{n_rows - 2}")


def _absolute(f, j: int) -> list[int]:
    return [x if x >= 0 else j + x for x in ([f] if isinstance(f, int) else f)]


def row_strides(base: str | Path | dict, probe: int = 64) -> list[int | None]:
    """Output stride of every row of a config (None where a row's output is not one feature map), measured by
    building it at its smallest declared scale and running one ``probe``×``probe`` forward (64 covers every stock
    stride up to P6's 64, as a 1×1 map)."""
    d = load_base(base)
    key = yaml.safe_dump({k: v for k, v in d.items() if k not in ("yaml_file", "scale")}, default_flow_style=True)
    return list(_row_strides(key, probe))


@functools.lru_cache(maxsize=32)
def _row_strides(key: str, probe: int) -> tuple[int | None, ...]:
    d = yaml.safe_load(key)
    scales = list(d.get("scales") or {})
    model = build_model(d, scale=scales[0] if scales else None)
    sizes: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, k=k: sizes.__setitem__(k, out.shape[-1])
                                     if isinstance(out, torch.Tensor) and out.dim() == 4 else None)
             for k, m in enumerate(model.model)]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, probe, probe))
    finally:
        for h in hooks:
            h.remove()
    return tuple(probe // sizes[k] if k in sizes else None for k in range(len(model.model)))


def placement_rows(base: str | Path | dict, at: str | int | Iterable[int]) -> list[int]:
    """Row indices (base numbering) after which a placement inserts; see the module docstring."""
    d = load_base(base)
    rows = _rows(d)
    if not isinstance(at, str):
        points = [at] if isinstance(at, int) else list(at)
        _check_points(points, rows)
        return sorted(set(points))
    if at == "after-sppf":
        return [find_after_sppf(d)]
    if at == "neck":
        if is_classify(d):
            raise ValueError("a classification model has no neck (its head is one Classify row reading the last "
                             "backbone row): use the after-sppf or backbone placement")
        return sorted(set(_absolute(rows[-1][0], len(rows) - 1)))
    if at == "backbone":
        nb = len(d["backbone"])
        strides = row_strides(d)
        read = {x for j in range(nb, len(rows)) for x in _absolute(rows[j][0], j) if x < nb - 1}
        if is_classify(d):  # no skip inputs: the last backbone row at each of stride 8 and 16
            read = {max(x for x in range(nb) if strides[x] == s) for s in (8, 16) if s in strides[:nb]}
        hits = sorted(x for x in read if strides[x] in (8, 16))
        if not hits:
            raise ValueError("no backbone row at stride 8 or 16 is read by the head in this config; "
                             "give explicit row indices instead")
        return hits
    raise ValueError(f"unknown placement '{at}': use one of {', '.join(PLACEMENTS)} or row indices")


def default_args(layer: str, stride: int | None, imgsz: int = 640) -> list:
    """YAML args of ``layer`` for a feature map at ``stride`` of an ``imgsz`` input (None: no map known), as the
    layer's registry declaration gives them (``[]``: the constructor's defaults).

    Shipped layers: CGA [num_heads 4, key_dim 16, window 7, kernel 5] everywhere; LSKA the smallest kernel covering the
    map (23 at P5, 41 at P4, 53 at P3 — the largest); FLA window = the map's native grid (20 / 40 / 80), 8 heads;
    SHSA qk_dim 16 with pdim = c1 / 4 (global attention: at P3 of 640 that is 6,400 tokens).
    """
    return find(layer).default_args(imgsz // stride if stride else None)


def insert(base: str | Path | dict, layer: str, at: str | int | Iterable[int] = "after-sppf",
           args: Sequence | dict | None = None) -> dict:
    """Insert ``layer`` into a model config at a placement and return the new config dict.

    Args:
        base: stock config name (``"yolov8.yaml"``, ``"rtdetr-l.yaml"``), a YAML path, or a config dict.
        layer: a yolo_attn layer name (``"LSKA"``) or any layer name Ultralytics resolves.
        at: ``"after-sppf"``, ``"neck"``, ``"backbone"``, a row index or a list of row indices (base numbering).
        args: YAML args for every insert, a dict ``{row: args}``, or None for the per-placement defaults
            (:func:`default_args` at each insert point's stride).

    Examples:
        >>> d = insert("yolov8.yaml", "LSKA", at="neck")
        >>> [row for row in d["head"] if row[2] == "LSKA"]
        [[-1, 1, 'LSKA', [53]], [-1, 1, 'LSKA', [41]], [-1, 1, 'LSKA', [23]]]
        >>> text = dump(d)  # YAML text in Ultralytics' layout, to write to a file
    """
    d = load_base(base)
    points = placement_rows(d, at)
    if args is None:
        strides = row_strides(d)
        args = {p: default_args(layer, strides[p]) for p in points}
    return insert_rows(d, layer, points, args)


def dump(d: dict, header: str = "") -> str:
    """Model config as YAML text in Ultralytics' layout: one flow-style row per layer with its index as comment."""
    def flow(v) -> str:
        text = yaml.safe_dump(v, default_flow_style=True, width=1 << 16).strip()
        return text[: -len("...")].strip() if text.endswith("\n...") else text  # scalars get an end marker

    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()] + [""] if header else []
    for key, value in d.items():
        if key in ("backbone", "head", "yaml_file", "scale", "ch"):
            continue
        if key == "scales":
            lines.append("scales:")
            lines += [f"  {k}: {flow(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {flow(value)}")
    i = 0
    for part in ("backbone", "head"):
        lines += ["", f"{part}:"]
        for row in d[part]:
            lines.append(f"  - {flow(list(row))} # {i}")
            i += 1
    return "\n".join(lines) + "\n"


def _parse_args(text: str | None):
    if text is None:
        return None
    value = yaml.safe_load(text if text.strip().startswith("[") else f"[{text}]")
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"--args must be a YAML list such as '4, 16, 7, 5', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``yolo-attn insert``: write BASE with a layer inserted at a placement; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="yolo-attn insert",
        description="Insert an attention layer into an Ultralytics model YAML, renumbering every 'from' index.",
    )
    ap.add_argument("base", help="stock config name (yolov8.yaml, yolo11-seg.yaml, rtdetr-l.yaml) or a YAML path")
    ap.add_argument("--layer", required=True, help="a registered layer name (see 'yolo-attn layers')")
    ap.add_argument("--at", default="after-sppf",
                    help="after-sppf | neck | backbone | row index or comma-separated indices (default after-sppf)")
    ap.add_argument("--args", default=None,
                    help="YAML args after the automatic c1, e.g. '23' or '4,16,7,5' (default: per-placement defaults)")
    ap.add_argument("-o", "--out", default=None, help="output YAML (default: print to stdout)")
    ap.add_argument("--no-check", action="store_true", help="do not build the result to check it")
    a = ap.parse_args(argv)

    register()  # also imports the modules of YOLO_ATTN_IMPORTS and entry points, whose layers can be inserted
    try:
        spec = find(a.layer)
    except ValueError as e:
        ap.error(str(e))
    layer = a.layer if lookup(a.layer) else spec.name
    at = a.at
    if at not in PLACEMENTS:
        try:
            at = [int(x) for x in at.split(",")]
        except ValueError:
            ap.error(f"--at '{a.at}' is neither a placement ({', '.join(PLACEMENTS)}) nor row indices")
    if Path(str(a.base)).suffix not in (".yaml", ".yml"):
        print(f"yolo-attn insert: {a.base} is not a model YAML; give a stock name (yolov8n.yaml, the architecture of "
              "yolov8n.pt) or a YAML path. A checkpoint's weights go in with transfer after building the new config.",
              file=sys.stderr)
        return 1
    try:
        base = load_base(a.base)
        points = placement_rows(base, at)
        d = insert(base, layer, points, _parse_args(a.args))
        rows = f"row{'s' if len(points) > 1 else ''} {', '.join(map(str, points))}"
        header = (f"{Path(str(a.base)).name} with {layer}, placement {a.at}: after {rows} of the base.\n"
                  f"Written by: yolo-attn insert {a.base} --layer {layer} --at {a.at}"
                  + (f" --args '{a.args}'" if a.args is not None else ""))
        text = dump(d, header)
    except (ValueError, KeyError, FileNotFoundError, argparse.ArgumentTypeError) as e:
        print(f"yolo-attn insert: {e}", file=sys.stderr)
        return 1
    if not a.no_check:
        try:
            build_model(yaml.safe_load(text), scale=declared_scales(d)[0])
        except Exception as e:  # noqa: BLE001 - any failure of the built result is reported, nothing written
            print(f"yolo-attn insert: the result does not build ({type(e).__name__}: {e}); nothing written. "
                  "Check it with 'yolo-attn check', or write it anyway with --no-check.", file=sys.stderr)
            return 1
    return write_config(text, a.out, layer, points)


def write_config(text: str, out: str | None, layer: str, points: list[int]) -> int:
    """Write a config's YAML text to ``out`` (stdout when None) for ``yolo-attn insert``; returns the exit code."""
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as e:
            print(f"yolo-attn insert: cannot write {out}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"wrote {out}: {layer} after base rows {points}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
