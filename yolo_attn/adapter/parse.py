"""The ``parse_model`` wrapper (fact 3 of the adapter): before Ultralytics parses a model dict it imports the YAML's
``imports:`` modules, explains unknown layer names, checks the rows of registered layers that ``parse_model`` itself
would crash on, and passes ``repeats=True`` layers a row count of 1 (their depth-scaled count goes to the
constructor, read by :mod:`yolo_attn.adapter.rows`).

``imports:`` names are imported as usual; a module that is not importable is looked for next to the model YAML and
in the working directory (console scripts such as ``yolo`` do not put the working directory on ``sys.path``), and
the directory that holds it is appended to ``sys.path``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

import yolo_attn_autoload as _autoload
from torch import nn

from ..layers import LayerArgumentError
from ..layers.registry import lookup, suggest
from .patching import log, patch
from .rows import installed, parsing, registered

__all__ = ["UnknownLayerError", "DeclaredImportError", "wrap_parse_model", "import_declared"]


class DeclaredImportError(ImportError):
    """A module listed under a model YAML's ``imports:`` cannot be imported."""


class UnknownLayerError(KeyError):
    """A model YAML names a layer that neither Ultralytics nor any registered module defines."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])



def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def _search_dirs(d: dict) -> list[Path]:
    """Where ``imports:`` modules that are not importable are looked for: the model YAML's own directory (when the
    dict came from a file), then the working directory."""
    dirs = []
    yaml_file = d.get("yaml_file")
    if isinstance(yaml_file, str) and Path(yaml_file).is_file():
        dirs.append(Path(yaml_file).resolve().parent)
    dirs.append(Path.cwd().resolve())
    return list(dict.fromkeys(dirs))


def _holds(directory: Path, top: str) -> bool:
    return (directory / f"{top}.py").is_file() or (directory / top / "__init__.py").is_file()


def import_declared(d: dict) -> None:
    """Import the modules a model YAML lists under ``imports:`` (they register their layers as they import).

    A module that is not importable is looked for next to the model YAML, then in the working directory; the
    directory that holds it is appended to ``sys.path`` (what ``python train.py`` gives a script's own directory).
    """
    names = d.get("imports") or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise LayerArgumentError(f"the model YAML's 'imports:' must be a list of module names, got {names!r}.")
    for name in names:
        top = name.split(".")[0]
        try:
            importlib.import_module(name)
            continue
        except ModuleNotFoundError as e:
            if e.name not in (top, name) or top in sys.modules:  # a module it imports is missing, or a submodule
                raise DeclaredImportError(f"the model YAML's 'imports:' lists '{name}', which could not be imported ({e!r})."
                                  ) from e
        except Exception as e:
            raise DeclaredImportError(f"the model YAML's 'imports:' lists '{name}', which could not be imported ({e!r}); "
                              "it must be importable wherever the model is built.") from e
        dirs = _search_dirs(d)
        found = next((p for p in dirs if _holds(p, top)), None)
        if found is None:
            raise DeclaredImportError(
                f"the model YAML's 'imports:' lists '{name}', which is not installed and not found in "
                f"{' or '.join(str(p) for p in dirs)} (no {top}.py or {top}/__init__.py there). Put {top}.py next to "
                f"the model YAML or in the working directory, install it, or add its directory to PYTHONPATH."
            )
        if str(found) not in sys.path:
            sys.path.append(str(found))
            log(f"yolo_attn: 'imports: {name}' found in {found} (added to sys.path)")
        importlib.invalidate_caches()
        try:
            importlib.import_module(name)
        except Exception as e:
            raise DeclaredImportError(f"the model YAML's 'imports:' lists '{name}', found in {found}, which could not be "
                              f"imported ({e!r}).") from e


def _check_rows(rows: list) -> None:
    """Rows of registered layers that parse_model itself would crash on, before our layer sees them: several
    inputs (``ch[f]`` with a list), args that are not a list (``*args``), or a string that is neither a name nor a
    Python literal (parse_model runs ``ast.literal_eval`` on string args and only suppresses ValueError)."""
    for i, row in enumerate(rows):
        if len(row) < 4 or not isinstance(row[2], str) or not installed(row[2]):
            continue
        f, name, args = row[0], row[2], row[3]
        if not isinstance(f, int):
            raise LayerArgumentError(
                f"model layer {i} ({name}, args {args}): {name} takes one input but 'from' is {f!r}; concatenate "
                f"first ([{f!r}, 1, Concat, [1]]) and feed the Concat to {name} with 'from' -1."
            )
        if not isinstance(args, list):
            raise LayerArgumentError(
                f"model layer {i} ({name}, args {args!r}): the args must be a list, e.g. [-1, 1, {name}, []]."
            )
        for a in args:
            if not isinstance(a, str):
                continue
            try:
                ast.literal_eval(a)
            except ValueError:  # a name: parse_model looks it up or passes the string on (our checks refuse it)
                pass
            except (SyntaxError, TypeError, MemoryError, RecursionError):
                raise LayerArgumentError(
                    f"model layer {i} ({name}, args {args}): argument {a!r} is neither a number nor a name; write "
                    "plain integers (see 'yolo-attn layers')."
                ) from None


def _known_to_ultralytics(tasks, name: str) -> bool:
    if name.startswith("nn."):
        return hasattr(nn, name[3:])
    if name.startswith("torchvision.ops."):
        return True
    return name in vars(tasks)


def _unknown_layer(tasks, name: str, i: int) -> UnknownLayerError:
    ultralytics_names = [k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    hint = suggest(name, extra=ultralytics_names)
    return UnknownLayerError(
        f"model layer {i} names '{name}', which is neither an Ultralytics module nor a registered layer "
        f"(registered: {', '.join(registered()) or 'none'})."
        + (f" Did you mean {' or '.join(hint)}?" if hint else "")
        + f" If '{name}' is your own module, register it with @yolo_attn.register_module and make its module "
        "importable where the model is built: list it under 'imports:' in the model YAML, in YOLO_ATTN_IMPORTS, or "
        "as a 'yolo_attn.modules' entry point."
    )


def _checked_parse_model(original):
    codes = {getattr(original, "__code__", None), getattr(inspect.unwrap(original), "__code__", None)} - {None}

    def parse_model(d, ch, verbose=True):
        _autoload.flush()  # hooks of modules a circular import caught half-initialised
        import_declared(d)
        tasks = sys.modules["ultralytics.nn.tasks"]
        rows = _rows(d)
        for i, row in enumerate(rows):
            if len(row) > 2 and isinstance(row[2], str) and not _known_to_ultralytics(tasks, row[2]):
                raise _unknown_layer(tasks, row[2], i)
        _check_rows(rows)
        state = {"codes": codes, "n": {}, "built": {}, "noted": set()}
        repeated = [i for i, row in enumerate(rows) if len(row) > 3 and isinstance(row[2], str)
                    and (lookup(row[2]) is not None and lookup(row[2]).repeats and installed(row[2]))]
        if repeated:  # repeats=True: the count goes to the constructor, parse_model builds the layer once
            nb = len(d.get("backbone") or [])
            d = {**d, "backbone": [list(r) for r in d.get("backbone") or []], "head": [list(r) for r in d.get("head") or []]}
            for i in repeated:
                row = d["backbone"][i] if i < nb else d["head"][i - nb]
                state["n"][i], row[1] = row[1], 1
        token = parsing.set(state)
        try:
            return original(d, ch, verbose)
        finally:
            parsing.reset(token)

    return parse_model


def wrap_parse_model(tasks) -> None:
    """Make ``tasks.parse_model`` the checked one (fact 3). Idempotent."""
    patch(tasks, "parse_model", _checked_parse_model)


