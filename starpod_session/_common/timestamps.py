"""RFC 3339 timestamps in the exact shape the Rust crate writes to SQLite.

``2026-03-20T12:34:56+00:00``: a fraction of 3 or 6 digits only when non-zero,
offset always ``+00:00``. In that shape string order equals time order, which is
what lets SQLite compare and index timestamps stored as TEXT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from ..errors import InvalidInput

_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)

#: The shapes :func:`format_rfc3339` writes, indexed by length: the character at index 19,
#: where the fraction (or the offset, without one) starts; "" (which no character equals)
#: for any other length. ``datetime.fromisoformat`` checks the digits. (Indexing a tuple
#: costs less than a dict's get.)
_CANONICAL_AT_19 = tuple({25: "+", 29: ".", 32: "."}.get(length, "") for length in range(33))


def format_rfc3339(moment: datetime) -> str:
    """Render an aware datetime as the Rust crate's UTC RFC 3339 text."""
    moment = moment.astimezone(timezone.utc)
    micros = moment.microsecond
    if moment.year >= 1000 and moment.tzinfo is timezone.utc:
        # The C formatter writes exactly this shape for a UTC datetime (about 4x faster).
        return moment.isoformat(timespec="milliseconds" if micros % 1000 == 0 and micros else "auto")
    # Four-digit years (0999, not 999), or string order stops being time order.
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"
    if micros % 1000 == 0 and micros:
        text += f".{micros // 1000:03d}"
    elif micros:
        text += f".{micros:06d}"
    return text + "+00:00"


_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _in_utc(moment: datetime, field: str) -> datetime:
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput(field, f"{moment.isoformat()} is outside years 1..9999 once converted to UTC") from None


def parse_rfc3339(text: str) -> datetime:
    """Parse RFC 3339 text (``Z`` or any offset, 0-9 fraction digits) to an aware UTC datetime.

    Fractions finer than a microsecond (the Rust crate can write nanoseconds) are
    truncated. Raises ``ValueError`` on anything else, an instant outside years
    1..9999 in UTC included.
    """
    return cast(datetime, _parse(text))


def rfc3339_reader(other: Callable[[Any], datetime | None]) -> Callable[[Any], datetime | None]:
    """A function reading a ``str`` as :func:`parse_rfc3339` does and anything else with ``other``.

    SQLite's result processor of timestamps: it runs once per timestamp read
    (twice per listed session, once per message), so what this library writes
    costs one Python call and the C parser.
    """
    fromisoformat = datetime.fromisoformat
    canonical_at_19 = _CANONICAL_AT_19

    def read(value: Any) -> datetime | None:
        if value.__class__ is not str:
            return other(value)
        try:
            # What this library writes (most reads): the C parser takes it as it is.
            if value[19] == canonical_at_19[len(value)] and value[10] == "T" and value[-6:] == "+00:00":
                return fromisoformat(value)
        except (IndexError, ValueError):
            pass  # too short or too long, or not digits where digits belong: the general path says what is wrong
        moment = _parse_keeping_offset(value)
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError(f"{value!r} is outside years 1..9999 in UTC") from None

    return read


def _not_text(value: object) -> datetime:
    raise TypeError(f"expected RFC 3339 text (a str), got {type(value).__name__}")


_parse = rfc3339_reader(_not_text)


def _parse_keeping_offset(text: str) -> datetime:
    """Parse RFC 3339 text to an aware datetime in its own offset (``ValueError`` if it is not)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {text!r}")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    offset = match["offset"]
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    naive = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    return naive.replace(microsecond=int(fraction), tzinfo=tz)


def coerce_instant(value: object, field: str) -> datetime:
    """Accept an aware datetime, an RFC 3339 string or a bare date (UTC midnight); return an aware UTC datetime.

    Raises :class:`InvalidInput` naming ``field`` for naive datetimes, unparseable
    strings, instants outside years 1..9999 once in UTC, and other types.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise InvalidInput(field, "naive datetime; pass an aware datetime (e.g. tzinfo=timezone.utc)")
        return _in_utc(value, field)
    if isinstance(value, str):
        text = value.strip()
        if _BARE_DATE.fullmatch(text):
            text += "T00:00:00Z"
        try:
            return _in_utc(_parse_keeping_offset(text), field)
        except ValueError:
            raise InvalidInput(
                field,
                f"{value!r} is not an RFC 3339 timestamp such as 2026-03-01T00:00:00Z or a date such as 2026-03-01",
            ) from None
    raise InvalidInput(field, f"expected an aware datetime or an RFC 3339 string, got {type(value).__name__}")
