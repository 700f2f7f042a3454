"""Read replicas: the reads that may lag go to a replica, and fall back to the primary when it is down.

``SessionManager(url, read_url=...)`` sends only the calls whose results may be a
little stale to a replica: :data:`REPLICA_CALLS`. Everything else stays on the
primary: every write, every read a write depends on (resolution, idempotency
checks) and every read a caller makes of its own writes (``get_session``,
``get_messages``, ``session_usage``, ``export_transcript``, the lifecycle's counts).

A replica whose call fails with our :class:`StorageError` (down, unreachable,
not yet a replica of this database) is set aside for :data:`RETRY_REPLICA_AFTER`
seconds and the call runs on the primary at once: a replica that is down slows
no call by more than one failed attempt.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy.engine import URL

from ..backends.engine import Database, to_database
from ..errors import InvalidInput, StorageError
from .transactions import CoreWork, PreparedWork, TransactionRunner

__all__ = ["REPLICA_CALLS", "RETRY_REPLICA_AFTER", "ReplicaReads", "replica_databases"]

T = TypeVar("T")

#: The public calls a manager with ``read_url`` sends to a replica.
REPLICA_CALLS = ("list_sessions", "search_messages", "cost_overview")

#: Seconds a replica that failed a call is left out before it is tried again.
RETRY_REPLICA_AFTER = 5.0

ReadUrl = str | os.PathLike[str] | URL | Database


def replica_databases(read_url: ReadUrl | Sequence[ReadUrl] | None, primary: Database) -> list[Database]:
    """The replicas ``read_url`` names (one URL or several), checked to be servers of the primary's backend."""
    if read_url is None:
        return []
    given = list(read_url) if isinstance(read_url, (list, tuple)) else [read_url]
    if not given:
        raise InvalidInput("read_url", "expected a URL or a list of URLs, got an empty list")
    backend = primary.url.get_backend_name()
    if backend == "sqlite":
        raise InvalidInput("read_url", "read replicas need a server database (PostgreSQL or MariaDB), not SQLite")
    replicas = []
    for target in given:
        if not isinstance(target, (str, URL, Database)) or (isinstance(target, str) and "://" not in target):
            raise InvalidInput("read_url", f"expected a {backend} URL, got {target!r}")
        database = to_database(target)
        if database.url.get_backend_name() != backend:
            raise InvalidInput("read_url", f"a replica must be {backend} like the primary, got {database.shown}")
        replicas.append(database)
    return replicas


class ReplicaReads:
    """Runs lag-tolerant reads on the replicas in turn; on the primary when there is none or they fail."""

    def __init__(self, primary: TransactionRunner, replicas: Sequence[TransactionRunner]) -> None:
        self._primary = primary
        self._replicas = list(replicas)
        self._turn = itertools.count()
        self._down_until: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def targets(self) -> list[str]:
        """The replicas, as URLs with passwords hidden."""
        return [replica.target for replica in self._replicas]

    def read(self, work: CoreWork[T]) -> T:
        """:meth:`TransactionRunner.read` on a replica, else on the primary."""
        for index in self._order():
            try:
                return self._replicas[index].read(work)
            except StorageError:
                self._set_aside(index)
        return self._primary.read(work)

    def read_prepared(self, work: PreparedWork[T], *, snapshot: bool = False) -> T:
        """:meth:`TransactionRunner.read_prepared` on a replica, else on the primary."""
        for index in self._order():
            try:
                return self._replicas[index].read_prepared(work, snapshot=snapshot)
            except StorageError:
                self._set_aside(index)
        return self._primary.read_prepared(work, snapshot=snapshot)

    def close(self) -> None:
        """Close the replicas' connections (the primary's runner is the manager's to close)."""
        for replica in self._replicas:
            replica.close()

    def _order(self) -> list[int]:
        """The replicas to try, starting with the next in turn; those set aside left out."""
        if not self._replicas:
            return []
        now = time.monotonic()
        start = next(self._turn) % len(self._replicas)
        with self._lock:
            return [
                index
                for index in (*range(start, len(self._replicas)), *range(start))
                if self._down_until.get(index, 0.0) <= now
            ]

    def _set_aside(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + RETRY_REPLICA_AFTER
