"""What a repository needs of the transaction it runs in: the fast-path contract.

The hot statements (``statements.py``) run on the driver's cursor and need only a
small part of a SQLAlchemy ``Connection``: :class:`StatementRunner`. A real
``Connection`` has all of it; so has :class:`~.transaction.DriverTransaction`,
the fast path, which skips the ``Connection`` bookkeeping (it costs more than a
SQLite primary-key lookup).

Which repository methods run on which is checked, not remembered: a repository
is generic in the runner it was given, its prepared-only methods accept any
:class:`StatementRunner`, and the methods that execute Core statements declare
``self: Repository[Connection]``, so mypy rejects them on a repository built
from a bare runner (the facade's ``write_prepared`` / ``read_prepared`` work).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import PoolProxiedConnection
from sqlalchemy.engine import Dialect

__all__ = ["Runner", "StatementRunner"]


class StatementRunner(Protocol):
    """A transaction prepared statements can run in: a ``Connection``, or a ``DriverTransaction``.

    ``connection`` is the pooled driver connection; ``info`` the pooled
    connection's own dict, which lives as long as the driver connection, as
    ``Connection.info`` does. No event listener ever sees a runner that is not a
    ``Connection`` (``_driver.events``).
    """

    @property
    def dialect(self) -> Dialect: ...

    @property
    def connection(self) -> PoolProxiedConnection: ...

    @property
    def info(self) -> dict[Any, Any]: ...

    def invalidate(self, exception: BaseException | None = None) -> None: ...


#: The runner a repository was built from: ``Connection`` or any :class:`StatementRunner`.
Runner = TypeVar("Runner", bound=StatementRunner)
