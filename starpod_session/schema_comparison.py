"""What a comparison of the models with a database (``alembic check``, autogenerate) looks at.

Shared by the migrations' environment and the tests, so both compare the same things.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SAWarning

__all__ = [
    "EXPRESSION_INDEXES",
    "SEARCH_OBJECTS",
    "include_in_comparison",
    "expression_index_warnings_silenced",
]

#: Indexes on an expression. SQLite's reflection cannot read them back, so
#: autogenerate cannot compare them; tests/test_migrations.py checks them instead.
EXPRESSION_INDEXES = frozenset({"idx_usage_stats_day_model_user"})

#: The full-text search objects of migration 0008, which SQLAlchemy metadata cannot
#: describe: SQLite's FTS5 table (and the shadow tables FTS5 keeps beside it; its
#: triggers are not reflected at all), PostgreSQL's generated ``content_tsv`` column
#: (on that backend only) and its GIN index, MariaDB's FULLTEXT index. Deliberately
#: left out of the comparison; tests/test_migrations.py checks their DDL on each
#: backend instead.
SEARCH_OBJECTS = frozenset(
    {
        "session_messages_fts",
        *(f"session_messages_fts_{shadow}" for shadow in ("data", "idx", "docsize", "config", "content")),
        "content_tsv",
        "ix_session_messages_search",
        "ix_session_messages_fulltext",
    }
)


def include_in_comparison(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    """Compare only what this library owns and what can be compared (Alembic's ``include_object``).

    Databases adopted from the Rust crate also hold ``_sqlx_migrations``, tables of
    other Starpod crates and extra columns such as ``is_archived``: they are left
    untouched, so migrations and ``alembic check`` ignore them.
    """
    if reflected and compare_to is None and type_ in ("table", "column"):
        return False
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return False
    if type_ in ("table", "column", "index") and name in SEARCH_OBJECTS:
        return False
    return True


@contextmanager
def expression_index_warnings_silenced() -> Iterator[None]:
    """Silence SQLAlchemy's and Alembic's notes that they skip :data:`EXPRESSION_INDEXES`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        yield
