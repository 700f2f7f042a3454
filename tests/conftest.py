"""Shared fixtures: every public-API test runs once per configured backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from starpod_session import SessionManager

from .backends import (
    ALL_BACKENDS,
    URLS_VARIABLE,
    ServerDatabase,
    check_reachable,
    configured_server_urls,
    skip_reason,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: The Rust-era files, copied into the project so a checkout anywhere runs the suite.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_servers: dict[str, ServerDatabase] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the run at once when a server named in the environment is unreachable."""
    for backend, url in configured_server_urls().items():
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


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a test runs against: ``sqlite``, ``postgresql`` or ``mariadb``."""
    name = request.param
    if name != "sqlite" and name not in _servers:
        pytest.skip(skip_reason(name))
    return name


@pytest.fixture
def db_target(backend: str, tmp_path: Path) -> str:
    """A clean database at the schema head: a new SQLite file, or an emptied server database."""
    if backend == "sqlite":
        return str(tmp_path / "sessions.db")
    return _servers[backend].migrated_and_empty()


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
def manager(make_manager: Callable[..., SessionManager]) -> SessionManager:
    """A manager on a clean database of the test's backend."""
    return make_manager()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    """Print passed/failed/skipped counts per backend, so CI shows each one ran."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in ALL_BACKENDS}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for name in ALL_BACKENDS:
                if f"[{name}" in report.nodeid or f"-{name}]" in report.nodeid or f"-{name}-" in report.nodeid:
                    counts[name][outcome] += 1
    terminalreporter.section("per-backend results")
    for name in ALL_BACKENDS:
        c = counts[name]
        terminalreporter.write_line(
            f"{name}: {c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped"
        )
