"""Fixtures of the fault tests: private servers, one set per test module, stopped at its end.

Every module here sets ``pytestmark = pytest.mark.faults``: the default run leaves
them out (pyproject.toml), ``pytest -m faults`` runs them alone (a step of .ci/run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..backends import missing_modules
from .servers import GaleraCluster, PostgresPair, galera_cluster, galera_missing, postgres_missing, postgres_pair


@pytest.fixture(scope="module")
def pg_pair() -> Iterator[PostgresPair]:
    """A private PostgreSQL primary and synchronous standby for the module (skips with the reason when impossible)."""
    why = postgres_missing() or _missing_driver("psycopg", "postgres")
    if why:
        pytest.skip(why)
    with postgres_pair() as pair:
        yield pair


@pytest.fixture(scope="module")
def pg_available() -> None:
    """Skips with the reason when a private PostgreSQL pair cannot run here (for tests that start their own)."""
    why = postgres_missing() or _missing_driver("psycopg", "postgres")
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    """A private 3-node MariaDB Galera cluster for the module (skips with the reason when impossible)."""
    why = galera_missing() or _missing_driver("pymysql", "mysql")
    if why:
        pytest.skip(why)
    with galera_cluster() as cluster:
        yield cluster


def _missing_driver(module: str, extra: str) -> str | None:
    return f"needs the {module} driver: pip install -e '.[{extra}]'" if missing_modules(module) else None
