"""Insert attention layers into Ultralytics model configs, renumbering every absolute ``from`` index.

Inserting a row into a model YAML shifts the index of every later row, so every absolute ``from`` after it (skip
connections, the head's input list) must shift too. ``insert`` does that; the inserted layer takes the place of the
row it follows for every later consumer (what read SPPF now reads SPPF → LSKA), so the result is the same network
with the layer spliced in.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable, Sequence

import yaml

__all__ = ["load_base", "insert", "find_after_sppf", "dump", "declared_scales"]

_P5_CONTEXT = ("SPPF", "SPP", "SPPELAN", "AIFI")  # the P5 context block after which 'after-sppf' inserts


def load_base(cfg: str | Path | dict) -> dict:
    """A model config as a dict: a dict (deep-copied), a YAML path, or a stock name like ``yolov8.yaml``."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    path = Path(cfg)
    if not path.is_file():
        from ultralytics.nn.tasks import yaml_model_load

        return yaml_model_load(str(cfg))  # resolves stock names (yolov8n.yaml -> yolov8.yaml + scale n)
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def declared_scales(cfg: str | Path | dict) -> list:
    """Scales a config builds at: the one its file name fixes (``yolov8s-lska.yaml``), else every scale it
    declares, else ``[None]`` (no ``scales`` block)."""
    if not isinstance(cfg, dict):
        from ultralytics.nn.tasks import guess_model_scale

        fixed = guess_model_scale(cfg)
        if fixed:
            return [fixed]
    d = cfg if isinstance(cfg, dict) else load_base(cfg)
    return list(d.get("scales") or {}) or [None]


def _rows(d: dict) -> list:
    return list(d["backbone"]) + list(d["head"])


def find_after_sppf(d: dict) -> int:
    """Index of the last P5 context block (SPPF for YOLO, AIFI for RT-DETR)."""
    hits = [i for i, row in enumerate(_rows(d)) if row[2] in _P5_CONTEXT]
    if not hits:
        raise ValueError(f"no {'/'.join(_P5_CONTEXT)} row in this config: give an explicit layer index instead")
    return hits[-1]


def _shift(f, j: int, after: int):
    """New ``from`` of row j (old index) once a layer is inserted after row ``after``."""
    if isinstance(f, list):
        return [_shift(x, j, after) for x in f]
    absolute = f if f >= 0 else j + f
    new = absolute + 1 if absolute >= after else absolute  # 'after' itself now means the inserted layer
    new_j = j + 1 if j > after else j
    return new if f >= 0 else new - new_j


def insert(base: str | Path | dict, layer: str, after: int | Iterable[int], args: Sequence = ()) -> dict:
    """Return a copy of ``base`` with ``[-1, 1, layer, args]`` after each row index in ``after`` (old indices).

    Rows after an insertion point are renumbered; references to the row an insert follows are redirected to the
    inserted layer. Inserts land in the backbone if they follow a backbone row, else in the head.
    """
    d = load_base(base)
    points = sorted({after} if isinstance(after, int) else set(after), reverse=True)
    n_rows = len(_rows(d))
    for p in points:
        if not 0 <= p < n_rows:
            raise ValueError(f"insert position {p} is outside the config's rows 0..{n_rows - 1}")
        nb = len(d["backbone"])
        rows = _rows(d)
        new_rows = []
        for j, (f, n, m, a) in enumerate(rows):
            new_rows.append([_shift(f, j, p) if j > p else f, n, m, a])
            if j == p:
                new_rows.append([-1, 1, layer, list(args)])
        split = nb + 1 if p < nb else nb
        d["backbone"], d["head"] = new_rows[:split], new_rows[split:]
    return d


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
