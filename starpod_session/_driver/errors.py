"""The one wrapper of the fast path's driver errors: as the ``DBAPIError`` SQLAlchemy would raise.

The facade's retries and error mapping (``transactions.py``) see the same errors
whether a statement ran through SQLAlchemy or on the driver: the exception class
matching the driver's (``OperationalError``, ``IntegrityError``, ...) and
``connection_invalidated`` saying whether the connection was lost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from .sqlalchemy_internals import dbapi_error

__all__ = ["wrap_driver_error"]


def wrap_driver_error(
    error: Exception,
    dialect: Dialect,
    *,
    statement: str | None = None,
    parameters: Any = (),
    driver_connection: Any = None,
    cursor: Any = None,
) -> DBAPIError:
    """``error`` (the driver's) as SQLAlchemy wraps it, saying whether the connection was lost."""
    lost = bool(dialect.is_disconnect(error, driver_connection, cursor))  # type: ignore[arg-type]  # a driver Error
    return dbapi_error(statement, parameters, error, dialect, connection_invalidated=lost)
