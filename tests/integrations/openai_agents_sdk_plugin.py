"""A pytest plugin that runs the OpenAI Agents SDK's own session tests against ``StarpodSession``.

The SDK's source distribution ships ``tests/memory/test_session.py`` and
``test_session_limit.py``, written against its ``SQLiteSession``. ``.ci/run``
downloads that distribution at test time (it is never copied into this
repository), and runs those two files from its top folder with this plugin::

    PYTHONPATH=<checkout>/tests/integrations python -m pytest -p openai_agents_sdk_plugin tests/memory/...

Loaded before the test modules are imported, the plugin puts
:class:`SQLiteSessionOnStarpod` wherever the SDK exports ``SQLiteSession``, so
``from agents import SQLiteSession`` in those tests builds a ``StarpodSession``
with ``SQLiteSession``'s constructor: ``db_path`` becomes our database (one
manager per file, shared by every session on it, as the SDK's sessions share
the file; ``":memory:"`` a temporary file of the session's own).
``STARPOD_OPENAI_AGENTS_FACADE=async`` builds the sessions on an
``AsyncSessionManager`` instead of a ``SessionManager``.

``STARPOD_OPENAI_AGENTS_URL=<PostgreSQL or MariaDB URL>`` keeps every session on
that database instead, one manager for the run: each ``db_path`` (each
``":memory:"`` session too) is then a user of its own (``sdk-<run>-1``, ``sdk-<run>-2``, ...),
so that, as with the SDK's files, sessions of one id on two paths are two
histories and sessions of one id on one path are one. The database should be a
scratch one: the run leaves its sessions in it.

This module is imported as a top-level module (the SDK's own ``tests`` package
shadows ours there), so it imports nothing from this repository's ``tests``.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from starpod_session import AsyncSessionManager, SessionManager
from starpod_session.integrations.openai_agents import StarpodSession

FACADE = os.environ.get("STARPOD_OPENAI_AGENTS_FACADE", "sync")
SERVER_URL = os.environ.get("STARPOD_OPENAI_AGENTS_URL") or None  # empty: SQLite files
_managers: dict[str, SessionManager | AsyncSessionManager] = {}
#: On a server: the user standing for each db_path.
_users: dict[str, str] = {}
_lock = threading.Lock()
_scratch = tempfile.TemporaryDirectory(prefix="starpod-sdk-sessions-")
#: A fresh run's users never meet an earlier run's sessions on the same server database.
_RUN = uuid.uuid4().hex[:8]


def _opened(target: str) -> SessionManager | AsyncSessionManager:
    return SessionManager(target) if FACADE == "sync" else AsyncSessionManager(target)


def _manager_and_user(path: str) -> tuple[SessionManager | AsyncSessionManager, str]:
    """The manager keeping ``path``'s sessions (its own file, or the one server database), and their user."""
    target = path if SERVER_URL is None else SERVER_URL
    with _lock:
        manager = _managers.get(target)
        if manager is None:
            manager = _managers[target] = _opened(target)
        if SERVER_URL is None:
            return manager, "admin"
        return manager, _users.setdefault(path, f"sdk-{_RUN}-{len(_users) + 1}")


class SQLiteSessionOnStarpod(StarpodSession):
    """``SQLiteSession``'s constructor, building a ``StarpodSession``; ``close`` as ``SQLiteSession`` has it."""

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        if str(db_path) == ":memory:":  # a database of the session's own, as SQLite's :memory: is
            path = tempfile.mktemp(suffix=".db", dir=_scratch.name)
        else:
            path = str(Path(db_path).expanduser().resolve())
        manager, user = _manager_and_user(path)
        super().__init__(session_id, manager, session_settings=session_settings, user_id=user)
        self.db_path = db_path

    def close(self) -> None:
        """Nothing to release: the manager is shared, and closed when the run ends."""


#: The SDK's tests that test ``SQLiteSession`` itself rather than the ``Session`` protocol, each with why it
#: cannot apply to another store; they are skipped with that reason (every other test must pass).
NOT_APPLICABLE = {
    **dict.fromkeys(
        (
            "test_sqlite_session_close_closes_worker_thread_connections",
            "test_sqlite_session_reaps_connections_from_exited_worker_threads",
            "test_sqlite_session_closes_retired_connections_before_the_next_allocation",
            "test_sqlite_session_keeps_connections_of_live_worker_threads",
            "test_sqlite_session_rollback_failure_evicts_connection",
            "test_sqlite_session_close_retries_quarantined_connection",
            "test_sqlite_session_file_lock_is_shared_across_instances",
            "test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome",
        ),
        "reads SQLiteSession's own connection registry and locks (_connections, _lock); "
        "starpod_session's connections belong to its manager's pool",
    ),
    **dict.fromkeys(
        (
            "test_sqlite_session_pop_item_skips_corrupt_most_recent",
            "test_sqlite_session_pop_item_returns_none_after_dropping_only_corrupt_rows",
            "test_sqlite_session_get_items_limit_skips_corrupt_newest_rows",
            "test_sqlite_session_get_items_session_settings_limit_skips_corrupt_rows",
        ),
        "writes corrupt JSON into SQLiteSession's agent_messages table through its _locked_connection; "
        "StarpodSession stores no corrupt item, and reads a foreign message as a plain message",
    ),
    **dict.fromkeys(
        (
            "test_sqlite_session_failed_add_items_releases_write_lock",
            "test_sqlite_session_failed_clear_session_rolls_back",
            "test_sqlite_session_failed_pop_item_releases_write_lock",
        ),
        "installs SQLite triggers on SQLiteSession's agent_sessions/agent_messages tables to make a write fail",
    ),
    "test_sqlite_session_closed_rejects_empty_add_items": "SQLiteSession.close() closes the session itself; "
    "a StarpodSession holds nothing to close (closing its manager makes later calls raise)",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = NOT_APPLICABLE.get(getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"not applicable to StarpodSession: {reason}"))


def pytest_configure(config: pytest.Config) -> None:
    import agents
    import agents.memory
    import agents.memory.sqlite_session

    for module in (agents, agents.memory, agents.memory.sqlite_session):
        module.SQLiteSession = SQLiteSessionOnStarpod  # type: ignore[attr-defined,misc]


def pytest_report_header(config: pytest.Config) -> str:
    where = "each db_path's own SQLite file" if SERVER_URL is None else "one server database"
    return f"SQLiteSession replaced by starpod_session's StarpodSession on a {FACADE} facade, on {where}"


def pytest_unconfigure(config: pytest.Config) -> None:
    for manager in _managers.values():
        manager.sync.close() if isinstance(manager, AsyncSessionManager) else manager.close()
    _scratch.cleanup()
