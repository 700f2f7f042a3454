"""Column types that store the same Python values identically on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, Integer, String, Text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from .._common.limits import SHORT_TEXT_LENGTH
from .._common.timestamps import format_rfc3339, parse_rfc3339, rfc3339_reader

__all__ = [
    "ChannelText",
    "Count",
    "EpochSeconds",
    "ExactChannelText",
    "ExactShortText",
    "IntBoolean",
    "LongText",
    "Money",
    "SearchableText",
    "ShortText",
    "UtcDay",
    "UtcTimestamp",
]

#: Identifiers, keys, roles and model names (see :data:`limits.SHORT_TEXT_LENGTH`).
ShortText: TypeEngine[str] = Text().with_variant(String(SHORT_TEXT_LENGTH), "mysql", "mariadb")

#: Channel names, kept short so MariaDB's 3072-byte index limit fits the
#: (channel, key, user_id) indexes.
CHANNEL_NAME_LENGTH = 64
ChannelText: TypeEngine[str] = Text().with_variant(String(CHANNEL_NAME_LENGTH), "mysql", "mariadb")

#: MariaDB's ``utf8mb4_bin`` is a PAD SPACE collation (``'k' = 'k '``); values the
#: library looks up or groups by (channels, keys, user ids, models) use the NO PAD
#: binary collation there, so they compare exactly as on SQLite and PostgreSQL.
EXACT_MARIADB_COLLATION = "utf8mb4_nopad_bin"
ExactShortText: TypeEngine[str] = Text().with_variant(
    String(SHORT_TEXT_LENGTH, collation=EXACT_MARIADB_COLLATION), "mysql", "mariadb"
)
ExactChannelText: TypeEngine[str] = Text().with_variant(
    String(CHANNEL_NAME_LENGTH, collation=EXACT_MARIADB_COLLATION), "mysql", "mariadb"
)

#: Message bodies and summaries: MariaDB's TEXT stops at 64 KiB, LONGTEXT at 4 GiB.
LongText: TypeEngine[str] = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

#: Message content. On MariaDB a case-insensitive, accent-sensitive collation
#: (``utf8mb4_bin`` folds ASCII only: ``Привет`` would not match ``привет``), set
#: for 0008's FULLTEXT index; since 0010 the search reads a table of lower-cased
#: words instead, and the collation serves the substring matches. Nothing compares
#: content by value.
SEARCHABLE_TEXT_COLLATION = "utf8mb4_uca1400_as_ci"
SearchableText: TypeEngine[str] = Text().with_variant(
    mysql.LONGTEXT(collation=SEARCHABLE_TEXT_COLLATION), "mysql", "mariadb"
)

#: Token counts up to 2**63-1. SQLite's INTEGER is already 64-bit (and is what the
#: Rust crate declared).
Count: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

#: Costs in USD: an IEEE double everywhere (REAL, as the Rust crate declared, on SQLite).
Money: TypeEngine[float] = Double().with_variant(sqlite.REAL(), "sqlite")


class EpochSeconds(TypeDecorator[float]):
    """Seconds since the Unix epoch as a float, the same IEEE double on every backend (REAL on SQLite):
    ADK's event timestamps and update times, where a float read back must equal the one stored."""

    impl = Double()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(sqlite.REAL() if dialect.name == "sqlite" else Double())

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return None  # every driver hands back a float as it is (psycopg's Double would need the column's type)


class UtcTimestamp(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` in Python, stored natively where the backend can.

    * SQLite: TEXT in the Rust crate's RFC 3339 shape (SQLite has no time type, and
      SQLAlchemy's ``DateTime(timezone=True)`` would silently drop the offset).
    * PostgreSQL: ``TIMESTAMP WITH TIME ZONE`` (microseconds).
    * MariaDB: ``DATETIME(6)`` holding UTC (its ``TIMESTAMP`` ends in 2038).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database layer")
        if dialect.name == "sqlite":
            return format_rfc3339(value)
        utc = value.astimezone(timezone.utc)
        if dialect.name in ("mysql", "mariadb"):
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_rfc3339(value)
        instant: datetime = value
        if instant.tzinfo is None:
            return instant.replace(tzinfo=timezone.utc)
        return instant.astimezone(timezone.utc)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # Every timestamp read on SQLite: straight to the parser, without the
        # generic decorator wrapper around an impl that converts nothing.
        return rfc3339_reader(lambda value: self.process_result_value(value, dialect))


class UtcDay(TypeDecorator[date]):
    """A UTC calendar day: a ``date`` in Python; on SQLite the ``YYYY-MM-DD`` text that
    begins the day's RFC 3339 timestamps (so the day of a row is ``substr(timestamp, 1, 10)``),
    ``DATE`` on the servers."""

    impl = Date()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Date())

    def process_bind_param(self, value: date | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return value.isoformat()

    def process_result_value(self, value: Any, dialect: Dialect) -> date | None:
        if isinstance(value, str):
            return date.fromisoformat(value)
        result: date | None = value
        return result


class IntBoolean(TypeDecorator[bool]):
    """A ``bool`` in Python; INTEGER 0/1 on SQLite (as the Rust crate declared it), BOOLEAN elsewhere."""

    impl = Boolean(create_constraint=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Integer())
        return dialect.type_descriptor(Boolean(create_constraint=False))

    def process_bind_param(self, value: bool | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return 1 if value else 0
        return bool(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> bool | None:
        return None if value is None else bool(value)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name == "postgresql":
            return None  # a native BOOLEAN: the driver hands back bools
        # Every flag read elsewhere (several per listed session): a dict look-up, no Python call.
        return _FLAGS.__getitem__


class _Flags(dict[Any, "bool | None"]):
    """0/1 (and NULL) as stored on SQLite and MariaDB, to bool (and None); any other number by truth."""

    def __missing__(self, value: Any) -> bool:
        return bool(value)


_FLAGS = _Flags({0: False, 1: True, None: None})
