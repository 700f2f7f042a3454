"""A pytest plugin that holds ``StarpodSessionService`` to Google ADK's own session contract tests.

ADK's source distribution ships no tests, so this runs them from a copy of ADK's
repository (``tests/unittests/sessions/test_session_service.py`` and the backend
registry ``_conformance.py`` beside it), never copied into ours:

    git -C ADK_CHECKOUT archive HEAD tests | tar -x -C /tmp/adk-tests
    cd /tmp/adk-tests && PYTHONPATH=/path/to/starpod-session/tests/integrations \\
        STARPOD_SESSION_TEST_URLS=postgresql+psycopg://...,mysql+pymysql://... \\
        python -m pytest -p adk_conformance_plugin -o asyncio_mode=auto \\
        tests/unittests/sessions/test_session_service.py -k starpod

(pytest-asyncio must be installed, as ADK's own test run needs it.) The plugin
registers the service as one more backend of ADK's registry per database:
``starpod_sqlite`` (a fresh file per test) and, for each server named in
``STARPOD_SESSION_TEST_URLS``, ``starpod_postgresql`` / ``starpod_mariadb`` (a
scratch database of the run, created and dropped by the plugin, emptied between
tests), each over a ``SessionManager``; and the same again over an
``AsyncSessionManager`` (``starpod_async_sqlite`` and so on: the service's calls
then run on that manager's threads). ``STARPOD_ADK_ONLY=1`` drops ADK's own
backends from the registry.

It also holds the service to the tests of that file that build their service
with ``get_session_service(...)`` instead of taking the registry's fixture
(``ADK_FACTORY_TESTS``): there ``get_session_service`` returns the service,
each time on the database of ``STARPOD_ADK_FACTORY_BACKEND`` (``sqlite``,
``postgresql`` or ``mariadb``; SQLite by default). Run them with
``-k 'starpod or <name>'``.

It imports nothing of this repository's ``tests`` package (ADK's tests are a
package named ``tests`` too).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, inspect, text
from sqlalchemy.engine import URL, make_url

from starpod_session import AsyncSessionManager, SessionManager
from starpod_session.storage.models import Base
from starpod_session.storage.schema import upgrade_schema

#: Tests of ADK's file that build their own service; held to the service through ``get_session_service``.
ADK_FACTORY_TESTS = (
    "test_append_event_to_deleted_session_raises_session_not_found",
    "test_append_event_with_non_serializable_state_delta",
    "test_get_session_orders_tied_timestamps_by_id",
)
CONFORMANCE_MODULE = "tests.unittests.sessions._conformance"
TEST_MODULE = "tests.unittests.sessions.test_session_service"


class _Scratch:
    """A database of this run on a server, created at the first use, emptied per test, dropped at the end."""

    def __init__(self, configured: URL) -> None:
        self._admin = create_engine(configured, isolation_level="AUTOCOMMIT")
        self.url = configured.set(database=f"{configured.database}_adk{os.getpid()}")
        self._ready = False

    def clean_url(self) -> str:
        if not self._ready:
            with self._admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {self.url.database}"))
                connection.execute(text(f"CREATE DATABASE {self.url.database}"))
            engine = create_engine(self.url)
            upgrade_schema(engine)
            engine.dispose()
            self._ready = True
        engine = create_engine(self.url)
        with engine.begin() as connection:
            present = set(inspect(connection).get_table_names())
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in present:
                    connection.execute(delete(table))
        engine.dispose()
        return self.url.render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._ready:
            force = " WITH (FORCE)" if self.url.get_backend_name() == "postgresql" else ""
            with self._admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {self.url.database}{force}"))
        self._admin.dispose()


_SCRATCH: dict[str, _Scratch] = {}


def _servers() -> dict[str, URL]:
    urls = {}
    for raw in os.environ.get("STARPOD_SESSION_TEST_URLS", "").split(","):
        if raw.strip():
            url = make_url(raw.strip())
            urls["mariadb" if url.get_backend_name() in ("mysql", "mariadb") else url.get_backend_name()] = url
    return urls


def _database(backend: str, tmp_path: pathlib.Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / "starpod.db")
    if backend not in _SCRATCH:
        servers = _servers()
        if backend not in servers:
            pytest.skip(f"{backend}: no such server named in STARPOD_SESSION_TEST_URLS")
        _SCRATCH[backend] = _Scratch(servers[backend])
    return _SCRATCH[backend].clean_url()


@contextlib.contextmanager
def _service_on(backend: str, tmp_path: pathlib.Path) -> Iterator[Any]:
    from starpod_session.integrations.adk import StarpodSessionService

    manager = SessionManager(_database(backend, tmp_path))
    try:
        yield StarpodSessionService(manager)
    finally:
        manager.close()


def _maker(backend: str) -> Any:
    @contextlib.asynccontextmanager
    async def make(tmp_path: pathlib.Path) -> AsyncIterator[Any]:
        with _service_on(backend, tmp_path) as service:
            try:
                yield service
            finally:
                await service.close()

    return make


def _async_maker(backend: str) -> Any:
    """The service over an ``AsyncSessionManager`` on ``backend``'s database."""

    @contextlib.asynccontextmanager
    async def make(tmp_path: pathlib.Path) -> AsyncIterator[Any]:
        from starpod_session.integrations.adk import StarpodSessionService

        async with AsyncSessionManager(_database(backend, tmp_path)) as manager:
            service = StarpodSessionService(manager)
            try:
                yield service
            finally:
                await service.close()

    return make


def _register(conformance: Any) -> None:
    """Our backends join ADK's registry, and its fixture is rebuilt over the longer list (before the
    test module imports it)."""
    names = ("sqlite", *sorted(_servers()))
    ours = [conformance._Backend(f"starpod_{name}", _maker(name)) for name in names]
    ours += [conformance._Backend(f"starpod_async_{name}", _async_maker(name)) for name in names]
    backends = ours if os.environ.get("STARPOD_ADK_ONLY") == "1" else [*conformance.BACKENDS, *ours]
    conformance.BACKENDS[:] = backends

    @pytest.fixture(params=backends, ids=lambda backend: backend.name)
    async def session_service(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Any]:
        backend = request.param
        divergence = backend.divergences.get(request.node.originalname)
        if divergence is not None:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=divergence))
        async with backend.make(tmp_path) as service:
            yield service

    conformance.session_service = session_service


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(config.rootpath))
    _register(importlib.import_module(CONFORMANCE_MODULE))


def pytest_unconfigure(config: pytest.Config) -> None:
    for scratch in _SCRATCH.values():
        scratch.drop()


@pytest.fixture(autouse=True)
def _factory_tests_on_starpod(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """In :data:`ADK_FACTORY_TESTS`, ``get_session_service(...)`` returns the service."""
    if request.node.originalname not in ADK_FACTORY_TESTS:
        yield
        return
    module = sys.modules[TEST_MODULE]
    backend = os.environ.get("STARPOD_ADK_FACTORY_BACKEND", "sqlite")
    with contextlib.ExitStack() as services:

        def ours(*_args: object, **_kwargs: object) -> Any:
            return services.enter_context(_service_on(backend, tmp_path))

        monkeypatch.setattr(module, "get_session_service", ours)
        yield
