"""What to do about a database error: one sentence appended to the :class:`StorageError` it becomes.

Each known situation (a Galera node without quorum, a PostgreSQL standby that
refuses writes, no host reachable, a server that stopped answering) gets its own
advice; anything else gets none.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from . import galera

__all__ = ["advice"]


def advice(error: BaseException) -> str:
    """The advice for ``error`` or any error in its context chain (``""`` when none applies)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for hint in (galera.advice(current),):
            if hint:
                return hint
        current = current.__context__
    return ""


def _original(error: BaseException) -> BaseException | None:
    return error.orig if isinstance(error, DBAPIError) else error
