"""Which database errors are transient, and how long to wait before trying again."""

from __future__ import annotations

import random
import time

import attrs
from sqlalchemy.exc import DBAPIError

from .errors import InvalidInput

__all__ = ["RetryPolicy", "is_transient"]

# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available.
_POSTGRES_TRANSIENT = frozenset({"40001", "40P01", "55P03"})
# MariaDB error numbers: lock wait timeout, deadlock.
_MARIADB_TRANSIENT = frozenset({1205, 1213})


def is_transient(error: DBAPIError) -> bool:
    """True for lock contention and serialisation failures that succeed when retried.

    Also true for an error raised while cleaning up after one: MariaDB rolls the
    whole transaction back when it picks it as a deadlock victim, so undoing a
    savepoint afterwards fails with "SAVEPOINT ... does not exist", and that is
    the error that surfaces, with the deadlock as its context.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_driver_error(current.orig if isinstance(current, DBAPIError) else current):
            return True
        current = current.__context__
    return False


def _is_transient_driver_error(original: BaseException | None) -> bool:
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _POSTGRES_TRANSIENT:
        return True
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MARIADB_TRANSIENT:
        return True
    # A driver tested outside backends/ (one of five): this public module lies below the backends
    # (every layer that retries imports it), so it cannot ask them.
    if type(original).__module__.startswith("sqlite3"):
        message = str(original).lower()
        return "database is locked" in message or "database is busy" in message or "busy" in message
    return False


def _check_attempts(_policy: object, _attribute: attrs.Attribute[int | None], attempts: int | None) -> None:
    if attempts is None:
        return
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise InvalidInput("attempts", f"expected None (retry until lock_timeout) or an int >= 1, got {attempts!r}")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by the manager's ``lock_timeout``.

    ``attempts`` (default ``None``) caps how many tries a call makes, the first
    included; with ``None`` a call retries a transient conflict (a lock wait, a
    deadlock, a serialisation failure, a Galera certification conflict) until
    ``lock_timeout`` has passed since it began, never giving up after a fixed
    count: a hot row written through every node of a Galera cluster can fail
    certification many times in a row and still succeed. The waits between tries
    grow from ``base_delay`` to at most ``max_delay`` seconds.
    """

    attempts: int | None = attrs.field(default=None, validator=_check_attempts)
    base_delay: float = 0.01
    max_delay: float = 0.5

    def pause(self, failed_attempts: int) -> None:
        """Sleep before the next try, after ``failed_attempts`` failures."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        time.sleep(random.uniform(0, ceiling))
