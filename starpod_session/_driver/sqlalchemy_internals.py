"""Every SQLAlchemy internal the fast path reads, in one place.

Each has no public equivalent; ``tests/storage/test_sqlalchemy_internals.py`` pins
what this module expects of it on the installed SQLAlchemy (CI runs it on the
lowest version ``pyproject.toml`` admits and on the newest), so a release that
changes one fails there, by name, rather than somewhere in a call.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

__all__ = ["bound_in_order", "dbapi_error", "fetches_lastrowid"]


def bound_in_order(compiled: SQLCompiler) -> tuple[tuple[BindParameter[Any], str], ...]:
    """Each bound parameter of ``compiled`` with its name in the SQL, in the order the driver takes them.

    Internals: ``SQLCompiler.bind_names`` (parameter → compiled name),
    ``positiontup`` (the compiled names in positional order) and
    ``escaped_bind_names`` (a compiled name → the name the SQL carries, where the
    dialect had to escape it).
    """
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    order = compiled.positiontup if compiled.positional else list(by_name)
    escaped = {} if compiled.positional else compiled.escaped_bind_names
    return tuple((by_name[name], escaped.get(name, name)) for name in order or ())


def fetches_lastrowid(dialect: Dialect) -> bool:
    """Whether the dialect reads an INSERT's new key from the cursor's ``lastrowid`` (else: ``RETURNING``).

    Internal: ``DefaultDialect.postfetch_lastrowid``, which the ``Dialect`` interface leaves out.
    """
    return bool(dialect.postfetch_lastrowid)  # type: ignore[attr-defined]


def dbapi_error(
    statement: str | None, parameters: Any, error: Exception, dialect: Dialect, *, connection_invalidated: bool
) -> DBAPIError:
    """``error`` wrapped in the ``DBAPIError`` subclass SQLAlchemy picks for it.

    Internal: ``DBAPIError.instance``, SQLAlchemy's own factory (it maps the
    driver's exception class onto ``OperationalError``, ``IntegrityError``, ...).
    """
    wrapped = DBAPIError.instance(
        statement,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=connection_invalidated,
        dialect=dialect,
    )
    return cast(DBAPIError, wrapped)  # a driver error is always wrapped as one
