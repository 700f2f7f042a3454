"""What to do about a database error: one sentence appended to the :class:`StorageError` it becomes.

Each known situation (a Galera node without quorum, a PostgreSQL standby that
refuses writes, no host reachable, a server that stopped answering) gets its own
advice; anything else gets none.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from ..backends import BACKENDS, galera

__all__ = ["advice", "is_connection_lost", "is_disk_full"]


def advice(error: BaseException) -> str:
    """The advice for ``error`` or any error in its context chain (``""`` when none applies)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for hint in (galera.advice(current), _server_advice(_original(current)), _disk_advice(current)):
            if hint:
                return hint
        current = current.__context__
    return ""


def _original(error: BaseException) -> BaseException | None:
    return error.orig if isinstance(error, DBAPIError) else error


#: PostgreSQL's SQLSTATE for a write refused by a hot standby.
_READ_ONLY_TRANSACTION = "25006"
#: MariaDB's client errors for a server it cannot reach, and for a connection lost mid-call.
_MARIADB_UNREACHABLE = frozenset({2002, 2003, 2005})
_MARIADB_LOST = frozenset({2006, 2013})

_UNREACHABLE = (
    " (no server could be reached or accepted the session: the database is down or unreachable at every host "
    "the URL names, or, with target_session_attrs=read-write, none of them is a primary yet (a standby still "
    "being promoted); each host had connect_timeout to answer. Check the servers, then retry the call)"
)
_LOST = (
    " (the connection was lost during the call: the server crashed, was stopped or failed over, or gave no "
    "answer within statement_timeout; a write may or may not have been committed: retry it with the same "
    "idempotency key (message_key, usage_key), which stores it once)"
)


def _server_advice(original: BaseException | None) -> str:
    """Advice for PostgreSQL's and MariaDB's connection and standby errors."""
    if original is None:
        return ""
    if getattr(original, "sqlstate", None) == _READ_ONLY_TRANSACTION:
        return (
            " (the server is a read-only standby: point the URL at the primary, or name every host in one URL "
            "with target_session_attrs=read-write so the library connects to whichever takes writes)"
        )
    text = str(original)
    if _mariadb_number(original) in _MARIADB_UNREACHABLE or text.startswith(
        ("connection failed", "connection timeout")
    ):
        return _UNREACHABLE
    if _lost(original):
        return _LOST
    return ""


def _mariadb_number(original: BaseException) -> int | None:
    args = getattr(original, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _lost(original: BaseException) -> bool:
    text = str(original)
    return (
        _mariadb_number(original) in _MARIADB_LOST
        or "server closed the connection" in text
        or "consuming input failed" in text
    )


def is_connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (a driver's error, or SQLAlchemy's around one) says the server went away mid-call."""
    original = _original(error)
    return original is not None and _lost(original)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (a driver's error, or SQLAlchemy's around one) says the disk under the database is full."""
    original = _original(error)
    return original is not None and any(backend.is_disk_full(original) for backend in BACKENDS.values())


def _disk_advice(error: BaseException) -> str:
    if not is_disk_full(error):
        return ""
    return (
        " (the disk holding the database is full, or the database reached its size limit: the call's "
        "transaction was rolled back; free space, then retry the call)"
    )
