"""How the adapter changes an Ultralytics function (once, marked, the original kept) and writes to its log."""

from __future__ import annotations

import contextlib
import logging

__all__ = ["patch", "log", "quiet"]


def patch(owner, name: str, make):
    """Replace ``owner.name`` by ``make(original)`` once (marked, ``__wrapped__`` kept); returns the wrapper, or None
    if it was already ours."""
    original = getattr(owner, name)
    if getattr(original, "_yolo_attn", False):
        return None
    wrapper = make(original)
    wrapper._yolo_attn = True
    wrapper.__wrapped__ = original
    wrapper.__doc__ = original.__doc__
    wrapper.__name__, wrapper.__qualname__ = original.__name__, original.__qualname__
    setattr(owner, name, wrapper)
    return wrapper


def _logger():
    from ultralytics.utils import LOGGER  # lazy: the adapter imports no Ultralytics module until it registers

    return LOGGER


def log(message: str) -> None:
    """Write a line to Ultralytics' log (``LOGGER.info``)."""
    _logger().info(message)


@contextlib.contextmanager
def quiet():
    """Ultralytics' logger at WARNING (no per-batch bars or summaries) for the duration of a block."""
    logger = _logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield logger
    finally:
        logger.setLevel(level)
