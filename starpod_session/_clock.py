"""The one place the library reads the wall clock (freeze it in tests with freezegun)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Return the current instant as an aware UTC datetime."""
    return datetime.now(timezone.utc)
