"""The package's layout is its architecture: layers (pure PyTorch) → the Ultralytics adapter → model features →
tools → the command line. Read from the source (``ast``), not from a running process:

* every import between the package's modules points down or sideways, never up, and the module graph has no cycle;
* only the adapter imports Ultralytics' internals (``ultralytics.<sub-package>``); elsewhere only its public front
  ends (``from ultralytics import YOLO``) and its version;
* imports of the package's own modules inside functions (deferred) exist only where they defer torch for
  ``yolo-attn --help``: the package root and the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "yolo_attn"
TIERS = {  # module (prefix) -> tier; an import may only go to the same or a lower tier
    "yolo_attn.layers": 0,
    "yolo_attn.adapter": 1,
    "yolo_attn.configs": 2, "yolo_attn.names": 2, "yolo_attn.transfer": 2,
    "yolo_attn": 3,  # the package root: its exports and register(), which wires the features into the adapter
    "yolo_attn.check": 4, "yolo_attn.show": 4, "yolo_attn.compare": 4, "yolo_attn.demo": 4, "yolo_attn.bench": 4,
    "yolo_attn.data": 4,
    "yolo_attn.cli": 5,
}
DEFERRING = {"yolo_attn", "yolo_attn.cli"}  # may import the package's modules inside functions (no torch for --help)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tier(module: str) -> int:
    best = max((p for p in TIERS if module == p or module.startswith(p + ".")), key=len)
    return TIERS[best]


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level, line) for every import in ``path``; relative imports resolved, and
    ``from package import name`` read as the module ``package.name`` when that is a module of the package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body} | {id(n) for b in tree.body if isinstance(b, (ast.If, ast.Try))
                                        for n in ast.walk(b)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (ROOT / Path(*sub.split("."))).is_dir()
                out.append((sub if is_module else base, id(node) in top, node.lineno))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))
EDGES = [(module_name(p), target, level, line, p) for p in SOURCES for target, level, line in imports(p)]


def test_the_scan_sees_the_package():
    names = {module_name(p) for p in SOURCES}
    assert {"yolo_attn.layers.registry", "yolo_attn.adapter.install", "yolo_attn.configs", "yolo_attn.cli"} <= names
    assert ("yolo_attn.bench", "yolo_attn.layers.registry") in {(a, b) for a, b, *_ in EDGES}
    assert all(tier(n) is not None for n in names)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    source = module_name(path)
    for a, target, _, line, p in EDGES:
        if p == path and target.startswith("yolo_attn") and not target.startswith("yolo_attn_autoload"):
            assert tier(target) <= tier(source), f"{p.name}:{line}: {source} (tier {tier(source)}) imports {target} " \
                                                 f"(tier {tier(target)})"


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {}
    for source, target, at_top, _, _ in EDGES:
        if at_top and target.startswith("yolo_attn.") and target != source:
            graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_only_the_adapter_touches_ultralytics_internals():
    for source, target, _, line, p in EDGES:
        if target.startswith("ultralytics.") and not source.startswith("yolo_attn.adapter"):
            raise AssertionError(f"{p.relative_to(ROOT)}:{line}: {source} imports {target} (an Ultralytics internal: "
                                 "go through yolo_attn.adapter)")


def test_deferred_imports_of_the_package_only_where_they_defer_torch():
    for source, target, at_top, line, p in EDGES:
        if not at_top and target.startswith("yolo_attn.") and source not in DEFERRING:
            raise AssertionError(f"{p.relative_to(ROOT)}:{line}: {source} imports {target} inside a function")
