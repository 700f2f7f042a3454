"""Moving a whole database: :func:`copy_database` between any two backends, :func:`dump_database` to a
portable JSON Lines file and :func:`restore_database` from one.

Every table of the models moves (``storage.repositories.transfer`` holds the SQL), ids kept,
in batches committed one by one with the bookkeeping of how far each table got, so
running the same call again after a kill continues where it stopped. The source is
read in one snapshot through a read-only connection and never written; a Rust-era
(or any older) SQLite source is upgraded on a temporary copy. The target must be
empty, or hold the unfinished transfer from the same source. At the end the two
sides are compared (:class:`Check`) and the bookkeeping goes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, cast

import attrs
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from .._clock import utc_now
from .._common.timestamps import format_rfc3339, parse_rfc3339
from .._common.urls import redact_text
from .._version import __version__
from ..backends import BACKENDS, backend_of, backend_of_url
from ..backends.column_types import UtcTimestamp
from ..backends.engine import (
    READ_ONLY,
    SNAPSHOT,
    Database,
    create_read_only_engine,
    create_storage_engine,
    to_database,
)
from ..errors import (
    DumpInvalid,
    InvalidInput,
    SchemaOutdated,
    StarpodSessionError,
    StorageError,
    TargetNotEmpty,
    VerificationFailed,
)
from ..records import ProgressCallback, TransferProgress
from ..storage.advice import is_connection_lost, is_disk_full
from ..storage.models import Base, MessageRow, UsageRow
from ..storage.repositories import transfer as storage
from ..storage.repositories.transfer import Summary, TablePlan
from ..storage.schema import (
    current_revision,
    head_revision,
    refuse_unknown_revision,
    refuse_unstamped_tables,
    upgrade_schema,
)

__all__ = [
    "DEFAULT_BATCH",
    "DUMP_FORMAT",
    "Check",
    "ProgressCallback",
    "TransferProgress",
    "TransferReport",
    "copy_database",
    "dump_database",
    "restore_database",
]

#: Rows per committed batch (fewer when their text passes :data:`BATCH_BYTES`).
DEFAULT_BATCH = 5000
#: A batch is committed once its text reaches this many characters, whatever its row count.
BATCH_BYTES = 32 * 1024 * 1024
#: Rows fetched from the source at a time.
_FETCH = 1000
#: The ``format`` of a dump's first and last lines.
DUMP_FORMAT = "starpod-session-dump"
_DUMP_VERSION = 1


@attrs.frozen
class Check:
    """One thing a verification compared: ``name``, the source's value and the target's."""

    name: str
    source: str
    target: str
    ok: bool


@attrs.frozen
class TransferReport:
    """What a transfer moved and what its verification compared.

    ``rows``: (table, rows in the target) in the order they were copied;
    ``resumed``: whether this call continued an unfinished transfer.
    """

    source: str
    target: str
    rows: tuple[tuple[str, int], ...]
    checks: tuple[Check, ...]
    resumed: bool


# -- the public calls ----------------------------------------------------------------------------


def copy_database(
    src: str | os.PathLike[str] | URL | Database,
    dst: str | os.PathLike[str] | URL | Database,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> TransferReport:
    """Copy every table of ``src`` into ``dst`` (paths or URLs, as ``SessionManager`` takes them).

    Ids are kept, timestamps to the microsecond (SQLite to SQLite: the stored text
    as it is, nanoseconds of Rust-era rows included); ``dst``'s search index is built
    as its backend needs and its id counters are moved past the copied ids. ``dst``
    is created at this release's schema when empty. Raises :class:`TargetNotEmpty`
    when ``dst`` holds other rows (unless it holds an unfinished copy from ``src``,
    which this call then continues), :class:`VerificationFailed` when the two
    sides differ at the end, :class:`StorageError` naming the side that failed
    (a full disk included: free space and call again, it continues).
    ``KeyboardInterrupt`` leaves every committed batch in place: call again.
    """
    batch_size = _check_batch(batch_size)
    _check_progress(progress)
    source_db, target_db = _named(src, "src"), _named(dst, "dst")
    _refuse_same(source_db, target_db)
    identity = f"copy from {source_db.shown}"
    plans = storage.table_plans()
    with ExitStack() as stack:
        source = stack.enter_context(_opened_source(source_db, progress))
        target = stack.enter_context(_Target.opened(target_db, identity, plans))
        raw = backend_of(source.dialect) is backend_of(target.dialect)
        with _errors(source_db.shown), _snapshot(source) as reading:
            totals = {plan.name: storage.count_rows(reading, plan) for plan in plans}
            for plan in plans:
                state = target.state(plan)
                after = storage.key_from_json(plan, state["last"], raw=raw) if state.get("last") else None
                batches = _batches(storage.stream_rows(reading, plan, after, _FETCH, raw=raw), plan, batch_size)
                target.write_table(plan, batches, totals[plan.name], "copy", progress, raw=raw)
            marks = storage.high_water_marks(reading, plans)
            expected = storage.summarise(reading, plans)
        return target.finish(marks, expected, source_db.shown, progress)
    raise AssertionError("unreachable")  # pragma: no cover


def dump_database(
    src: str | os.PathLike[str] | URL | Database,
    file: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    compress: bool | None = None,
) -> TransferReport:
    """Write every row of ``src`` to ``file`` as JSON Lines, read in one snapshot.

    The first line names the format, the schema revision, the tables with their
    columns and row counts, and the id counters; then one line per row
    (``{"table": ..., "row": {...}}``, timestamps in RFC 3339 to the microsecond);
    the last line carries the SHA-256 of every line before it. Gzip-compressed
    when ``compress`` is true, or when it is ``None`` and the name ends in ``.gz``.
    Written to a temporary file beside ``file`` and renamed into place at the end,
    so ``file`` is never half-written. ``src`` is never written.
    """
    _check_progress(progress)
    path = Path(file)
    compress = path.suffix == ".gz" if compress is None else bool(compress)
    source_db = _named(src, "src")
    plans = storage.table_plans()
    with _opened_source(source_db, progress) as source, _errors(source_db.shown), _snapshot(source) as reading:
        totals = {plan.name: storage.count_rows(reading, plan) for plan in plans}
        marks = storage.high_water_marks(reading, plans)
        header = {
            "format": DUMP_FORMAT,
            "format_version": _DUMP_VERSION,
            "schema_revision": head_revision(),
            "library_version": __version__,
            "created_at": format_rfc3339(utc_now()),
            "source": source_db.shown,
            "tables": [
                {"name": plan.name, "columns": [c.name for c in plan.columns], "rows": totals[plan.name]}
                for plan in plans
            ],
            "counters": marks,
        }
        with _DumpWriter.open(path, compress) as writer:
            writer.line(header)
            for plan in plans:
                encoders = [_encoder(column) for column in plan.columns]
                names = [column.name for column in plan.columns]
                done = 0
                for rows in storage.stream_rows(reading, plan, None, _FETCH):
                    for row in rows:
                        writer.line(
                            {"table": plan.name, "row": {n: e(v) for n, e, v in zip(names, encoders, row, strict=True)}}
                        )
                    done += len(rows)
                    _report(progress, "dump", plan.name, done, totals[plan.name])
                _report(progress, "dump", plan.name, done, totals[plan.name])
            writer.finish({"format": DUMP_FORMAT, "end": True, "rows": totals})
    checks = tuple(Check(f"{name}: rows", str(count), str(count), True) for name, count in totals.items())
    return TransferReport(source_db.shown, str(path), tuple(totals.items()), checks, resumed=False)


def restore_database(
    file: str | os.PathLike[str],
    dst: str | os.PathLike[str] | URL | Database,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> TransferReport:
    """Load a file :func:`dump_database` wrote into ``dst``, verified as :func:`copy_database` verifies.

    The whole file is read and its checksum and row counts checked before anything
    is written (:class:`DumpInvalid` for a truncated, altered or foreign file;
    :class:`SchemaTooNew`/:class:`SchemaOutdated` for a dump of another schema
    revision). The target rules and the resumption are those of :func:`copy_database`.
    """
    batch_size = _check_batch(batch_size)
    _check_progress(progress)
    path = Path(file)
    dump = _check_dump(path, progress)
    target_db = _named(dst, "dst")
    plans = storage.table_plans()
    with _Target.opened(target_db, f"restore of dump sha256:{dump.checksum}", plans) as target:
        rows_of = _dump_rows(path, plans)
        for plan in plans:
            skip = target.state(plan).get("rows", 0)
            batches = _batches(_skipping(rows_of(plan.name), skip), plan, batch_size)
            target.write_table(plan, batches, dump.totals[plan.name], "restore", progress, raw=False)
        return target.finish(dump.counters, dump.summary, str(path), progress)


# -- opening each side ---------------------------------------------------------------------------


def _named(value: object, field: str) -> Database:
    try:
        return to_database(value)  # type: ignore[arg-type]
    except InvalidInput as error:
        raise InvalidInput(field, error.reason) from None


def _check_progress(progress: object) -> None:
    if progress is not None and not callable(progress):
        raise InvalidInput("progress", f"expected a function or None, got {type(progress).__name__}")


def _check_batch(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size", f"expected a positive int, got {batch_size!r}")
    return batch_size


def _refuse_same(source: Database, target: Database) -> None:
    a, b = source.url, target.url
    backend_a, backend_b = backend_of_url(a), backend_of_url(b)
    file_a, file_b = backend_a.local_file(a), backend_b.local_file(b)
    if file_a is not None and file_b is not None:
        same = os.path.exists(file_a) and os.path.exists(file_b) and os.path.samefile(file_a, file_b)
    else:
        same = (backend_a, a.host, a.port, a.database) == (backend_b, b.host, b.port, b.database)
    if same:
        raise InvalidInput("dst", f"{target.shown} is the source itself: copy to another database")


@contextmanager
def _opened_source(database: Database, progress: ProgressCallback | None) -> Iterator[Engine]:
    """A read-only engine on the source at this release's schema.

    A SQLite file behind it (a Rust-era ``core.db`` among them) is copied into a
    temporary folder and that copy upgraded; a server database behind it must be
    upgraded first (:class:`SchemaOutdated` says how).
    """
    shown = database.shown
    backend = backend_of_url(database.url)
    file = backend.local_file(database.url)
    with ExitStack() as stack:
        if file is not None and not Path(file).is_file():
            raise InvalidInput("src", f"no database file at {shown}")
        engine = _errors(shown, lambda: create_read_only_engine(database.url))
        stack.callback(engine.dispose)
        with _errors(shown), engine.connect() as connection:
            revision = current_revision(connection)
            tables = set(inspect(connection).get_table_names())
        refuse_unknown_revision(revision, shown)
        if revision == head_revision():
            yield engine
            return
        if not tables & set(Base.metadata.tables):
            raise InvalidInput("src", f"{shown} is not a starpod-session database (it holds none of its tables)")
        if revision is None and "_sqlx_migrations" not in tables:
            with _errors(shown), engine.connect() as connection:
                refuse_unstamped_tables(connection, shown)
        if file is None:
            raise SchemaOutdated(
                f"the source {shown} is at schema revision {revision or 'none'}, this release needs "
                f"{head_revision()}; it is never written by a copy: upgrade it first "
                f"(starpod-session db upgrade --db {shown})"
            )
        engine.dispose()
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="starpod-session-copy-"))
        copy = backend.copy_file(database.url, Path(folder) / "source.db")
        engine = create_storage_engine(copy, pool_size=2, statement_timeout=None)  # bulk work: no deadline
        stack.callback(engine.dispose)
        _errors(shown, lambda: upgrade_schema(engine, target=shown, progress=progress))
        yield engine


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction seeing one snapshot of the database for all its statements."""
    with engine.connect().execution_options(**{READ_ONLY: True, SNAPSHOT: True}) as connection, connection.begin():
        yield connection


class _Target:
    """The database a copy or restore writes, with the bookkeeping of how far it got."""

    def __init__(self, database: Database, engine: Engine, plans: list[TablePlan], states: dict[str, Any]) -> None:
        self.database = database
        self.engine = engine
        self.dialect = engine.dialect
        self.plans = plans
        self._states = states
        self.resumed = bool(states)

    @classmethod
    @contextmanager
    def opened(cls, database: Database, identity: str, plans: list[TablePlan]) -> Iterator[_Target]:
        """Open the target, create its schema if it has none, and start or continue the bookkeeping.

        :class:`TargetNotEmpty` when it holds rows of ours and no unfinished transfer
        of ``identity``; :class:`SchemaTooNew` when a newer release migrated it.
        """
        shown = database.shown
        engine = _errors(shown, lambda: create_storage_engine(database.url, pool_size=2, statement_timeout=None))
        try:
            with _errors(shown), engine.connect() as connection:
                revision = current_revision(connection)
                refuse_unknown_revision(revision, shown)
                marker = storage.read_marker(connection) if storage.marker_present(connection) else None
                filled = storage.has_rows(connection, plans) if marker is None else []
            if marker is not None and marker.get("source") != identity:
                raise TargetNotEmpty(
                    f"{shown} holds an unfinished transfer ({marker.get('source')}), not this one ({identity}): "
                    "finish that one (run it again) or empty the database"
                )
            if filled:
                raise TargetNotEmpty(
                    f"{shown} already holds rows ({', '.join(filled)}); a copy or restore writes only into an "
                    "empty database (or continues its own unfinished run): give another database or empty this one"
                )
            states: dict[str, Any] = {}
            if marker is None:
                _errors(shown, lambda: upgrade_schema(engine, target=shown))
                with _errors(shown), engine.begin() as connection:
                    storage.create_marker(connection, identity)
            else:
                if revision != head_revision():
                    raise SchemaOutdated(f"{shown} holds an unfinished transfer at another schema revision")
                states = {
                    name.removeprefix("table:"): json.loads(value)
                    for name, value in marker.items()
                    if name.startswith("table:")
                }
            yield cls(database, engine, plans, states)
        finally:
            engine.dispose()

    def state(self, plan: TablePlan) -> dict[str, Any]:
        """How far the table got in an earlier run: ``rows``, ``last`` (its last key), ``done``."""
        state: dict[str, Any] = self._states.get(plan.name, {})
        return state

    def write_table(
        self,
        plan: TablePlan,
        batches: Iterable[tuple[list[tuple[Any, ...]], tuple[Any, ...]]],
        total: int,
        step: str,
        progress: ProgressCallback | None,
        *,
        raw: bool,
    ) -> None:
        """Insert the table's ``batches`` (rows, last key), each with its bookkeeping in one transaction."""
        state = dict(self.state(plan))
        if state.get("done"):
            _report(progress, step, plan.name, state["rows"], total)
            return
        rows_done = int(state.get("rows", 0))
        _report(progress, step, plan.name, rows_done, total)
        shown = self.database.shown
        for rows, last in batches:
            with _errors(shown), self.engine.begin() as connection:
                if plan.derived and rows_done == 0:
                    storage.replace_rows(connection, plan)  # what the triggers computed gives way to the source's rows
                storage.insert_rows(connection, plan, rows, raw=raw)
                rows_done += len(rows)
                storage.write_marker(connection, plan.name, {"rows": rows_done, "last": list(last), "done": False})
            _report(progress, step, plan.name, rows_done, total)
        with _errors(shown), self.engine.begin() as connection:
            if plan.derived and rows_done == 0:
                storage.replace_rows(connection, plan)
            storage.write_marker(connection, plan.name, {"rows": rows_done, "last": None, "done": True})
        self._states[plan.name] = {"rows": rows_done, "done": True}

    def finish(
        self, marks: dict[str, int], expected: Summary, source: str, progress: ProgressCallback | None
    ) -> TransferReport:
        """Index, move the id counters, compare with ``expected``; the bookkeeping goes once all agree."""
        shown = self.database.shown
        _report(progress, "verify", None, 0, 1)
        with _errors(shown):
            with self.engine.begin() as connection:
                storage.finish_search_index(connection)
            with self.engine.begin() as connection:
                storage.advance_counters(connection, marks)
            with _snapshot(self.engine) as connection:
                found = storage.summarise(connection, self.plans)
        checks = _compare(expected, found)
        _report(progress, "verify", None, 1, 1)
        failed = [check for check in checks if not check.ok]
        if failed:
            raise VerificationFailed(
                f"{shown} differs from {source} after the transfer: "
                + "; ".join(f"{c.name}: {c.source} in the source, {c.target} in the target" for c in failed[:10])
            )
        with _errors(shown), self.engine.begin() as connection:
            storage.drop_marker(connection)
        rows = tuple((plan.name, found.rows[plan.name]) for plan in self.plans)
        return TransferReport(source, shown, rows, tuple(checks), self.resumed)


def _batches(
    fetched: Iterable[list[tuple[Any, ...]]], plan: TablePlan, batch_size: int
) -> Iterator[tuple[list[tuple[Any, ...]], tuple[Any, ...]]]:
    """Group fetched rows into batches of ``batch_size`` rows or :data:`BATCH_BYTES` of text, with their last key."""
    positions = plan.key_positions
    batch: list[tuple[Any, ...]] = []
    size = 0
    for rows in fetched:
        for row in rows:
            batch.append(row)
            size += sum(len(value) for value in row if isinstance(value, str))
            if len(batch) >= batch_size or size >= BATCH_BYTES:
                yield batch, tuple(batch[-1][i] for i in positions)
                batch, size = [], 0
    if batch:
        yield batch, tuple(batch[-1][i] for i in positions)


def _report(progress: ProgressCallback | None, step: str, table: str | None, done: int, total: int) -> None:
    if progress is not None:
        progress(TransferProgress(step, table, done, total))


# -- verification ----------------------------------------------------------------------------------


def _compare(expected: Summary, found: Summary) -> list[Check]:
    checks = [
        Check(f"{name}: rows", str(count), str(found.rows.get(name)), found.rows.get(name) == count)
        for name, count in expected.rows.items()
    ]
    differing = [
        session
        for session in expected.messages_per_session.keys() | found.messages_per_session.keys()
        if expected.messages_per_session.get(session) != found.messages_per_session.get(session)
    ]
    checks.append(
        Check(
            "messages per session",
            f"{len(expected.messages_per_session)} sessions",
            f"{len(found.messages_per_session)} sessions" + (f", {len(differing)} differing" if differing else ""),
            not differing,
        )
    )
    for name, value in expected.usage_totals.items():
        other = found.usage_totals.get(name, 0)
        same = abs(value - other) <= 1e-9 * max(1.0, abs(value)) if name == "cost_usd" else value == other
        checks.append(Check(f"usage_stats: total {name}", str(value), str(other), same))
    for name, (low, high) in expected.time_ranges.items():
        other_low, other_high = found.time_ranges.get(name, (None, None))
        checks.append(
            Check(
                f"{name}: first and last",
                f"{_instant(low)} .. {_instant(high)}",
                f"{_instant(other_low)} .. {_instant(other_high)}",
                (low, high) == (other_low, other_high),
            )
        )
    return checks


def _instant(moment: datetime | None) -> str:
    return "none" if moment is None else format_rfc3339(moment)


# -- errors ------------------------------------------------------------------------------------------

#: The errors of SQLAlchemy and the drivers' errors it does not wrap (every backend's ``unwrapped_errors``).
_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    *dict.fromkeys(error for backend in BACKENDS.values() for error in backend.unwrapped_errors),
)


@contextmanager
def _errors_block(shown: str) -> Iterator[None]:
    try:
        yield
    except StarpodSessionError:
        raise
    except CommandError as error:
        raise StarpodSessionError(f"{shown}: {error}") from error
    except _DATABASE_ERRORS as error:
        reason = getattr(error, "orig", None) or error
        text = redact_text(f"{type(reason).__name__}: {reason}".split("\n")[0])
        if is_disk_full(error):
            raise StorageError(
                f"{shown} is full ({text}): every batch written so far is kept; free space (or raise the "
                "database's size limit) and run the same command again, it continues where it stopped"
            ) from error
        if is_connection_lost(error):
            raise StorageError(
                f"{shown}: the connection was lost ({text}): the server stopped or crashed (MariaDB does when its "
                "disk fills up during a rollback); every batch committed so far is kept: once the server is back, "
                "with free space, run the same command again, it continues where it stopped"
            ) from error
        if "file is not a database" in text:
            raise InvalidInput("src", f"{shown} is not a SQLite database ({text})") from error
        raise StorageError(f"{shown}: {text}") from error
    except ImportError as error:  # a server URL whose driver is not installed
        raise StorageError(f"{shown}: {error}") from error


def _errors(shown: str, call: Callable[[], Any] | None = None) -> Any:
    """Driver and Alembic errors as ours, naming the database ``shown``: a context, or around ``call``."""
    if call is None:
        return _errors_block(shown)
    with _errors_block(shown):
        return call()


# -- the dump file -----------------------------------------------------------------------------------


def _encoder(column: Any) -> Callable[[Any], Any]:
    if isinstance(column.type, UtcTimestamp):
        return lambda value: None if value is None else format_rfc3339(value)
    kind = storage.python_type(column)
    if kind is date:
        return lambda value: None if value is None else value.isoformat()
    return _same


def _decoder(column: Any) -> Callable[[Any], Any]:
    kind = storage.python_type(column)
    if kind is datetime or isinstance(column.type, UtcTimestamp):
        return lambda value: None if value is None else parse_rfc3339(value)
    if kind is date:
        return lambda value: None if value is None else date.fromisoformat(value)
    if kind is bool:
        return lambda value: None if value is None else bool(value)
    return _same


def _same(value: Any) -> Any:
    return value


class _DumpWriter:
    """Lines into a temporary file beside the dump, hashed as written; renamed into place by :meth:`finish`."""

    def __init__(self, path: Path, temporary: Path, stream: IO[bytes]) -> None:
        self._path = path
        self._temporary = temporary
        self._stream = stream
        self._hash = hashlib.sha256()

    @classmethod
    @contextmanager
    def open(cls, path: Path, compress: bool) -> Iterator[_DumpWriter]:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            raw = open(temporary, "wb")  # noqa: SIM115  # closed below, or on error
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        stream: IO[bytes] = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)) if compress else raw
        buffered: IO[bytes] = cast(IO[bytes], io.BufferedWriter(cast(Any, stream), 1 << 20)) if compress else stream
        writer = cls(path, temporary, buffered)
        try:
            yield writer
        except BaseException:
            _quietly(buffered.close)
            _quietly(raw.close)
            temporary.unlink(missing_ok=True)
            raise

        try:
            buffered.flush()
            if compress:
                stream.close()
            raw.flush()
            os.fsync(raw.fileno())
            raw.close()
            os.replace(temporary, path)
        except OSError as error:
            _quietly(raw.close)
            temporary.unlink(missing_ok=True)
            raise _write_error(path, error) from error

    def line(self, document: object) -> None:
        data = (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self._hash.update(data)
        try:
            self._stream.write(data)
        except OSError as error:
            raise _write_error(self._path, error) from error

    def finish(self, trailer: dict[str, Any]) -> None:
        trailer = {**trailer, "sha256": self._hash.hexdigest()}
        data = (json.dumps(trailer, separators=(",", ":")) + "\n").encode()
        try:
            self._stream.write(data)
        except OSError as error:
            raise _write_error(self._path, error) from error


def _write_error(path: Path, error: OSError) -> StorageError:
    return StorageError(
        f"cannot write {path}: {error.strerror or error}; nothing was left behind (the dump is written to a "
        "temporary file and renamed at the end): free space and dump again"
    )


def _quietly(call: Callable[[], object]) -> None:
    with suppress(OSError):
        call()


def _open_dump(path: Path) -> IO[bytes]:
    try:
        raw = open(path, "rb")  # noqa: SIM115  # the caller closes it
    except OSError as error:
        raise InvalidInput("file", f"cannot read {path}: {error.strerror or error}") from None
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


@attrs.frozen
class _Dump:
    checksum: str
    totals: dict[str, int]
    counters: dict[str, int]
    summary: Summary


def _check_dump(path: Path, progress: ProgressCallback | None) -> _Dump:
    """Read the whole dump once: format, revision, checksum, row counts; and what its rows add up to."""
    invalid = f"{path} is not a complete starpod-session dump"
    plans = {plan.name: plan for plan in storage.table_plans()}
    size = max(1, path.stat().st_size) if path.exists() else 1
    digest = hashlib.sha256()
    builder = _SummaryBuilder(list(plans.values()))
    counted: dict[str, int] = {}
    header: dict[str, Any] | None = None
    trailer: dict[str, Any] | None = None
    with _open_dump(path) as stream:
        raw = getattr(stream, "fileobj", stream)
        try:
            for number, line in enumerate(stream, start=1):
                if trailer is not None:
                    raise DumpInvalid(f"{invalid}: line {number} follows its last line")
                try:
                    document = json.loads(line)
                except ValueError:
                    raise DumpInvalid(f"{invalid}: line {number} is not JSON (truncated or altered)") from None
                if not isinstance(document, dict):
                    raise DumpInvalid(f"{invalid}: line {number} is not a JSON object")
                if header is None:
                    header = _check_header(document, path)
                    digest.update(line)
                    continue
                if document.get("end") is True:
                    trailer = document
                    continue
                digest.update(line)
                table, row = document.get("table"), document.get("row")
                if table not in plans or not isinstance(row, dict):
                    raise DumpInvalid(f"{invalid}: line {number} is not a row of one of its tables")
                counted[table] = counted.get(table, 0) + 1
                builder.add(plans[table], row)
                if number % 10000 == 0:
                    _report(progress, "read", None, raw.tell(), size)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise DumpInvalid(f"{invalid}: {error} (truncated or altered)") from None
    if header is None:
        raise DumpInvalid(f"{invalid}: it is empty")
    if trailer is None:
        raise DumpInvalid(f"{invalid}: its last line is missing (truncated)")
    if trailer.get("sha256") != digest.hexdigest():
        raise DumpInvalid(f"{invalid}: its checksum does not match its content (altered or damaged)")
    totals = {table["name"]: int(table["rows"]) for table in header["tables"]}
    for name, count in totals.items():
        if counted.get(name, 0) != count:
            raise DumpInvalid(f"{invalid}: {name} has {counted.get(name, 0)} rows, its header says {count}")
    _report(progress, "read", None, size, size)
    return _Dump(digest.hexdigest(), totals, dict(header.get("counters") or {}), builder.summary(totals))


def _check_header(document: dict[str, Any], path: Path) -> dict[str, Any]:
    if document.get("format") != DUMP_FORMAT or not isinstance(document.get("tables"), list):
        raise DumpInvalid(f"{path} is not a starpod-session dump (its first line does not say so)")
    if document.get("format_version") != _DUMP_VERSION:
        raise DumpInvalid(f"{path} is a dump of format version {document.get('format_version')}, this release reads 1")
    revision = document.get("schema_revision")
    refuse_unknown_revision(revision if isinstance(revision, str) else "?", str(path))
    if revision != head_revision():
        raise SchemaOutdated(
            f"{path} is a dump of schema revision {revision}, this release restores {head_revision()}: restore it "
            f"with the release that wrote it ({document.get('library_version')}), then upgrade that database "
            "and copy it (starpod-session db copy)"
        )
    known = {plan.name: [c.name for c in plan.columns] for plan in storage.table_plans()}
    for table in document["tables"]:
        if known.get(table.get("name")) != table.get("columns"):
            raise DumpInvalid(f"{path}: table {table.get('name')} has columns this release does not have")
    return document


def _dump_rows(path: Path, plans: list[TablePlan]) -> Callable[[str], Iterator[list[tuple[Any, ...]]]]:
    """A reader of the (checked) dump's rows of one table at a time, as tuples in the plans' column order.

    The rows of each table are contiguous and the tables come in the plans' order,
    so one pass through the file serves every table in turn; the rows of a table
    nobody read (done in an earlier run of the restore) are passed over.
    """
    by_name = {plan.name: plan for plan in plans}
    order = {plan.name: position for position, plan in enumerate(plans)}
    stream = _open_dump(path)
    lines = iter(stream)
    next(lines)  # the header
    pending: list[dict[str, Any]] = []

    def rows_of(name: str) -> Iterator[list[tuple[Any, ...]]]:
        plan = by_name[name]
        names = [column.name for column in plan.columns]
        decoders = [_decoder(column) for column in plan.columns]
        chunk: list[tuple[Any, ...]] = []
        while True:
            if pending:
                document = pending.pop()
            else:
                line = next(lines, None)
                if line is None:
                    stream.close()
                    break
                document = json.loads(line)
            table = document.get("table")
            if table != name:
                if table in order and order[table] < order[name]:
                    continue  # an earlier table's row, not read because that table was done
                pending.append(document)
                break
            row = document["row"]
            chunk.append(tuple(decode(row.get(n)) for n, decode in zip(names, decoders, strict=True)))
            if len(chunk) >= _FETCH:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    return rows_of


def _skipping(chunks: Iterable[list[tuple[Any, ...]]], skip: int) -> Iterator[list[tuple[Any, ...]]]:
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk[skip:]
        skip = 0


class _SummaryBuilder:
    """What :func:`storage.repositories.transfer.summarise` reads of a database, added up from a dump's rows."""

    def __init__(self, plans: list[TablePlan]) -> None:
        self._per_session: dict[str, int] = {}
        self._totals: dict[str, float] = dict.fromkeys(storage.USAGE_TOTALS, 0)
        self._ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
        self._times = {plan.name: [c.name for c in plan.columns if isinstance(c.type, UtcTimestamp)] for plan in plans}

    def add(self, plan: TablePlan, row: dict[str, Any]) -> None:
        if plan.name == MessageRow.__tablename__:
            session = str(row.get("session_id"))
            self._per_session[session] = self._per_session.get(session, 0) + 1
        elif plan.name == UsageRow.__tablename__:
            for name in self._totals:
                self._totals[name] += row.get(name) or 0
        for column in self._times[plan.name]:
            value = row.get(column)
            if not isinstance(value, str):
                continue
            try:
                moment = parse_rfc3339(value)
            except ValueError:
                raise DumpInvalid(f"a dump row of {plan.name} has {column} {value!r}, not a timestamp") from None
            key = f"{plan.name}.{column}"
            low, high = self._ranges.get(key, (None, None))
            self._ranges[key] = (
                moment if low is None or moment < low else low,
                moment if high is None or moment > high else high,
            )

    def summary(self, totals: dict[str, int]) -> Summary:
        ranges = {
            f"{name}.{column}": self._ranges.get(f"{name}.{column}", (None, None))
            for name, columns in self._times.items()
            for column in columns
        }
        usage = {name: (float(v) if name == "cost_usd" else int(v)) for name, v in self._totals.items()}
        return Summary(dict(totals), dict(self._per_session), usage, ranges)
