"""Every public call of ``SessionManager`` in one walk, each on data the earlier ones left, for the tracing tests.

``run_public_calls(manager, each)`` runs each call inside ``each(name)`` (a context
manager: a test clears what it records before the call and checks it after, or
opens a tracing span around it) and checks the call's result, so a call that
"succeeds" with wrong data under a tracer fails too. The manager needs a
``sessions_dir`` (``export_transcript``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from starpod_session import Channel, New, SessionManager, UsageRecord

#: The calls issue #26 names, which every tracing test must see succeed.
ISSUE_CALLS = (
    "open_session",
    "save_message",
    "get_messages",
    "record_usage",
    "session_usage",
    "list_sessions",
    "get_session",
    "cost_overview",
    "search_messages",
    "mark_read",
    "close_session",
)

#: Every call :func:`run_public_calls` makes, in order.
ALL_CALLS = (
    "resolve_session",
    "open_session",
    "create_session",
    "save_message",
    "get_messages",
    "touch_session",
    "set_title_if_empty",
    "record_usage",
    "session_usage",
    "record_compaction",
    "list_sessions",
    "get_session",
    "session_ids_starting_with",
    "cost_overview",
    "search_messages",
    "mark_read",
    "archive_session",
    "close_session",
    "export_transcript",
    "delete_session",
)
assert set(ISSUE_CALLS) <= set(ALL_CALLS)


def run_public_calls(manager: SessionManager, each: Callable[[str], AbstractContextManager[object]]) -> None:
    """Run every call of :data:`ALL_CALLS` once, in that order, each inside ``each(name)``."""
    with each("resolve_session"):
        assert isinstance(manager.resolve_session(Channel.MAIN, "tracing"), New)
    with each("open_session"):
        opened = manager.open_session(Channel.MAIN, "tracing")
    assert opened.created
    session_id = opened.session_id
    with each("create_session"):
        other = manager.create_session(Channel.MAIN, "tracing-other")
    with each("save_message"):
        message_id = manager.save_message(session_id, "user", "a traced message about pelicans")
    with each("get_messages"):
        assert [message.id for message in manager.get_messages(session_id)] == [message_id]
    with each("touch_session"):
        manager.touch_session(session_id)
    with each("set_title_if_empty"):
        manager.set_title_if_empty(session_id, "Pelicans")
    with each("record_usage"):
        manager.record_usage(session_id, UsageRecord(100, 10, cost_usd=0.25, model="model-a"), turn=1)
    with each("session_usage"):
        assert manager.session_usage(session_id).total_cost_usd == 0.25
    with each("record_compaction"):
        manager.record_compaction(session_id, "auto", 1000, "about pelicans", 1)
    with each("list_sessions"):
        assert {meta.id for meta in manager.list_sessions(10)} == {session_id, other}
    with each("get_session"):
        meta = manager.get_session(session_id)
    assert meta is not None and meta.message_count == 1 and meta.title
    with each("session_ids_starting_with"):
        assert manager.session_ids_starting_with(session_id[:8], limit=5) == [session_id]
    with each("cost_overview"):
        assert manager.cost_overview().total_cost_usd == 0.25
    with each("search_messages"):
        assert [hit.message_id for hit in manager.search_messages("pelicans")] == [message_id]
    with each("mark_read"):
        manager.mark_read(session_id, True)
    with each("archive_session"):
        manager.archive_session(other)
    with each("close_session"):
        manager.close_session(session_id, "done")
    with each("export_transcript"):
        transcript = manager.export_transcript(session_id)
    assert "pelicans" in transcript.read_text(encoding="utf-8")
    with each("delete_session"):
        manager.delete_session(other)
    assert manager.get_session(other) is None
