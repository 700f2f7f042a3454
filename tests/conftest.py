"""Shared fixtures: every public-API test runs once per configured backend."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy

from starpod_session import AsyncSessionManager, Channel, SessionManager

from .backends import (
    ALL_BACKENDS,
    URLS_VARIABLE,
    ServerDatabase,
    check_reachable,
    configured_server_urls,
    not_configured_hint,
)

#: Files the tests start from (the Rust-era databases), committed with the tests.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_servers: dict[str, ServerDatabase] = {}


def pytest_report_header(config: pytest.Config) -> str:
    """The SQLAlchemy this run uses (CI runs the suite on the lowest one pyproject.toml admits and the newest)."""
    return f"SQLAlchemy {sqlalchemy.__version__}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        choices=ALL_BACKENDS,
        metavar="NAME",
        help="run the backend-parametrised tests on this backend only (repeatable; "
        f"servers must be named in {URLS_VARIABLE}); tests without a backend still run",
    )


def selected_backends(config: pytest.Config) -> tuple[str, ...]:
    """The backends ``--backend`` asks for, all of them by default."""
    chosen = config.getoption("backend") or ALL_BACKENDS
    return tuple(name for name in ALL_BACKENDS if name in chosen)


def running_backends(config: pytest.Config) -> tuple[str, ...]:
    """The backends the backend-parametrised tests run on: SQLite and the reachable configured servers."""
    return tuple(name for name in selected_backends(config) if name == "sqlite" or name in _servers)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the run at once when a server named in the environment is unreachable."""
    configured = configured_server_urls()
    for backend in session.config.getoption("backend") or ():
        if backend != "sqlite" and backend not in configured:
            raise pytest.UsageError(f"--backend {backend}: {not_configured_hint([backend])}")
    for backend, url in configured.items():
        if backend not in selected_backends(session.config):
            continue
        try:
            check_reachable(url)
        except Exception as error:  # any driver or network error
            raise pytest.UsageError(
                f"{URLS_VARIABLE} names {backend} at {url.render_as_string(hide_password=True)}, "
                f"which cannot be reached: {error}"
            ) from error
        try:
            _servers[backend] = ServerDatabase(url)
        except Exception as error:
            raise pytest.UsageError(
                f"could not create this run's scratch database on {backend} "
                f"({url.render_as_string(hide_password=True)}): {error}"
            ) from error


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _servers.values():
        server.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses a backend once per running backend.

    Backends that are not configured get no test at all, rather than hundreds of
    skips: the summary at the end says once which ones did not run and why.
    """
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", running_backends(metafunc.config), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a test runs against: ``sqlite``, ``postgresql`` or ``mariadb``."""
    return request.param


@pytest.fixture
def writable_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy a file of ``tests/fixtures`` into the test's folder, so the committed file is never opened.

    ``writable_copy(name)`` returns the copy, named ``name`` or the optional second argument.
    """

    def copy(name: str, copy_name: str | None = None) -> Path:
        destination = tmp_path / (copy_name or name)
        shutil.copyfile(FIXTURES / name, destination)  # copies the bytes, not the read-only mode
        return destination

    return copy


@pytest.fixture(scope="session")
def sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run, for ``db_target`` to copy (running every
    migration for each test cost more than most tests themselves)."""
    template = tmp_path_factory.mktemp("template") / "sessions.db"
    SessionManager(template).close()  # the last connection's close checkpoints the WAL into the file
    assert not template.with_name("sessions.db-wal").exists()
    return template


@pytest.fixture(scope="session")
def clean_database(sqlite_at_head: Path) -> Callable[[str, Path], str]:
    """``clean_database(backend, folder)``: a clean database at the schema head, for fixtures of any scope:
    a fresh copy of a migrated SQLite file in ``folder``, or this run's emptied server database."""

    def clean(backend: str, folder: Path) -> str:
        if backend == "sqlite":
            path = folder / "sessions.db"
            shutil.copyfile(sqlite_at_head, path)
            os.chmod(path, 0o600)  # as the library creates it
            return str(path)
        return _servers[backend].migrated_and_empty()

    return clean


@pytest.fixture
def db_target(backend: str, tmp_path: Path, clean_database: Callable[[str, Path], str]) -> str:
    """A clean database at the schema head (see ``clean_database``).

    Tests of creating or migrating a database use ``empty_db_target`` or a path of their own.
    """
    return clean_database(backend, tmp_path)


@pytest.fixture
def empty_db_target(backend: str, tmp_path: Path) -> str:
    """A database holding no table at all (for migration tests)."""
    if backend == "sqlite":
        return str(tmp_path / "empty.db")
    server = _servers[backend]
    server.drop_everything()
    return server.url.render_as_string(hide_password=False)


@pytest.fixture
def make_manager(db_target: str, tmp_path: Path) -> Iterator[Callable[..., SessionManager]]:
    """Open managers on the test's database (closed at teardown)."""
    opened: list[SessionManager] = []

    def make(**options: object) -> SessionManager:
        manager = SessionManager(db_target, tmp_path / "sessions", **options)
        opened.append(manager)
        return manager

    yield make
    for manager in opened:
        manager.close()


@pytest.fixture
def make_async(db_target: str, tmp_path: Path) -> Iterator[Callable[..., AsyncSessionManager]]:
    """Open async managers on the test's database (closed at teardown)."""
    opened: list[AsyncSessionManager] = []

    def make(**options: object) -> AsyncSessionManager:
        manager = AsyncSessionManager(db_target, tmp_path / "sessions", **options)
        opened.append(manager)
        return manager

    yield make
    for manager in opened:
        asyncio.run(manager.aclose())


@pytest.fixture
def manager(make_manager: Callable[..., SessionManager]) -> SessionManager:
    """A manager on a clean database of the test's backend."""
    return make_manager()


@pytest.fixture
def session_id(manager: SessionManager) -> str:
    """An open session of channel main on the test's manager."""
    return manager.create_session(Channel.MAIN, "k")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Print passed/failed/skipped counts per backend, so CI shows each one ran, and why any did not."""
    if config.option.collectonly:
        return
    counts: dict[str, Counter[str]] = {name: Counter() for name in ALL_BACKENDS}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for name in ALL_BACKENDS:
                if f"[{name}" in report.nodeid or f"-{name}]" in report.nodeid or f"-{name}-" in report.nodeid:
                    counts[name][outcome] += 1
    running, selected = running_backends(config), selected_backends(config)
    terminalreporter.section("per-backend results")
    for name in ALL_BACKENDS:
        c = counts[name]
        if name in running:
            status = f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped"
        else:
            status = "not configured" if name in selected else "not selected (--backend)"
        terminalreporter.write_line(f"{name}: {status}")
    not_configured = [name for name in selected if name not in running]
    if not_configured:
        terminalreporter.write_line(f"skipped {' and '.join(not_configured)}: {not_configured_hint(not_configured)}")
