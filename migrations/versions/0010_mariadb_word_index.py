"""MariaDB: search through a table of words (postings) instead of InnoDB's FULLTEXT index.

InnoDB's full-text search took 60-150 ms for a two-word query over a million
messages (and more on a busy server): it reads and intersects both words'
document lists in its own auxiliary tables, then fetches every match's row
through ``FTS_DOC_ID`` before it can sort them, with no index-only or LIMIT
push-down. ``session_message_words`` holds, per message, each word it contains
and how often: its primary key (word, message id) makes a word's messages one
range scan of a few pages, so intersecting two words reads a few hundred KB of
index and no message row until the page of hits is known.

- One row per (word, message): ``hits`` is how often the word occurs in it.
  Words are what a search query is made of (``search_query.indexed_words``):
  runs of letters and digits, lower-cased, cut to 64 characters; words of
  scripts written without spaces are left out (queries match those as
  substrings). Every word is kept: no minimum length and no stop words.
- ``ON DELETE CASCADE`` from ``session_messages``: deleting a message (delete,
  prune, forget) deletes its words.
- The library writes a message's words in the transaction that stores it. A row
  another program inserts into ``session_messages`` on MariaDB is not found by a
  search (SQLite's triggers and PostgreSQL's generated column index any writer's
  rows; a MariaDB trigger cannot split text into words at any useful speed). The
  Rust crate writes SQLite only.
- The backfill reads every stored message in pages of 1,000, in id order, and
  reports each page to the progress hook ``upgrade_schema(progress=...)`` leaves
  in the Alembic config. MariaDB commits the DDL at once: a run killed during the
  backfill left the table without the uncommitted words (or, killed later, the
  FULLTEXT index already gone); the run again drops the table and builds it anew.
- The FULLTEXT index of 0008 goes (it cost every insert and no longer answers
  anything); ``content`` keeps 0008's case-insensitive collation, which the
  substring matches use.

Going down drops the table and creates the FULLTEXT index again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "session_message_words"
#: Frozen copy of 0008's ``MARIADB_INDEX``.
FULLTEXT_INDEX = "ix_session_messages_fulltext"
#: Frozen copy of ``search_query.MAX_INDEXED_WORD``.
MAX_WORD = 64
PAGE = 1000
#: Frozen copy of ``schema.BACKFILL_PROGRESS``.
BACKFILL_PROGRESS = "backfill_progress"

# Frozen copy of ``search_query.indexed_words`` as of this revision.
_SEPARATORS = re.compile(r"[^\w]|_")
_NO_SPACE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


def _indexed_words(content: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in _SEPARATORS.split(content):
        if word and (
            word.isascii()
            or not any(not ch.isascii() and unicodedata.name(ch, "").startswith(_NO_SPACE_SCRIPTS) for ch in word)
        ):
            word = word.lower()[:MAX_WORD]
            counts[word] = counts.get(word, 0) + 1
    return counts


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute(f"DROP TABLE IF EXISTS {TABLE}")  # left by a run killed half-way (see above)
    op.execute(
        f"CREATE TABLE {TABLE} ("
        f"word VARCHAR({MAX_WORD}) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
        "message_id BIGINT NOT NULL, "
        "hits INTEGER NOT NULL, "
        f"CONSTRAINT pk_{TABLE} PRIMARY KEY (word, message_id), "
        f"INDEX ix_{TABLE}_message_id (message_id), "
        f"CONSTRAINT fk_{TABLE}_message_id_session_messages FOREIGN KEY (message_id) "
        "REFERENCES session_messages (id) ON DELETE CASCADE"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    connection = op.get_bind()
    messages = sa.text("SELECT id, content FROM session_messages WHERE id > :last ORDER BY id LIMIT :page")
    insert = sa.text(f"INSERT INTO {TABLE} (word, message_id, hits) VALUES (:word, :message_id, :hits)")
    report, _total = _progress(TABLE, sa.text("SELECT COUNT(*) FROM session_messages"))
    done = last = 0
    while rows := connection.execute(messages, {"last": last, "page": PAGE}).all():
        words = [
            {"word": word, "message_id": message_id, "hits": hits}
            for message_id, content in rows
            for word, hits in _indexed_words(content).items()
        ]
        if words:
            connection.execute(insert, words)
        last = rows[-1][0]
        done += len(rows)
        report(done)
    indexes = {index["name"] for index in sa.inspect(connection).get_indexes("session_messages")}
    if FULLTEXT_INDEX in indexes:
        op.execute(f"DROP INDEX {FULLTEXT_INDEX} ON session_messages")


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
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute("SET SESSION innodb_ft_enable_stopword = OFF")
    op.execute(f"CREATE FULLTEXT INDEX {FULLTEXT_INDEX} ON session_messages (content)")
    op.execute("SET SESSION innodb_ft_enable_stopword = ON")
    op.execute(f"DROP TABLE {TABLE}")
