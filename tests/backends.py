"""Which database backends the suite runs against, and how to give each test a clean one.

SQLite always runs (a fresh file per test). PostgreSQL and MariaDB run when their
URLs are listed in ``STARPOD_SESSION_TEST_URLS`` (comma-separated SQLAlchemy
URLs); a listed server that cannot be reached fails the run instead of skipping.
"""

from __future__ import annotations

import importlib
import os

import pytest
from sqlalchemy import MetaData, create_engine, delete, inspect, text
from sqlalchemy.engine import URL, Engine, make_url

from starpod_session.backends.engine import MYSQL_MAX_ALLOWED_PACKET, create_storage_engine
from starpod_session.storage.models import Base
from starpod_session.storage.schema import current_revision, head_revision, upgrade_schema

URLS_VARIABLE = "STARPOD_SESSION_TEST_URLS"
SERVER_BACKENDS = ("postgresql", "mariadb")
ALL_BACKENDS = ("sqlite", *SERVER_BACKENDS)

EXAMPLE_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


#: Each server backend's driver module and the extra that installs it.
DRIVERS = {"postgresql": ("psycopg", "postgres"), "mariadb": ("pymysql", "mysql")}


def needs_driver(backend: str) -> pytest.MarkDecorator:
    """Skip a test that needs ``backend``'s driver where it is not installed, with a reason naming the extra.

    The README's test command installs no driver (a driver imported at module level
    must fail there), so such tests skip on a newcomer's machine. Where the run was
    told to use that server, nothing skips: a missing driver fails the run at its start.
    """
    module, extra = DRIVERS[backend]
    return pytest.mark.skipif(
        bool(missing_modules(module)) and backend not in configured_server_urls(),
        reason=f"needs the {module} driver: pip install -e '.[{extra}]'",
    )


def missing_modules(*modules: str) -> list[str]:
    """Those of ``modules`` that cannot be imported here."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def needs_packages(extra: str, *modules: str) -> pytest.MarkDecorator:
    """Skip a test that needs optional packages (not server drivers: see :func:`needs_driver`) where one of
    ``modules`` cannot be imported, with a reason naming the missing modules and the extra that installs them.

    For tests of integrations with other libraries (tracing, say), which the README's
    test command and the run on the lowest SQLAlchemy do not install. Which backends
    such a test runs on is still the ``backend`` fixture's: a server named in
    ``STARPOD_SESSION_TEST_URLS`` is never skipped for want of a driver.
    """
    missing = missing_modules(*modules)
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}: pip install -e '.[{extra}]'")


def backend_of(url: URL) -> str:
    name = url.get_backend_name()
    return "mariadb" if name in ("mysql", "mariadb") else name


def configured_server_urls() -> dict[str, URL]:
    """Backend name → URL, from the environment variable."""
    urls: dict[str, URL] = {}
    for raw in os.environ.get(URLS_VARIABLE, "").split(","):
        if raw.strip():
            url = make_url(raw.strip())
            urls[backend_of(url)] = url
    unknown = set(urls) - set(SERVER_BACKENDS)
    if unknown:
        raise ValueError(f"{URLS_VARIABLE} names unsupported backends: {', '.join(sorted(unknown))}")
    return urls


def not_configured_hint(backends: list[str]) -> str:
    """Why these server backends did not run, and the variable that makes them run."""
    examples = ",".join(EXAMPLE_URLS[name] for name in backends)
    return (
        f"no server named in {URLS_VARIABLE}; to run the tests on them too, set "
        f"{URLS_VARIABLE}={examples} (comma-separated URLs; each server must be reachable)"
    )


def check_reachable(url: URL) -> None:
    """Raise with a clear message when the server cannot be reached."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


class ServerDatabase:
    """A scratch database of this test run on a configured server, emptied between tests.

    The run creates its own database beside the configured one (``test`` →
    ``test_run<pid>``) and drops it at the end, so several runs against one server
    (two checkouts, a developer beside CI) never empty each other's tables. The
    configured account must be allowed to create databases.
    """

    def __init__(self, configured: URL) -> None:
        self._admin: Engine = create_engine(configured, isolation_level="AUTOCOMMIT")
        self.url = configured.set(database=f"{configured.database}_run{os.getpid()}")
        self._create_scratch_database()
        self._engine: Engine = create_storage_engine(self.url)
        if backend_of(self.url) == "mariadb":
            self._ensure_max_allowed_packet()

    def _ensure_max_allowed_packet(self) -> None:
        """Let the server take 16 MiB messages (needs an account allowed to SET GLOBAL, as CI's root).

        Only connections opened afterwards see the new value, so this runs before any manager opens.
        """
        with self._engine.connect() as connection:
            current = connection.execute(text("SELECT @@GLOBAL.max_allowed_packet")).scalar_one()
            if current < MYSQL_MAX_ALLOWED_PACKET:
                connection.execute(text(f"SET GLOBAL max_allowed_packet = {MYSQL_MAX_ALLOWED_PACKET}"))

    def drop_everything(self) -> None:
        """Leave the database with no table at all (for migration tests)."""
        with self._engine.begin() as connection:
            reflected = MetaData()
            reflected.reflect(connection)
            reflected.drop_all(connection)

    def migrated_and_empty(self) -> str:
        """The URL of the database at head with every table emptied."""
        with self._engine.connect() as connection:
            at_head = current_revision(connection) == head_revision()
        if not at_head:
            self.drop_everything()
            upgrade_schema(self._engine)
        with self._engine.begin() as connection:
            present = set(inspect(connection).get_table_names())
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in present:
                    connection.execute(delete(table))
        return self.url.render_as_string(hide_password=False)

    def _create_scratch_database(self) -> None:
        name = self._quoted_name()
        with self._admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            connection.execute(text(f"CREATE DATABASE {name}{self._linguistic_collation()}"))

    def _linguistic_collation(self) -> str:
        """PostgreSQL: a language's collation (ICU en-US), as most production servers have, so tests
        of ordering by code point cannot pass merely because the server's default is C."""
        if backend_of(self.url) != "postgresql":
            return ""  # MariaDB: our tables declare their own binary collation
        with self._admin.connect() as connection:
            version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
            has_icu = connection.execute(text("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'")).scalar()
        if version < 150000 or not has_icu:
            return ""  # LOCALE_PROVIDER needs PostgreSQL 15 built with ICU; the server's default then
        return " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"

    def _quoted_name(self) -> str:
        return self._admin.dialect.identifier_preparer.quote_identifier(self.url.database)

    def dispose(self) -> None:
        """Close this run's connections and drop its scratch database."""
        self._engine.dispose()
        force = " WITH (FORCE)" if backend_of(self.url) == "postgresql" else ""
        with self._admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {self._quoted_name()}{force}"))
        self._admin.dispose()
