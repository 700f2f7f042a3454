"""``read_url``: which replicas a manager takes (the reads themselves: tests/faults/test_replicas.py)."""

from __future__ import annotations

import pytest

from starpod_session import InvalidInput, SessionManager


@pytest.mark.parametrize("read_url", ["sqlite:///elsewhere.db", [], 42])
def test_read_replicas_on_sqlite_or_of_another_kind_are_invalid_input(tmp_path, read_url):
    with pytest.raises(InvalidInput, match="read_url"):
        SessionManager(tmp_path / "sessions.db", read_url=read_url)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "10", True])
@pytest.mark.parametrize("field", ["connect_timeout", "statement_timeout"])
def test_timeouts_that_bound_nothing_are_invalid_input(tmp_path, field, timeout):
    with pytest.raises(InvalidInput, match=field):
        SessionManager(tmp_path / "sessions.db", **{field: timeout})


def test_no_statement_timeout_is_allowed(tmp_path):
    with SessionManager(tmp_path / "sessions.db", statement_timeout=None) as manager:
        assert manager.list_sessions(5) == []
