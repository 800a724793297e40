"""The package's own errors under the ``yolo`` command: the message first, the traceback on request.

Ultralytics' ``yolo`` console command lets an exception end the process with Python's traceback — 20-odd lines of
Ultralytics' internals before the one line that says what to fix. In a ``yolo`` (or ``yolo-attn``) process, an
exception raised by yolo_attn (its class defined in the package: unknown layer name, misspelled layer, bad argument,
a module a checkpoint needs ...) is printed as its message alone, with a hint; ``YOLO_ATTN_TRACEBACK=1`` prints the
full traceback after it. Every other exception, and any Python process that is not such a command, is untouched.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

__all__ = ["TRACEBACK_ENV", "COMMANDS", "install_error_display", "is_ours"]

TRACEBACK_ENV = "YOLO_ATTN_TRACEBACK"
COMMANDS = ("yolo", "ultralytics", "yolo-attn")
"""Console scripts whose uncaught yolo_attn errors are shown as a message (``sys.argv[0]``'s stem)."""


def is_ours(exc: BaseException) -> bool:
    """Whether an exception is one of yolo_attn's own (its class defined in the package)."""
    return type(exc).__module__.split(".")[0] == "yolo_attn"


def _traceback_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "off", "no")


def _hook(previous):
    def excepthook(exc_type, exc, tb):
        if exc is None or not is_ours(exc):
            return previous(exc_type, exc, tb)
        message = str(exc).strip() or exc_type.__name__
        sys.stderr.write(f"\n{exc_type.__name__}: {message}\n")
        if _traceback_wanted():
            sys.stderr.write("\n")
            traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        else:
            sys.stderr.write(f"(yolo_attn: set {TRACEBACK_ENV}=1 for the full traceback)\n")
    excepthook._yolo_attn = True
    return excepthook


def install_error_display() -> bool:
    """In a ``yolo``/``yolo-attn`` command process, show yolo_attn's errors as their message (see the module
    docstring); returns whether it is installed. Idempotent."""
    if Path(sys.argv[0] if sys.argv and sys.argv[0] else "").stem not in COMMANDS:
        return False
    if not getattr(sys.excepthook, "_yolo_attn", False):
        sys.excepthook = _hook(sys.excepthook)
    return True
