"""Model configs by name: ``<stock model name>-<layer>[-<placement>].yaml``, generated on demand.

Every model YAML shipped in the installed Ultralytics (``ultralytics/cfg/models/**/*.yaml``: YOLO26, YOLO12, YOLO11,
YOLOv10/v9/v8/v6/v5/v3, RT-DETR, YOLOE, YOLO-World; every task) can be named with a registered layer in lower case
and an optional placement::

    yolo26n-lska.yaml            yolo26.yaml, LSKA after the P5 context block, scale n
    yolo26s-seg-cga-neck.yaml    yolo26-seg.yaml, CGA after each map the Segment head reads, scale s
    yolov8n-cls-lska.yaml        yolov8-cls.yaml, LSKA after the last backbone stage
    rtdetr-x-cga-neck.yaml       rtdetr-x.yaml, CGA after each map the decoder reads

Grammar: the stock model name exactly as Ultralytics accepts it (with or without the scale letter:
``yolo26n-seg`` stands for ``yolo26-seg.yaml`` at scale n, as for stock names), ``-``, a registered layer's name in
lower case (``yolo_attn.layers.registry``: the shipped ``cga``, ``lska``, ``fla``, ``shsa`` and any registered
module), then optionally ``-neck`` or ``-backbone``. The scale letter and the task work as for the stock name (the
task is read from the head, so ``-seg`` names train with ``yolo segment``).

Placements (``yolo_attn.configs.placement_rows``; the same for every task of a family):

* omitted — after the P5 context block: the last SPPF (YOLOv5/v6/v8/v10/11/26, YOLOE, YOLO-World), SPP (YOLOv3-SPP),
  SPPELAN (YOLOv9) or AIFI (RT-DETR). Families without one — YOLO12 (A2C2f blocks), YOLOv3 and YOLOv3-tiny — and
  every classification model (``-cls``, whose backbone ends in C2f/C2PSA/A2C2f/ResNetLayer) insert after the last
  backbone row instead: the P5 stage (YOLO12 row 8, YOLOv8-cls row 8, YOLO11-cls and YOLO26-cls row 9, the C2PSA).
* ``neck`` — after each row the head reads (P3, P4, P5; P2..P6 for the -p2/-p6 variants). A classification model
  has no neck: its head is one Classify row reading the last backbone row; such a name is refused.
* ``backbone`` — after the backbone rows at stride 8 and 16 that the neck reads as skip inputs; for a
  classification model (no skip inputs) after the last backbone row at stride 8 and at stride 16.

Per-map default arguments are the registry's (``yolo_attn.configs.default_args``), as for ``yolo-attn insert``.

Where the names work: ``YOLO(name)``, ``RTDETR(name)``, ``yolo <task> train/val/predict/export model=name`` — any
call that ends in Ultralytics' ``yaml_model_load`` — whenever no local file of that name exists (a local file wins,
as does one of the 28 configs shipped in ``cfg/``, which are the same configs). The resolved config dict, with its
rows written out, is what the model keeps (``model.yaml``) and what a checkpoint pickles, so a checkpoint rebuilds
without this module. ``yolo-attn insert NAME -o FILE`` writes the same config to a file.

A name that starts like a stock model but does not fit the grammar raises :class:`ConfigNameError`, which lists the
families, layers and the placements that family has, and suggests the closest valid name.

Examples:
    >>> parse_name("yolo26s-seg-cga-neck.yaml")
    ConfigName(stock='yolo26s-seg', base='yolo26-seg.yaml', layer='CGA', placement='neck')
    >>> parse_name("yolov8n.yaml") is None  # a stock name: left to Ultralytics
    True
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .configs import PLACEMENTS, dump, insert, is_classify, load_base, placement_rows, unscaled, write_config
from .configs import main as insert_main
from .adapter import stock_config_files
from .layers.registry import REGISTRY

__all__ = [
    "ConfigName", "ConfigNameError", "parse_name", "resolve", "stock_configs", "stock_name", "valid_placements",
    "model_names", "SUFFIXES", "main",
]

SUFFIXES = {"": "after-sppf", "neck": "neck", "backbone": "backbone"}
"""Name suffix -> placement (``yolo_attn.configs.PLACEMENTS``)."""
assert set(SUFFIXES.values()) == set(PLACEMENTS)


class ConfigNameError(FileNotFoundError):
    """A config name that starts like a stock model but names no valid layer/placement combination.

    A FileNotFoundError, as Ultralytics raises for a config name it cannot find."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ConfigName:
    """A parsed config name.

    Attributes:
        stock: the stock model name as written (``yolo26s-seg``).
        base: the stock YAML file it stands for (``yolo26-seg.yaml``).
        layer: the registered layer (``CGA``).
        placement: ``after-sppf``, ``neck`` or ``backbone``.
    """

    stock: str
    base: str
    layer: str
    placement: str

    @property
    def name(self) -> str:
        suffix = next(k for k, v in SUFFIXES.items() if v == self.placement)
        return f"{self.stock}-{self.layer.lower()}{'-' + suffix if suffix else ''}.yaml"


def stock_configs() -> dict[str, Path]:
    """File name -> path of every model YAML shipped in the installed Ultralytics (``cfg/models/**``)."""
    return stock_config_files()


def stock_name(stem: str) -> str | None:
    """The stock YAML file a model name stands for (``yolo26n-seg`` -> ``yolo26-seg.yaml``), or None."""
    files = stock_configs()
    for candidate in (stem, unscaled(stem)):
        if f"{candidate}.yaml" in files:
            return f"{candidate}.yaml"
    return None


def _layers() -> dict[str, str]:
    """Lower-case name -> registered layer name."""
    return {name.lower(): name for name in REGISTRY}


@functools.lru_cache(maxsize=None)
def valid_placements(base: str) -> tuple[str, ...]:
    """Placements a stock YAML has (a classification model has no neck); see the module docstring."""
    d = load_base(stock_configs()[base])
    return tuple(p for p in PLACEMENTS if not (p == "neck" and is_classify(d)))


def model_names(base: str, stock: str | None = None) -> list[str]:
    """Every config name of a stock YAML, written with ``stock`` as the model name (default: the YAML's own,
    unscaled), e.g. ``yolo26-seg-cga-neck.yaml``."""
    stock = stock or Path(base).stem
    return [ConfigName(stock, base, layer, at).name for layer in REGISTRY for at in valid_placements(base)]


def _split(stem: str) -> tuple[str, str | None, str]:
    """``(stock part, layer token or None, placement)``; the layer token is the last token before the placement."""
    tokens = stem.split("-")
    placement = "after-sppf"
    if len(tokens) > 1 and tokens[-1] in SUFFIXES and tokens[-1]:
        placement = SUFFIXES[tokens.pop()]
    if len(tokens) > 1:
        return "-".join(tokens[:-1]), tokens[-1], placement
    return stem, None, placement


def _stock_prefix(stem: str) -> str | None:
    """The longest leading part of ``stem`` (whole ``-`` tokens) that is a stock model name, or None."""
    tokens = stem.split("-")
    for k in range(len(tokens) - 1, 0, -1):
        prefix = "-".join(tokens[:k])
        if stock_name(prefix):
            return prefix
    return None


def _error(name: str, stock: str | None, problem: str) -> ConfigNameError:
    """The error for an invalid name: what is valid and the closest valid name."""
    layers = ", ".join(n.lower() for n in REGISTRY)
    families = sorted({Path(b).stem for b in stock_configs()})
    lines = [f"'{name}' is not a valid yolo_attn config name: {problem}.",
             "Names are <stock model name>-<layer>[-<placement>].yaml, e.g. yolo26n-lska.yaml, "
             "yolo26s-seg-cga-neck.yaml.",
             f"Layers: {layers}."]
    candidates: list[str] = []
    base = stock_name(stock) if stock else None
    if base:
        lines.append(f"Placements of {base}: " + ", ".join(
            "(none: after the P5 context block)" if p == "after-sppf" else p for p in valid_placements(base)) + ".")
        candidates = model_names(base, stock)
    else:
        lines.append(f"Stock models (the installed Ultralytics {version('ultralytics')}; a scale letter may follow "
                     f"the version, e.g. yolo26n): {', '.join(families)}.")
        candidates = [n for b in stock_configs() for n in model_names(b)]
    close = difflib.get_close_matches(Path(name).name.lower(), candidates, n=1, cutoff=0.0)
    if close:
        lines.append(f"Did you mean {close[0]}?")
    return ConfigNameError(" ".join(lines))


def parse_name(name: str) -> ConfigName | None:
    """Parse a config name; None when it is not one (a stock name, a path, no stock model at its start).

    Raises:
        ConfigNameError: the name starts with a stock model name but its layer or placement is not valid.
    """
    path = Path(str(name))
    if len(path.parts) > 1 or path.suffix.lower() not in (".yaml", ".yml"):
        return None
    stem = path.stem
    if stock_name(stem):
        return None  # a stock name: Ultralytics' own
    stock, token, placement = _split(stem)
    base = stock_name(stock)
    layers = _layers()
    if base and token in layers:
        if placement not in valid_placements(base):
            raise _error(path.name, stock, f"{base} is a classification model, which has no neck")
        return ConfigName(stock, base, layers[token], placement)
    prefix = _stock_prefix(stem)
    if prefix is None:
        if token in layers or stem.split("-")[-1] in SUFFIXES:
            raise _error(path.name, None, f"'{stock}' is not a stock model of the installed Ultralytics")
        return None  # not ours: Ultralytics reports a missing file
    rest = stem[len(prefix) + 1:]
    raise _error(path.name, prefix, f"'{rest}' after {prefix} is not <layer>[-<placement>]")


@functools.lru_cache(maxsize=128)
def _generate(base: str, layer: str, placement: str) -> dict:
    return insert(stock_configs()[base], layer, at=placement)


def resolve(name: str) -> dict | None:
    """The model dict a config name stands for (a fresh copy), or None when it is no config name; a config resolver
    (``yolo_attn.register`` passes it to the adapter), so Ultralytics' ``yaml_model_load`` resolves these names."""
    parsed = parse_name(name)
    if parsed is None:
        return None
    d = copy.deepcopy(_generate(parsed.base, parsed.layer, parsed.placement))
    d.pop("yaml_file", None)
    d.pop("scale", None)
    return d



def main(argv: list[str] | None = None) -> int:
    """``yolo-attn insert NAME [-o FILE]``: write the config a name stands for; any other ``insert`` call (a base YAML
    with ``--layer``) goes to :func:`yolo_attn.configs.main`. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--layer" in argv or any(a.startswith("--layer=") for a in argv) or not argv or argv[0].startswith("-"):
        return insert_main(argv)
    ap = argparse.ArgumentParser(prog="yolo-attn insert", description="Write the config a yolo_attn config name "
                                 "(<stock model name>-<layer>[-<placement>].yaml) stands for.")
    ap.add_argument("name", help="e.g. yolo26n-lska.yaml, yolo26s-seg-cga-neck.yaml")
    ap.add_argument("-o", "--out", default=None, help="output YAML (default: print to stdout)")
    a = ap.parse_args(argv)
    try:
        parsed = parse_name(a.name)
        if parsed is None:
            raise ConfigNameError(
                f"'{a.name}' is no config name (<stock model name>-<layer>[-<placement>].yaml); to insert into a "
                "stock or own YAML give --layer (yolo-attn insert BASE --layer LSKA --at neck)")
        rows = placement_rows(stock_configs()[parsed.base], parsed.placement)
    except (ConfigNameError, ValueError, KeyError) as e:
        print(f"yolo-attn insert: {e}", file=sys.stderr)
        return 1
    header = (f"{Path(a.name).name}: {parsed.base} with {parsed.layer}, placement {parsed.placement}: after base "
              f"row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}.\n"
              f"Written by: yolo-attn insert {Path(a.name).name}")
    return write_config(dump(resolve(a.name), header), a.out, parsed.layer, rows)
