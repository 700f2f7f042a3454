"""The session title rule of the original crate."""

from __future__ import annotations

__all__ = ["MAX_TITLE_BYTES", "shorten_title"]

#: Titles longer than this many UTF-8 bytes are cut and end in ``"..."``.
MAX_TITLE_BYTES = 100


def shorten_title(text: str) -> str:
    """Cut ``text`` to at most 100 UTF-8 bytes on a character boundary, plus ``"..."`` if cut."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_TITLE_BYTES:
        return text
    # errors="ignore" drops the partial character left at the cut, so the result
    # ends on a character boundary.
    return encoded[:MAX_TITLE_BYTES].decode("utf-8", errors="ignore") + "..."
