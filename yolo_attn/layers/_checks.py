"""Argument checks shared by the layer constructors.

Every error names the layer, the argument and the fix, so that a wrong row in a model YAML reads as
``LSKA: k_size=9 is not supported ...`` rather than a shape error deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["LayerArgumentError", "check_int", "check_positive_float", "check_bool", "check_choice", "check_divisible",
           "check_odd_kernel", "largest_divisor"]


class LayerArgumentError(ValueError):
    """A layer was given an argument it cannot be built with (the message says which and how to fix it)."""


def check_int(layer: str, name: str, value: Any, low: int | None = 1, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise naming ``layer`` and ``name``.

    Bools and floats are refused, even ``7.0``: a float in a model YAML is almost always a misplaced argument.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise LayerArgumentError(
            f"{layer}: {name} must be an integer, got {value!r} ({type(value).__name__}). "
            f"Write it as a plain integer in the YAML args, e.g. {name}={max(low or 1, 1)}."
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise LayerArgumentError(f"{layer}: {name} must be {bound}, got {value}.")
    return value


def check_positive_float(layer: str, name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number, finite and > 0, else raise naming ``layer`` and ``name``.

    Integers are accepted (``1`` is the float 1.0); bools, strings and other types are refused, and so are 0,
    negatives, NaN and infinities.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LayerArgumentError(
            f"{layer}: {name} must be a positive number, got {value!r} ({type(value).__name__}). "
            f"Write it as a plain number in the YAML args, e.g. {name}=0.0001."
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise LayerArgumentError(f"{layer}: {name} must be a finite number > 0, got {value!r}; e.g. {name}=0.0001.")
    return value


def check_bool(layer: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (``true``/``false`` in a YAML), else raise naming ``layer`` and ``name``; 1, 0
    and strings are refused: a number where a switch belongs is almost always a misplaced argument."""
    if not isinstance(value, bool):
        raise LayerArgumentError(f"{layer}: {name} must be True or False, got {value!r} ({type(value).__name__}).")
    return value


def check_choice(layer: str, name: str, value: Any, choices: tuple[int, ...]) -> int:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    value = check_int(layer, name, value, low=None)
    if value not in choices:
        raise LayerArgumentError(
            f"{layer}: {name}={value} is not supported; choose one of {', '.join(map(str, choices))}."
        )
    return value


def check_divisible(layer: str, c1: int, name: str, value: int) -> None:
    """Raise unless the channel count ``c1`` splits evenly into ``value`` groups (heads)."""
    if c1 % value:
        options = [d for d in range(1, min(c1, 64) + 1) if c1 % d == 0]
        raise LayerArgumentError(
            f"{layer}: input channels c1={c1} are not divisible by {name}={value}; "
            f"use a {name} that divides {c1}, e.g. one of {options}."
        )


def check_odd_kernel(layer: str, name: str, value: Any, high: int = 31) -> int:
    """Return ``value`` if it is an odd kernel size in ``[1, high]``: 'same' padding ``k // 2`` keeps the map size."""
    value = check_int(layer, name, value, high=high)
    if value % 2 == 0:
        raise LayerArgumentError(f"{layer}: {name} must be odd to keep the map size, got {value}; use e.g. 3 or 5.")
    return value


def largest_divisor(c1: int, cap: int) -> int:
    """The largest divisor of ``c1`` not above ``cap``: an official group or head default (``cap``) where it divides
    the channels, the nearest count below it that does otherwise.

    Examples:
        >>> [largest_divisor(c, 32) for c in (16, 64, 240, 256)]
        [16, 32, 30, 32]
    """
    return next(d for d in range(min(cap, c1), 0, -1) if c1 % d == 0)
