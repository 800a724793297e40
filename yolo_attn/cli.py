"""yolo-attn: efficient attention layers (and your own modules) as plain layer names in Ultralytics model YAMLs.

Commands (yolo-attn COMMAND --help for its options):

    yolo-attn layers [NAME ...]  the registered layers: YAML arguments and what each means, aliases
    yolo-attn insert ...         insert a layer into a model YAML, renumbering every 'from' index; or write the
                                 config a name stands for (yolo-attn insert yolo26n-seg-cga-neck.yaml -o FILE)
    yolo-attn check ...          build a config at several scales and shapes; per-layer params and FLOPs
    yolo-attn demo ...           offline comparison run: stock YOLOv8n against every registered layer after SPPF
    yolo-attn compare CFG ...    train configs by one recipe over seeds; table with spread, delta mAP, pictures
    yolo-attn show MODEL IMAGE   draw what each attention layer of a model attends to over an image
    yolo-attn bench ...          time the registered layers, fast path against textbook (and official); a table
    yolo-attn data shapes ...    generate the synthetic shapes dataset (--task detect|segment|pose|obb|classify)
    yolo-attn version            the plugin's version (and Ultralytics'); also --version

Anything else goes to Ultralytics' own yolo command, with the layers registered (for environments that skip .pth
start-up files: python -S, some embedded interpreters):

    yolo-attn train model=yolov8n-lska.yaml data=coco8.yaml epochs=1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
import textwrap

__all__ = ["main", "COMMANDS", "plain"]

COMMANDS = {
    "insert": "yolo_attn.names:main",  # config names (yolo26n-lska.yaml); BASE --layer ... goes on to configs.main
    "check": "yolo_attn.check:main",
    "demo": "yolo_attn.demo:main",
    "compare": "yolo_attn.compare:main",
    "show": "yolo_attn.show:main",
    "bench": "yolo_attn.bench:main",
}
"""Sub-command -> ``module:function`` taking the remaining arguments and returning an exit code (imported lazily)."""

_MARKUP = (re.compile(r"``([^`]+)``"), re.compile(r"(?::[a-z]+:)?`~?([^`]+)`"))  # ``code``, then :role:`x` and `x`


def plain(text: str) -> str:
    """``text`` without reStructuredText markup: ````code````, ``:func:`name``` and ```x``` become the bare text.

    Example:
        >>> plain("``yolo-attn check``: see :func:`yolo_attn.check.count_flops` and `x`")
        'yolo-attn check: see yolo_attn.check.count_flops and x'
    """
    for markup in _MARKUP:
        text = markup.sub(r"\1", text)
    return text


@contextlib.contextmanager
def _plain_help():
    """Every argparse help printed meanwhile (the sub-commands' descriptions come from their docstrings) is plain."""
    original = argparse.ArgumentParser.format_help
    argparse.ArgumentParser.format_help = lambda self: plain(original(self))
    try:
        yield
    finally:
        argparse.ArgumentParser.format_help = original


def _signature(spec) -> str:
    parts = ["c2 (output channels)"] if spec.channels == "out" else []
    parts += [f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in spec.params]
    return ", ".join(parts)


def argument_docs(cls) -> dict[str, str]:
    """Argument name -> its description from the ``Args:`` section of the class's (else its ``__init__``'s) Google-style
    docstring, markup removed and continuation lines joined.

    Example:
        >>> class Block:
        ...     '''A block.
        ...
        ...     Args:
        ...         c1 (int): Input channels.
        ...         k (int): Kernel size; ``k`` odd,
        ...             at least 3.
        ...     '''
        >>> argument_docs(Block)
        {'c1': 'Input channels.', 'k': 'Kernel size; k odd, at least 3.'}
    """
    import inspect

    out: dict[str, str] = {}
    for doc in (inspect.getdoc(cls), inspect.getdoc(cls.__init__) if "__init__" in vars(cls) else None):
        lines = (doc or "").splitlines()
        if "Args:" not in (line.strip() for line in lines):
            continue
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:") + 1
        indent, name = None, None
        for line in lines[start:]:
            if not line.strip():
                if name is not None:
                    break
                continue
            depth = len(line) - len(line.lstrip())
            if indent is None:
                indent = depth
            if depth < indent:
                break
            m = re.match(r"\*{0,2}(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)", line.strip())
            if depth == indent and m:
                name = m.group(1)
                out[name] = m.group(2)
            elif name is not None:
                out[name] += " " + line.strip()
        if out:
            break
    return {k: plain(v).strip() for k, v in out.items()}


def _layers(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="yolo-attn layers", description="List the registered layer names (a user's module found through "
        "YOLO_ATTN_IMPORTS or an entry point included): the YAML arguments with their defaults and what each means, "
        "the aliases, the official argument lists accepted, and whether the name is registered with Ultralytics.",
        epilog="A YAML row gives the arguments after the input channels, which are filled in: "
               "[-1, 1, CGA, [4, 16, 7, 5]].")
    ap.add_argument("names", nargs="*", metavar="NAME", help="only these layers (names or aliases; default: all)")
    args = ap.parse_args(argv)
    from . import REGISTRY, register
    from .adapter.ultralytics_layers import ULTRALYTICS_SPECS
    from .layers.registry import find

    names = register()
    try:
        chosen = [find(n).name for n in args.names] or list(REGISTRY)
    except ValueError as e:
        ap.error(str(e))
    for name in chosen:
        spec = REGISTRY[name]
        state = "registered" if name in names else "NOT registered (Ultralytics defines this name)"
        origin = "" if spec.builtin else f"  ({spec.cls.__module__}.{spec.cls.__qualname__})"
        print(f"{name:5s} [{_signature(spec)}]  {state}{origin}")
        if spec.paper or spec.official_code:
            print(f"      {spec.paper or 'paper not stated'}; official code: "
                  f"{spec.official_code.replace('`', '') or 'not stated'}")
        if spec.aliases:
            print(f"      aliases (same arguments): {', '.join(spec.aliases)}")
        for official, o in spec.official.items():
            print(f"      {official}: the official arguments ({', '.join(o.params)}; dim is replaced by the input "
                  "channels)")
        docs = argument_docs(spec.cls)
        rows = [("c2", "output channels (the first YAML argument)")] if spec.channels == "out" else []
        rows += [(p.name, docs.get(p.name, "(not described in the class docstring)")) for p in spec.params]
        width = max((len(n) for n, _ in rows), default=0)
        print("      arguments:" if rows else "      arguments: none")
        for n, text in rows:
            print(textwrap.fill(text, 118, initial_indent=f"        {n:{width}s}  ",
                                subsequent_indent=" " * (10 + width)))
    if not args.names:
        print("\nUltralytics' own attention modules, by name with the input channels filled in (Ultralytics' classes, "
              "not the papers'):")
        for spec in ULTRALYTICS_SPECS:
            print(f"{spec.name} [{_signature(spec)}]  {spec.summary}")
    return 0


def _version(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="yolo-attn version", description="Print the plugin's version and Ultralytics' "
                            "(also: yolo-attn --version).").parse_args(argv)
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        ultralytics = version("ultralytics")
    except PackageNotFoundError:
        ultralytics = "not installed"
    print(f"yolo-attn {__version__} (ultralytics {ultralytics})")
    return 0


def _help() -> int:
    print(__doc__.strip())
    return 0


def _data(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="yolo-attn data", description="Generate data sets.",
                                 epilog="yolo-attn data shapes --help lists the options of shapes.")
    sub = ap.add_subparsers(dest="kind", metavar="KIND", required=True)
    sub.add_parser("shapes", add_help=False, help="the synthetic shapes dataset, offline, in Ultralytics layout: "
                   "--out DIR [--task detect|segment|pose|obb|classify] [--train N] [--val M] [--imgsz S] "
                   "[--seed K] [--classes a,b]")
    ap.parse_args(argv[:1])
    from .data.shapes import main as shapes_main

    return shapes_main(argv[1:]) or 0


def main(argv: list[str] | None = None) -> int:
    """Run ``yolo-attn``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        return _help()
    if argv[0] in ("--version", "-V"):
        return _version([])
    local = {"layers": _layers, "version": _version, "data": _data}
    if argv[0] in local:
        with _plain_help():
            return local[argv[0]](argv[1:])
    if argv[0] in COMMANDS:
        module, func = COMMANDS[argv[0]].split(":")
        with _plain_help():
            return getattr(importlib.import_module(module), func)(argv[1:]) or 0

    from . import register  # lazy, like every import of the package here: `yolo-attn --help` imports no torch
    from .adapter.training import cli_entrypoint

    register()
    cli_entrypoint(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
