"""Argument checks shared by the facade: each raises :class:`InvalidInput` naming the field."""

from __future__ import annotations

from ..errors import InvalidInput
from .limits import SHORT_TEXT_LENGTH

__all__ = [
    "check_count",
    "check_flag",
    "check_limit",
    "check_optional_short_text",
    "check_session_id",
    "check_short_text",
    "check_text",
]

#: The largest token count a row can hold (a signed 64-bit integer on every backend).
MAX_COUNT = 2**63 - 1

#: The largest cost of one usage row, in USD. A double sum of n such costs stays
#: below n * 1e15, finite for any table a database can hold (the largest double is
#: about 1.8e308), so every backend adds costs up to the same finite total.
MAX_COST_USD = 1e15

#: The largest message content, in UTF-8 bytes (MariaDB needs a server
#: ``max_allowed_packet`` of at least ``engine.MYSQL_MAX_ALLOWED_PACKET`` to store it).
MAX_CONTENT_BYTES = 16 * 1024 * 1024


def check_text(
    field: str,
    value: object,
    *,
    max_chars: int | None = None,
    max_bytes: int | None = None,
    allow_empty: bool = True,
) -> str:
    """A ``str`` every backend can store: no NUL, no lone surrogate, within ``max_chars`` and ``max_bytes``."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidInput(field, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidInput(field, f"{len(value)} characters, at most {max_chars} allowed")
    if "\x00" in value:
        raise InvalidInput(field, "contains a NUL character, which PostgreSQL cannot store")
    if value.isascii():  # O(1) in CPython: no surrogate, one byte per character, and no copy to count them
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput(field, "contains a lone surrogate and is not valid Unicode text") from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidInput(field, f"{size} bytes of UTF-8, at most {max_bytes} allowed")
    return value


def check_short_text(field: str, value: object) -> str:
    """A non-empty identifier-like ``str`` (key, user id, role, model) of at most 255 characters."""
    # Keys, user ids and roles are checked on every call: the common case (short
    # ASCII without NUL, which check_text accepts as it is) without its keyword call.
    if value.__class__ is str and 0 < len(value) <= SHORT_TEXT_LENGTH and value.isascii() and "\x00" not in value:
        return value
    return check_text(field, value, max_chars=SHORT_TEXT_LENGTH, allow_empty=False)


def check_optional_short_text(field: str, value: object) -> str | None:
    """``None``, or a value :func:`check_short_text` accepts (a model, an idempotency key)."""
    return None if value is None else check_short_text(field, value)


def check_session_id(value: object) -> str:
    """A session id as a caller passes it (the lookup itself decides whether it exists)."""
    return check_text("session_id", value, max_chars=SHORT_TEXT_LENGTH)


def check_count(field: str, value: object) -> int:
    """An ``int`` (not a bool) in 0..2**63-1."""
    if type(value) is not int:
        raise InvalidInput(field, f"expected an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_COUNT:
        raise InvalidInput(field, f"{value} is outside 0..2**63-1")
    return value


def check_flag(field: str, value: object) -> bool:
    """A real ``bool`` (``1`` or ``"yes"`` are refused rather than guessed at)."""
    if not isinstance(value, bool):
        raise InvalidInput(field, f"expected a bool, got {type(value).__name__}")
    return value


def check_limit(field: str, value: object) -> int:
    """A row limit: an ``int`` (not a bool) in 0..2**63-1, the range every backend's LIMIT takes."""
    if type(value) is not int or value < 0:
        raise InvalidInput(field, f"expected a non-negative int, got {value!r}")
    if value > MAX_COUNT:
        raise InvalidInput(field, f"{value} is outside 0..2**63-1")
    return value
