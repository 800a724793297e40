"""Generated blocks in Markdown files: the text between a start and an end marker, rewritten by the table scripts."""

from __future__ import annotations

__all__ = ["replace_between"]


def replace_between(text: str, start: str, end: str, body: str, where: str = "README.md") -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``body`` on lines of its own.

    Raises ``SystemExit`` naming the markers when ``text`` lacks them (``where`` names the file).

    Example:
        >>> replace_between("a\\n<!-- t -->\\nold\\n<!-- /t -->\\nb", "<!-- t -->", "<!-- /t -->", "new")
        'a\\n<!-- t -->\\nnew\\n<!-- /t -->\\nb'
    """
    if start not in text or end not in text.split(start, 1)[1]:
        raise SystemExit(f"{where} has no {start} ... {end} block")
    before, rest = text.split(start, 1)
    return f"{before}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
