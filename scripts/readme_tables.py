"""Write the README's layer tables from the layer registry (``yolo_attn.layers.registry``).

Usage: python scripts/readme_tables.py [--check]

Three tables, each between ``<!-- registry:NAME -->`` and ``<!-- /registry:NAME -->`` in README.md: ``layers`` (YAML
name, other names, what it is, paper, official code), ``args`` (an example row and each argument with its default
and the first sentence of its docstring) and ``defaults`` (the per-map arguments ``yolo-attn insert`` and the shipped
configs use at P3/P4/P5 of a 640 input). ``--check`` exits 1 when README.md differs (``tests/test_readme.py``).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from markers import replace_between
from yolo_attn.layers.registry import LayerSpec, builtin_specs

README = Path(__file__).resolve().parents[1] / "README.md"
GRIDS = {"P3": 80, "P4": 40, "P5": 20}  # map sides at a 640 input


def arg_docs(cls: type) -> dict[str, str]:
    """``{argument: first sentence of its description}`` from the class docstring's ``Args:`` section."""
    doc = inspect.getdoc(cls) or ""
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    out, name = {}, None
    for line in (section.group(1).splitlines() if section else []):
        m = re.match(r"^\s{4}(\w+) \(([^)]*)\): (.*)$", line)
        if m:
            name, out[m.group(1)] = m.group(1), m.group(3)
        elif name and line.strip():
            out[name] += " " + line.strip()
    out = {k: v.replace("``", "`") for k, v in out.items()}  # short ones whole, long ones up to the first stop
    return {k: (v if len(v) <= 120 else re.split(r"(?<=[.;:])\s", v, maxsplit=1)[0]).rstrip(".;:") for k, v in out.items()}


def _default(spec: LayerSpec, arg: str) -> str:
    value = inspect.signature(spec.cls).parameters[arg].default
    return "required" if value is inspect.Parameter.empty else repr(value)


def _row(spec: LayerSpec, args: list) -> str:
    return f"`[-1, 1, {spec.name}, [{', '.join(map(str, args))}]]`"


def layers_table(specs: dict[str, LayerSpec]) -> str:
    lines = ["| name | also written | layer | paper | official code it matches |", "|---|---|---|---|---|"]
    for s in specs.values():
        other = ", ".join(f"`{n}`" for n in (*s.aliases, *s.official)) or "-"
        lines.append(f"| `{s.name}` | {other} | {s.summary} | {s.paper} | {s.official_code} |")
    return "\n".join(lines)


def args_table(specs: dict[str, LayerSpec]) -> str:
    lines = ["| YAML row (P5 defaults) | arguments after the automatic `c1`: default, meaning |", "|---|---|"]
    for s in specs.values():
        docs = arg_docs(s.cls)
        parts = [f"`{a}={_default(s, a)}` {docs.get(a, '')}".rstrip() for a in s.args]
        lines.append(f"| {_row(s, s.default_args(GRIDS['P5']))} | {'; '.join(parts)} |")
    return "\n".join(lines)


def defaults_table(specs: dict[str, LayerSpec]) -> str:
    head = " | ".join(f"{lv} ({g}×{g} at 640)" for lv, g in GRIDS.items())
    lines = [f"| layer | {head} |", "|---|" + "---|" * len(GRIDS)]
    for s in specs.values():
        cells = " | ".join(f"`{s.default_args(g)}`" for g in GRIDS.values())
        lines.append(f"| {s.name} | {cells} |")
    return "\n".join(lines)


TABLES = {"layers": layers_table, "args": args_table, "defaults": defaults_table}


def render(text: str, specs: dict[str, LayerSpec] | None = None) -> str:
    """``text`` with every registry table replaced by what the registry gives now."""
    specs = builtin_specs() if specs is None else specs
    for key, make in TABLES.items():
        text = replace_between(text, f"<!-- registry:{key} -->", f"<!-- /registry:{key} -->", make(specs))
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the registry gives")
    args = ap.parse_args(argv)
    old = README.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            print("README.md's registry tables are out of date: run python scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
