"""The Ultralytics releases the adapter was checked against, and the error raised when a fact no longer holds.

Every fact the adapter relies on is listed in ``yolo_attn/adapter/__init__.py`` and has a contract test in
``tests/test_contract.py`` run against each of :data:`CHECKED_VERSIONS` that is installed.
"""

from __future__ import annotations

import sys

__all__ = ["CHECKED_VERSIONS", "IntegrationError", "ultralytics_version", "fact_broken"]

CHECKED_VERSIONS = ("8.1.47", "8.2.103", "8.3.240", "8.4.190")


class IntegrationError(RuntimeError):
    """The installed Ultralytics does not behave as the checked versions do (a fact of ``yolo_attn.adapter``)."""


def ultralytics_version() -> str:
    """The imported Ultralytics' version ("unknown" before it is imported)."""
    return getattr(sys.modules.get("ultralytics"), "__version__", "unknown")


def fact_broken(what: str) -> IntegrationError:
    """The error for a fact that does not hold in the installed Ultralytics, naming the checked versions.

    Examples:
        >>> "8.4.190" in str(fact_broken("parse_model has no local ch"))
        True
    """
    return IntegrationError(
        f"yolo_attn: {what} in the installed ultralytics {ultralytics_version()}; yolo_attn was checked with "
        f"{', '.join(CHECKED_VERSIONS)}. Install one of those (pip install 'ultralytics=={CHECKED_VERSIONS[-1]}') or a "
        "yolo_attn release that supports this version."
    )
