"""Full-text search over message content, with each engine's own index, backfilled here.

- SQLite: an FTS5 table ``session_messages_fts`` over ``session_messages.content``
  (external content: it stores only the index, keyed by the message id), kept in
  step by three triggers, so rows written by any program (the Rust crate
  included) are indexed too. Tokenizer ``unicode61 remove_diacritics 0``:
  case-insensitive, accents significant, as on the servers.
- PostgreSQL: a stored generated column ``content_tsv`` holding
  ``to_tsvector('simple', left(content, 100000))``, with a GIN index on it: no
  stemming and no stop words, so every language is indexed word for word. A
  tsvector is limited to 1 MiB, hence the first 100,000 characters of a message.
  Stored, so ranking a match reads its vector instead of parsing its content
  again (an index on the expression alone made ranking a common word slow);
  generated, so rows written by any program (the Rust crate included) get it.
- MariaDB: ``content`` gets a case-insensitive, accent-sensitive collation (its
  index folds case by it; ``utf8mb4_bin`` folds ASCII only), and an InnoDB
  ``FULLTEXT`` index, created with the stop-word
  list switched off so that "the" or "about" can be searched for as on the other
  backends. ``innodb_ft_min_token_size`` (3 by default, server-wide) still leaves
  shorter words out of the index: the library matches those by pattern.

On SQLite the backfill inserts the stored messages into the index ``BATCH`` at
a time, by id, and the progress hook ``upgrade_schema(progress=...)`` leaves in
the Alembic config hears the messages done after each batch. The index's
segments are laid out otherwise than by one ``rebuild``, but it holds the same
rows, words, positions and statistics, so every query finds the same messages
with the same ``bm25`` scores (they read only the index's counts). FTS5 writes
out its pending terms at each statement's end: batches of 1,000 messages cost
45% more instructions than the rebuild (many small segments, merged again) and
10,000 18% on 200,000 messages, 50,000 6% there and 5% on a million (callgrind;
what remains is each row's pass through the virtual table's insert). The whole upgrade is one transaction
on SQLite: a run killed half-way leaves no index, and the run again builds it
all.

On PostgreSQL and MariaDB the backfill is DDL, done by the server in one
statement (the generated column, the FULLTEXT index): the hook hears the
messages' count before it and after it. MariaDB commits the DDL at once: a run
killed after the index was made finds it and goes on.

These objects are outside the models (SQLAlchemy cannot describe them, nor a
column that exists on one backend only);
``schema.SEARCH_OBJECTS`` keeps ``alembic check`` from reporting them
and tests/schema/test_migrations.py checks their DDL instead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS_TABLE = "session_messages_fts"
PG_INDEX = "ix_session_messages_search"
#: Frozen copy of ``repositories.search.PG_VECTOR_COLUMN``.
PG_VECTOR_COLUMN = "content_tsv"
MARIADB_INDEX = "ix_session_messages_fulltext"
#: Frozen copy of ``repositories.search.PG_INDEXED_CHARS``.
PG_INDEXED_CHARS = 100_000
#: Frozen copy of ``types.SEARCHABLE_TEXT_COLLATION``.
SEARCH_COLLATION = "utf8mb4_uca1400_as_ci"
#: Frozen copy of ``schema.BACKFILL_PROGRESS``.
BACKFILL_PROGRESS = "backfill_progress"
#: Messages a batch of the SQLite backfill indexes (see above).
BATCH = 50_000

SQLITE_UPGRADE = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(content, content='session_messages', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER session_messages_fts_insert AFTER INSERT ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END",
    f"CREATE TRIGGER session_messages_fts_delete AFTER DELETE ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); END",
    f"CREATE TRIGGER session_messages_fts_update AFTER UPDATE OF content ON session_messages BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content); "
    f"INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END",
)
#: The SQLite backfill: the messages after ``:after`` up to ``:last`` (ids), indexed in id order.
SQLITE_BACKFILL = (
    f"INSERT INTO {FTS_TABLE}(rowid, content) "
    "SELECT id, content FROM session_messages WHERE id > :after AND id <= :last ORDER BY id"
)
#: Where the next batch ends, and how many messages it holds.
SQLITE_NEXT_BATCH = (
    "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM session_messages WHERE id > :after ORDER BY id LIMIT :batch)"
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS session_messages_fts_update",
    "DROP TRIGGER IF EXISTS session_messages_fts_delete",
    "DROP TRIGGER IF EXISTS session_messages_fts_insert",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    report, total = _progress("session_messages", sa.text("SELECT COUNT(*) FROM session_messages"))
    if dialect == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)
        _sqlite_backfill(report)
        return
    if dialect == "postgresql":
        # Adding the column computes it for every message already stored (the backfill).
        op.execute(
            f"ALTER TABLE session_messages ADD COLUMN {PG_VECTOR_COLUMN} tsvector GENERATED ALWAYS AS "
            f"(to_tsvector('simple'::regconfig, left(content, {PG_INDEXED_CHARS}))) STORED"
        )
        op.execute(f"CREATE INDEX {PG_INDEX} ON session_messages USING gin ({PG_VECTOR_COLUMN})")
    elif dialect in ("mysql", "mariadb"):
        # The index folds case by the column's collation; utf8mb4_bin folds ASCII only.
        op.execute(f"ALTER TABLE session_messages MODIFY content LONGTEXT COLLATE {SEARCH_COLLATION} NOT NULL")
        indexes = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("session_messages")}
        if MARIADB_INDEX not in indexes:  # else made by a run killed later in this revision (see above)
            op.execute("SET SESSION innodb_ft_enable_stopword = OFF")
            op.execute(f"CREATE FULLTEXT INDEX {MARIADB_INDEX} ON session_messages (content)")
            op.execute("SET SESSION innodb_ft_enable_stopword = ON")
    report(total)


def _sqlite_backfill(report: Callable[[int], None]) -> None:
    """Index every message already stored, ``BATCH`` at a time in id order, reporting after each batch."""
    connection = op.get_bind()
    after, done = -(2**63), 0  # below any id
    while True:
        last, count = connection.execute(sa.text(SQLITE_NEXT_BATCH), {"after": after, "batch": BATCH}).one()
        if not count:
            return
        connection.execute(sa.text(SQLITE_BACKFILL), {"after": after, "last": last})
        after, done = last, done + count
        report(done)


def _progress(table: str, rows: sa.Executable) -> tuple[Callable[[int], None], int]:
    """``(report, total)`` for the hook ``upgrade_schema(progress=...)`` left: ``total`` counted by ``rows``,
    ``report(done)`` after each batch. Without a hook (plain ``alembic``) nothing is counted or reported."""
    config = op.get_context().config
    hook = config.attributes.get(BACKFILL_PROGRESS) if config is not None else None
    if hook is None:
        return (lambda done: None), 0
    total = op.get_bind().execute(rows).scalar_one()
    hook(revision, table, 0, total)
    return (lambda done: hook(revision, table, done, total)), total


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX {PG_INDEX}")
        op.execute(f"ALTER TABLE session_messages DROP COLUMN {PG_VECTOR_COLUMN}")
    elif dialect in ("mysql", "mariadb"):
        op.execute(f"DROP INDEX {MARIADB_INDEX} ON session_messages")
        op.execute("ALTER TABLE session_messages MODIFY content LONGTEXT COLLATE utf8mb4_bin NOT NULL")
