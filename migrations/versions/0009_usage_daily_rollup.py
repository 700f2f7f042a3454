"""``usage_daily``: usage summed per (UTC day, model, user), kept by triggers, built from existing rows.

``cost_overview`` over a million usage rows grouped them all on every call
(0.4 s on SQLite, 1 s on PostgreSQL, 4-6 s on MariaDB, which has no hash
aggregation). It now reads this table for the whole days of its range and scans
only the rows of the partial days at the edges (through
``idx_usage_stats_timestamp``), so its answer stays exact to the microsecond.

Triggers on ``usage_stats`` (after INSERT, UPDATE of a summed or grouping
column, and DELETE; one row at a time) add a row to its group, or take it out,
deleting a group whose last row went. Being in the database, they keep the
table right whoever writes: ``record_usage``, ``delete_session``, ``prune``,
``forget_user`` (its pseudonym moves the rows to a new group, so the old user id
leaves this table too), or the Rust crate itself.

- A row without a model counts under ``'unknown'``, as every report names it
  (and a key column needs a value on every backend).
- Token sums are kept as the sums of the values' high and low 32 bits: exact up
  to 2**31 rows a group on every backend, where a plain BIGINT (or SQLite's
  64-bit integer) sum of counts up to 2**63-1 would overflow.
- The day is ``substr(timestamp, 1, 10)`` of SQLite's RFC 3339 text,
  ``timezone('UTC', timestamp)::date`` on PostgreSQL, ``DATE(timestamp)`` of
  MariaDB's UTC ``DATETIME``: the days the reports have always used.
- SQLite's covering index ``idx_usage_stats_day_model_user`` (0005), which only
  the report's full grouping used, is dropped: it cost every insert a write.

The triggers are created before the table is filled: on SQLite and PostgreSQL
in the same transaction (creating a trigger locks ``usage_stats`` against
writers until the commit); MariaDB commits each DDL statement, so a row another
program inserts in the instant between the triggers and the fill could be
counted twice (``starpod-session`` processes wait for the migration's lock).

The fill is an ``INSERT ... SELECT ... GROUP BY`` per batch of whole UTC days
(about ``BATCH`` usage rows, more when one day holds more), each batch found
through ``idx_usage_stats_timestamp`` (``timestamp >= :lo AND timestamp < :hi``,
the bounds midnights, so every (day, model, user) group lies within one batch)
and fed to the grouping in id order, as the one statement over the whole table
reads them: each group's ``cost_usd`` is the same floating-point sum, added in
the same order, so the rollup is the one statement's to the bit. The progress
hook ``upgrade_schema(progress=...)`` leaves in the Alembic config hears the
usage rows done after each batch. A run killed on SQLite or PostgreSQL rolls the
whole upgrade back; on MariaDB (whose DDL commits at once) it left the table and
triggers without the (uncommitted) fill: the run again drops them first. The
batches cost a sort by id each: on SQLite about 0.3 s more than the one statement
for 100,000 usage rows (a million messages).

Going down drops the triggers, the function and the table, and puts the SQLite
index back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence

import sqlalchemy as sa
from alembic import op

# The column types as this revision creates them, frozen (see 0001): DDL-only variants.
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Double().with_variant(sa.REAL(), "sqlite")
ExactShortText = sa.Text().with_variant(sa.String(255, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
UtcDay = sa.Date().with_variant(sa.Text(), "sqlite")

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARIADB_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: Frozen copy of ``schema.BACKFILL_PROGRESS``.
BACKFILL_PROGRESS = "backfill_progress"
TABLE = "usage_daily"
#: Usage rows a batch of the fill holds, rounded up to whole days.
BATCH = 1000
UNKNOWN_MODEL = "unknown"
PG_FUNCTION = "usage_daily_apply"
TRIGGERS = ("usage_daily_insert", "usage_daily_update", "usage_daily_delete")
TOKENS = ("input_tokens", "output_tokens", "cache_read", "cache_write")
HALVES = tuple(f"{name}_{half}" for name in TOKENS for half in ("high", "low"))
SUMMED = ("turns", "cost_usd", *HALVES)
#: What changes a row's group or sums: an UPDATE that changes none of them leaves the rollup alone
#: (taking a float out and adding it back need not give the same sum).
WATCHED = ("timestamp", "model", "user_id", "cost_usd", *TOKENS)
OLD_INDEX = "idx_usage_stats_day_model_user"
OLD_INDEX_COLUMNS = [
    "model",
    "user_id",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read",
    "cache_write",
    "timestamp",
]

_DAY = {
    "sqlite": "substr({row}.timestamp, 1, 10)",
    "postgresql": "CAST(timezone('UTC', {row}.timestamp) AS DATE)",
    "mariadb": "DATE({row}.timestamp)",
}


def _values(dialect: str, row: str) -> list[str]:
    """The rollup columns of one usage row ``row`` (``NEW``/``OLD``, or the table in the fill), in SQL."""
    values = [_DAY[dialect].format(row=row), f"COALESCE({row}.model, '{UNKNOWN_MODEL}')", f"{row}.user_id"]
    values += ["1", f"{row}.cost_usd"]
    for name in TOKENS:
        if dialect == "sqlite":  # the same halves the reports took before (arithmetic shift, mask)
            values += [f"({row}.{name} >> 32)", f"({row}.{name} & 4294967295)"]
        else:  # counts are never negative here; MariaDB's >> would turn the value unsigned
            values += (
                [f"({row}.{name} DIV 4294967296)", f"({row}.{name} MOD 4294967296)"]
                if dialect == "mariadb"
                else [f"({row}.{name} / 4294967296)", f"({row}.{name} % 4294967296)"]
            )
    return values


def _add(dialect: str, row: str) -> str:
    """Add the usage row to its group (creating the group)."""
    columns = ", ".join(("day", "model", "user_id", *SUMMED))
    values = ", ".join(_values(dialect, row))
    if dialect == "mariadb":
        sums = ", ".join(f"{c} = {c} + VALUES({c})" for c in SUMMED)
        return f"INSERT INTO {TABLE} ({columns}) VALUES ({values}) ON DUPLICATE KEY UPDATE {sums}"
    prefix = f"{TABLE}." if dialect == "postgresql" else ""
    sums = ", ".join(f"{c} = {prefix}{c} + excluded.{c}" for c in SUMMED)
    return f"INSERT INTO {TABLE} ({columns}) VALUES ({values}) ON CONFLICT (day, model, user_id) DO UPDATE SET {sums}"


def _remove(dialect: str, row: str) -> str:
    """Take the usage row out of its group, then delete the group if it was the last: two statements."""
    day, model, user, _turns, *amounts = _values(dialect, row)
    where = f"day = {day} AND model = {model} AND user_id = {user}"
    sums = ", ".join(f"{c} = {c} - {v}" for c, v in zip(SUMMED, ["1", *amounts], strict=True))
    return f"UPDATE {TABLE} SET {sums} WHERE {where}; DELETE FROM {TABLE} WHERE {where} AND turns = 0"


#: The order a scan of the whole of ``usage_stats`` reads it in, the order the one statement over the whole
#: table adds each group's rows up in: the rowid on SQLite, the clustered primary key on MariaDB (which keeps
#: a derived table's ORDER BY only under a LIMIT), the heap's on PostgreSQL (its hash aggregation over a
#: sequential scan; a sort before grouping need not keep an order, so there the sum itself is ordered).
_SCAN_ORDER = {
    "sqlite": "ORDER BY id",
    "postgresql": "ORDER BY u.ctid",
    "mariadb": "ORDER BY id LIMIT 18446744073709551615",
}


def _fill(dialect: str, bounds: Collection[str]) -> str:
    """The usage rows of one batch (``_where(bounds)``), grouped into the rollup, each group's rows added up
    in ``_SCAN_ORDER``."""
    day, model, user, _one, cost, *halves = _values(dialect, "u")
    columns = ", ".join(("day", "model", "user_id", *SUMMED))
    if dialect == "postgresql":
        rows, cost_sum = f"usage_stats AS u{_where(bounds)}", f"SUM({cost} {_SCAN_ORDER[dialect]})"
    else:
        read = ", ".join(("timestamp", "model", "user_id", "cost_usd", *TOKENS))  # what the sort carries
        rows = f"(SELECT {read} FROM usage_stats{_where(bounds)} {_SCAN_ORDER[dialect]}) AS u"
        cost_sum = f"SUM({cost})"
    sums = ", ".join(["COUNT(*)", cost_sum, *(f"SUM({h})" for h in halves)])
    return (
        f"INSERT INTO {TABLE} ({columns}) SELECT {day}, {model}, {user}, {sums} FROM {rows} "
        f"GROUP BY {day}, {model}, {user}"
    )


def _where(bounds: Collection[str]) -> str:
    """The usage rows from ``:lo`` (included) to ``:hi`` (excluded), of the bounds named (none: all)."""
    tests = [f"timestamp {'>=' if name == 'lo' else '<'} :{name}" for name in ("lo", "hi") if name in bounds]
    return f" WHERE {' AND '.join(tests)}" if tests else ""


def _fill_by_days(dialect: str, report: Callable[[int], None], counting: bool) -> None:
    """Fill the rollup in batches of whole days, oldest first, reporting the usage rows done after each."""
    connection = op.get_bind()
    day = _DAY[dialect].format(row="usage_stats")
    ahead = "ORDER BY timestamp LIMIT 1 OFFSET :batch"  # the row BATCH rows on, through the timestamp index
    bounds: dict[str, object] = {}
    done = 0
    while True:
        found = connection.execute(
            sa.text(f"SELECT {day} FROM usage_stats{_where(bounds)} {ahead}"), {**bounds, "batch": BATCH}
        ).scalar()
        end = None if found is None else _batch_end(dialect, found, bounds.get("lo"))
        if end is not None:
            bounds["hi"] = end
        connection.execute(sa.text(_fill(dialect, bounds)), bounds)
        if counting:
            rows = sa.text(f"SELECT COUNT(*) FROM usage_stats{_where(bounds)}")
            done += connection.execute(rows, bounds).scalar_one()
            report(done)
        if end is None:
            return
        bounds = {"lo": end}


def _batch_end(dialect: str, found: object, lo: object) -> object:
    """Where the batch from ``lo`` ends: at the midnight that starts ``found`` (the day of the row ``BATCH``
    rows on), or the next one when the batch began that day (a day of more than ``BATCH`` rows); ``None``
    (the rest) when ``found`` is not a date (SQLite's text that is no RFC 3339 timestamp)."""
    day = found if dialect != "sqlite" else _sqlite_date(str(found))
    if not isinstance(day, dt.date):
        return None
    end = _midnight(dialect, day)
    if lo is not None and end <= lo:  # type: ignore[operator]
        end = _midnight(dialect, day + dt.timedelta(days=1))
    return end


def _sqlite_date(text: str) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.isoformat() == text else None


def _midnight(dialect: str, day: dt.date) -> object:
    """The day's first instant, as ``usage_stats.timestamp`` is compared with it."""
    if dialect == "sqlite":
        return day.isoformat()  # RFC 3339 text: every timestamp of the day sorts at or after it, before the next
    if dialect == "postgresql":
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return dt.datetime(day.year, day.month, day.day)  # MariaDB's DATETIME holds UTC


def sqlite_triggers() -> list[str]:
    """The SQLite triggers (also read by the tests, which compare them with ``sqlite_master``)."""
    insert, update, delete = TRIGGERS
    return [
        f"CREATE TRIGGER {insert} AFTER INSERT ON usage_stats BEGIN {_add('sqlite', 'new')}; END",
        f"CREATE TRIGGER {update} AFTER UPDATE OF {', '.join(WATCHED)} ON usage_stats "
        f"WHEN {' OR '.join(f'old.{c} IS NOT new.{c}' for c in WATCHED)} BEGIN "
        f"{_remove('sqlite', 'old')}; {_add('sqlite', 'new')}; END",
        f"CREATE TRIGGER {delete} AFTER DELETE ON usage_stats BEGIN {_remove('sqlite', 'old')}; END",
    ]


def postgresql_objects() -> list[str]:
    """A plpgsql function for the three PostgreSQL triggers (each one row at a time)."""
    insert, update, delete = TRIGGERS
    function = (
        f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
        f"    {_remove('postgresql', 'OLD')};\n"
        "  END IF;\n"
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
        f"    {_add('postgresql', 'NEW')};\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$$"
    )
    each = f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
    return [
        function,
        f"CREATE TRIGGER {insert} AFTER INSERT ON usage_stats {each}",
        f"CREATE TRIGGER {update} AFTER UPDATE OF {', '.join(WATCHED)} ON usage_stats "
        f"FOR EACH ROW WHEN ({' OR '.join(f'OLD.{c} IS DISTINCT FROM NEW.{c}' for c in WATCHED)}) "
        f"EXECUTE FUNCTION {PG_FUNCTION}()",
        f"CREATE TRIGGER {delete} AFTER DELETE ON usage_stats {each}",
    ]


def mariadb_triggers() -> list[str]:
    """MariaDB's triggers: an UPDATE trigger fires on every update, so it compares the watched columns."""
    insert, update, delete = TRIGGERS
    unchanged = " AND ".join(f"OLD.{c} <=> NEW.{c}" for c in WATCHED)
    return [
        f"CREATE TRIGGER {insert} AFTER INSERT ON usage_stats FOR EACH ROW {_add('mariadb', 'NEW')}",
        f"CREATE TRIGGER {update} AFTER UPDATE ON usage_stats FOR EACH ROW BEGIN IF NOT ({unchanged}) THEN "
        f"{_remove('mariadb', 'OLD')}; {_add('mariadb', 'NEW')}; END IF; END",
        f"CREATE TRIGGER {delete} AFTER DELETE ON usage_stats FOR EACH ROW BEGIN {_remove('mariadb', 'OLD')}; END",
    ]


def _dialect() -> str:
    name = op.get_bind().dialect.name
    return "mariadb" if name in ("mysql", "mariadb") else name


def upgrade() -> None:
    dialect = _dialect()
    if dialect == "mariadb" and TABLE in sa.inspect(op.get_bind()).get_table_names():
        for trigger in TRIGGERS:  # left by a run killed half-way, without the fill (see above)
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.drop_table(TABLE)
    op.create_table(
        TABLE,
        sa.Column("day", UtcDay, nullable=False),
        sa.Column("model", ExactShortText, nullable=False),
        sa.Column("user_id", ExactShortText, nullable=False),
        sa.Column("turns", Count, nullable=False),
        sa.Column("cost_usd", Money, nullable=False),
        *(sa.Column(name, Count, nullable=False) for name in HALVES),
        sa.PrimaryKeyConstraint("day", "model", "user_id", name=op.f("pk_usage_daily")),
        **MARIADB_TABLE_OPTIONS,
    )
    if dialect == "sqlite":
        op.drop_index(OLD_INDEX, table_name="usage_stats")
        statements = sqlite_triggers()
    elif dialect == "postgresql":
        statements = postgresql_objects()
    else:
        statements = mariadb_triggers()
    for statement in statements:
        op.execute(statement)
    report, _total = _progress(TABLE, sa.text("SELECT COUNT(*) FROM usage_stats"))
    _fill_by_days(dialect, report, counting=_listening())


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


def _listening() -> bool:
    config = op.get_context().config
    return config is not None and config.attributes.get(BACKFILL_PROGRESS) is not None


def downgrade() -> None:
    dialect = _dialect()
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON usage_stats" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    op.drop_table(TABLE)
    if dialect == "sqlite":
        op.create_index(OLD_INDEX, "usage_stats", [sa.text("substr(timestamp, 1, 10)"), *OLD_INDEX_COLUMNS])
