"""MariaDB Galera clusters: what a multi-primary cluster needs that a single server does not.

- **Read-your-writes through any node.** A node applies the other nodes' writes
  a moment after they commit, so a session created through node A may not be
  there yet for a write through node B. Every connection to a Galera node runs
  with ``wsrep_sync_wait`` including :data:`SYNC_WAIT` (reads, updates and
  deletes, inserts): each statement first waits until the node has applied
  everything the cluster committed before it began.
- **One migration at a time, cluster-wide.** ``GET_LOCK`` holds on one node
  only. On Galera the migration lock is a row of :data:`LOCK_TABLE`: two nodes
  inserting it at once cannot both commit (certification lets one through),
  and the holder deletes it when done. A row older than :data:`STALE_LOCK_SECONDS`
  (its holder died) is taken over.
- **A node without quorum** answers error 1047; :func:`advice` says what it means.

Nothing here runs on a MariaDB server that is not a Galera node (``wsrep_on`` off).
"""

from __future__ import annotations

import time
import uuid
from contextlib import closing
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

__all__ = [
    "LOCK_TABLE",
    "NO_QUORUM",
    "STALE_LOCK_SECONDS",
    "SYNC_WAIT",
    "advice",
    "configure_connection",
    "is_galera",
    "lock_migrations",
    "unlock_migrations",
]

#: ``wsrep_sync_wait`` bits set on every connection to a Galera node: 1 reads (and BEGIN),
#: 2 UPDATE and DELETE, 4 INSERT and REPLACE. Bits the server's default already sets are kept.
SYNC_WAIT = 7

#: The table holding the cluster-wide migration lock (one row while a migration runs). Not a
#: model: created on Galera only, and left out of ``alembic check`` as a table we do not map.
LOCK_TABLE = "starpod_migration_lock"

#: A lock row older than this (seconds) belongs to a migrator that died: it is taken over.
STALE_LOCK_SECONDS = 600

#: MariaDB's error when a Galera node is not part of the primary component (no quorum, or still joining).
NO_QUORUM = 1047

#: What other errors say when the node lost the primary component (a commit refused: 1180, ...).
_NO_QUORUM_SIGNS = ("Not connected to Primary Component", "WSREP has not yet prepared node")

#: Connection ``info`` key: the owner id of the lock row this connection holds.
_HOLDER = "starpod_galera_lock_owner"

_LOCK_NAME = "migrate"
_DUPLICATE_KEY = 1062
_CONFLICT = frozenset({1213, 1205})


def configure_connection(dbapi_connection: Any) -> bool:
    """On a new driver connection: whether it is to a Galera node, whose ``wsrep_sync_wait`` it then sets.

    ``SHOW VARIABLES`` rather than ``@@wsrep_on``: a server built without wsrep
    returns no row instead of an error.
    """
    with closing(dbapi_connection.cursor()) as cursor:
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        galera = row is not None and str(row[1]).upper() == "ON"
        if galera:
            cursor.execute(f"SET SESSION wsrep_sync_wait = @@session.wsrep_sync_wait | {SYNC_WAIT}")
    dbapi_connection.commit()  # leave nothing open for the call that follows
    return galera


def is_galera(connection: Connection) -> bool:
    """Whether ``connection`` is to a MariaDB Galera node."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return False
    row = connection.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").first()
    return row is not None and str(row[1]).upper() == "ON"


def lock_migrations(connection: Connection, timeout: float = STALE_LOCK_SECONDS) -> None:
    """Take the cluster-wide migration lock on ``connection`` (a Galera node), waiting for its holder.

    The row is committed before this returns, so every node sees it; DDL commits
    implicitly on MariaDB, so no transaction could hold it.
    """
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (name VARCHAR(64) NOT NULL PRIMARY KEY, "
        "owner VARCHAR(64) NOT NULL, taken_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
    )
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute(
                text(f"INSERT INTO {LOCK_TABLE} (name, owner, taken_at) VALUES (:name, :owner, UTC_TIMESTAMP(6))"),
                {"name": _LOCK_NAME, "owner": owner},
            )
            connection.exec_driver_sql("COMMIT")
            connection.info[_HOLDER] = owner
            return
        except DBAPIError as error:
            connection.exec_driver_sql("ROLLBACK")
            if _number(error) not in (_DUPLICATE_KEY, *_CONFLICT) or time.monotonic() > deadline:
                raise
        # Held by another migrator: take it over only if it is stale (its holder died).
        connection.execute(
            text(
                f"DELETE FROM {LOCK_TABLE} WHERE name = :name AND "
                f"taken_at < UTC_TIMESTAMP(6) - INTERVAL {STALE_LOCK_SECONDS} SECOND"
            ),
            {"name": _LOCK_NAME},
        )
        connection.exec_driver_sql("COMMIT")
        time.sleep(0.1)


def unlock_migrations(connection: Connection) -> None:
    """Release the lock :func:`lock_migrations` took on ``connection`` (nothing if it holds none)."""
    owner = connection.info.pop(_HOLDER, None)
    if owner is None:
        return
    connection.execute(
        text(f"DELETE FROM {LOCK_TABLE} WHERE name = :name AND owner = :owner"), {"name": _LOCK_NAME, "owner": owner}
    )
    connection.exec_driver_sql("COMMIT")


def advice(error: BaseException) -> str:
    """What to do about ``error`` when it is a Galera node's (``""`` otherwise)."""
    original = error.orig if isinstance(error, DBAPIError) else error
    if _number(error) == NO_QUORUM or any(sign in str(original) for sign in _NO_QUORUM_SIGNS):
        return (
            " (this Galera node is not part of the cluster's primary component: it lost quorum, most nodes "
            "being down or unreachable, or it is still joining; point the URL at a node of the primary component, "
            "or bring enough nodes back, or bootstrap the survivor with SET GLOBAL wsrep_provider_options="
            "'pc.bootstrap=YES' once you are sure the others are gone)"
        )
    return ""


def _number(error: BaseException) -> int | None:
    original = error.orig if isinstance(error, DBAPIError) else error
    args = getattr(original, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
