"""Archived sessions, and the table behind the tool statistics.

``session_metadata.is_archived``: the Rust crate added this column (its
``core.db`` files carry it, with the flags it wrote); it is added where it is
missing and adopted, values and all, where it is already there.

``tool_calls``: one row per ``tool_use`` message and per ``tool_result``
message reporting an error, holding what ``cost_overview().by_tool`` groups
and counts, so the report never parses message JSON. Existing messages are
read in batches and parsed here, in Python, exactly as ``save_message`` does
from now on (a frozen copy of that reading follows: a revision must not change
when the library does).

The backfill reads ``BATCH`` messages at a time (keyset by id) and reports each
batch to the progress hook ``upgrade_schema(progress=...)`` leaves in the Alembic
config (nothing under the plain ``alembic`` command). MariaDB commits the DDL at
once: a run killed during the backfill leaves ``tool_calls`` behind, without the
rows (they were not committed), and the run again drops and builds it anew.

Going down drops ``tool_calls`` (it is derived from the messages, and rebuilt
on the way up) and ``is_archived`` where this revision added it; a Rust-era
file (one with ``_sqlx_migrations``) keeps its ``is_archived``, which belongs
to the crate and holds flags nothing else can restore.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# The column types as this revision creates them, frozen (see 0001): DDL-only variants.
IntBoolean = sa.Boolean(create_constraint=False).with_variant(sa.Integer(), "sqlite")
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ShortText = sa.Text().with_variant(sa.String(255), "mysql", "mariadb")
ExactChannelText = sa.Text().with_variant(sa.String(64, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
ExactShortText = sa.Text().with_variant(sa.String(255, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
UtcTimestamp = (
    sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite").with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
)

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARIADB_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BATCH = 1000
TOOL_USE, TOOL_RESULT, UNKNOWN_TOOL, MAX_CHARS = "tool_use", "tool_result", "unknown", 255
#: Frozen copy of ``schema.BACKFILL_PROGRESS``.
BACKFILL_PROGRESS = "backfill_progress"


def upgrade() -> None:
    if "is_archived" not in _session_columns():
        # A plain ALTER TABLE on SQLite too: a constant default needs no rebuild (and a
        # batch rebuild would copy the generated open_slot column, which SQLite refuses).
        op.add_column(
            "session_metadata", sa.Column("is_archived", IntBoolean, server_default=sa.false(), nullable=False)
        )
    if "tool_calls" in sa.inspect(op.get_bind()).get_table_names():
        op.drop_table("tool_calls")  # left by a run killed on MariaDB, whose DDL commits at once (see above)
    tool_calls = op.create_table(
        "tool_calls",
        sa.Column("message_id", Count, autoincrement=False, nullable=False),
        sa.Column("session_id", ShortText, nullable=False),
        sa.Column("role", ExactChannelText, nullable=False),
        sa.Column("call_id", ExactShortText, nullable=True),
        sa.Column("tool_name", ExactShortText, nullable=True),
        sa.Column("timestamp", UtcTimestamp, nullable=False),
        sa.Column("is_error", IntBoolean, server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["session_messages.id"],
            name=op.f("fk_tool_calls_message_id_session_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_tool_calls")),
        **MARIADB_TABLE_OPTIONS,
    )
    op.create_index("idx_tool_calls_call", "tool_calls", ["session_id", "call_id"])
    op.create_index("idx_tool_calls_report", "tool_calls", ["role", "timestamp", "tool_name", "is_error"])
    _backfill(tool_calls)


def downgrade() -> None:
    op.drop_index("idx_tool_calls_report", table_name="tool_calls")
    op.drop_index("idx_tool_calls_call", table_name="tool_calls")
    op.drop_table("tool_calls")
    if "_sqlx_migrations" not in sa.inspect(op.get_bind()).get_table_names():
        op.drop_column("session_metadata", "is_archived")  # SQLite 3.35+ drops an unindexed column in place


def _session_columns() -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns("session_metadata")}


# -- backfill -----------------------------------------------------------------------------

#: Timestamps travel untyped: the database's own value goes back as it came (a
#: Rust-era nanosecond fraction included).
_messages = sa.table(
    "session_messages",
    sa.column("id", sa.Integer),
    sa.column("session_id", sa.Text),
    sa.column("role", sa.Text),
    sa.column("content", sa.Text),
    sa.column("timestamp"),
)


def _backfill(tool_calls: sa.Table) -> None:
    """Results first, so each use is inserted already knowing whether an error answered it."""
    connection = op.get_bind()
    raw = sa.table(
        tool_calls.name,
        *(sa.column(c.name, sa.types.NullType() if c.name == "timestamp" else c.type) for c in tool_calls.c),
    )
    report, _total = _progress(
        tool_calls.name,
        sa.select(sa.func.count()).select_from(_messages).where(_messages.c.role.in_((TOOL_RESULT, TOOL_USE))),
    )
    done = 0
    failed: set[tuple[str, str]] = set()
    for rows in _messages_of_role(connection, TOOL_RESULT):
        done += len(rows)
        errors = []
        for message_id, session_id, content, timestamp in rows:
            call_id, is_error = _read_result(content)
            if is_error and call_id is not None:
                failed.add((session_id, call_id))
                errors.append(_row(message_id, session_id, TOOL_RESULT, call_id, None, timestamp, True))
        if errors:
            connection.execute(sa.insert(raw), errors)
        report(done)
    for rows in _messages_of_role(connection, TOOL_USE):
        done += len(rows)
        uses = []
        for message_id, session_id, content, timestamp in rows:
            name, call_id = _read_use(content)
            is_error = call_id is not None and (session_id, call_id) in failed
            uses.append(_row(message_id, session_id, TOOL_USE, call_id, name, timestamp, is_error))
        connection.execute(sa.insert(raw), uses)
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


def _row(message_id, session_id, role, call_id, tool_name, timestamp, is_error) -> dict:
    return dict(
        message_id=message_id,
        session_id=session_id,
        role=role,
        call_id=call_id,
        tool_name=tool_name,
        timestamp=timestamp,
        is_error=is_error,
    )


def _messages_of_role(connection: sa.Connection, role: str) -> Iterator[list[tuple]]:
    """The messages of one role, ``BATCH`` at a time in id order (keyset paging)."""
    after = -1
    while True:
        rows = connection.execute(
            sa.select(_messages.c.id, _messages.c.session_id, _messages.c.content, _messages.c.timestamp)
            .where(_messages.c.role == role, _messages.c.id > after)
            .order_by(_messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        yield [tuple(row) for row in rows]
        after = rows[-1][0]


# -- frozen copy of starpod_session._common.tool_calls as of this revision --------------------------


def _read_use(content: str) -> tuple[str, str | None]:
    fields = _object(content)
    name = _storable(fields.get("name"))
    name = UNKNOWN_TOOL if name is None else name[:MAX_CHARS]
    return name, _call_id(fields.get("id"))


def _read_result(content: str) -> tuple[str | None, bool]:
    fields = _object(content)
    flag = fields.get("is_error")
    return _call_id(fields.get("tool_use_id")), flag is True or (type(flag) in (int, float) and flag == 1)


def _object(content: str) -> dict:
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _call_id(value: object) -> str | None:
    call_id = _storable(value)
    return call_id if call_id is not None and len(call_id) <= MAX_CHARS else None


def _storable(value: object) -> str | None:
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value
