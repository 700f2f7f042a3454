"""What differs between SQLite, PostgreSQL and MariaDB: one module each behind one protocol (``base.Backend``).

``engine.py`` turns a path or URL into a checked ``Database`` and a configured engine,
asking the URL's backend for its connect settings; :func:`backend_of` is the one
place that tells the backends apart by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import URL, Dialect

from .._driver.statements import StatementFactory
from .base import Backend
from .mariadb import MARIADB
from .postgresql import POSTGRESQL
from .sqlite import SQLITE

__all__ = ["BACKENDS", "Backend", "backend_of", "backend_of_url", "insert_unless_duplicate"]

#: Each backend by the name SQLAlchemy gives its dialect (MySQL's is served by MariaDB's).
BACKENDS: dict[str, Backend] = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "mysql": MARIADB, "mariadb": MARIADB}


def backend_of(dialect: Dialect) -> Backend:
    """The backend of a dialect (of an engine or a connection): one dictionary look-up, fit for hot calls."""
    return BACKENDS[dialect.name]


def backend_of_url(url: URL) -> Backend:
    """The backend of a URL (checked by ``engine.to_url``)."""
    return BACKENDS[url.get_backend_name()]


def insert_unless_duplicate(
    table: Table, values: dict[str, Any], unique: Sequence[Column[Any]], id_column: Column[Any]
) -> StatementFactory:
    """An INSERT that stores nothing when a row with the same ``unique`` values exists.

    In one statement, without a savepoint, so the common case (no such row) costs
    what a plain INSERT costs. A racing insert of the same values waits for the
    other transaction and then skips (or inserts, if that one rolled back).
    SQLite and PostgreSQL skip with ``ON CONFLICT DO NOTHING``; MariaDB has no
    such clause, so a no-op ``ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)``
    makes the driver's ``lastrowid`` the existing row's id.
    """
    return lambda dialect: backend_of(dialect).insert_unless_duplicate(table, values, unique, id_column)
