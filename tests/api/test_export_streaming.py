"""A long transcript is exported in pages of messages, written as it is read, in bounded memory.

The exact output is tests/api/test_export.py's; here: the same text across page
boundaries, the pages themselves, and the Python memory the export holds.
"""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest
import sqlalchemy as sa

from starpod_session import Channel, ExportError
from starpod_session._driver import statements as prepared
from starpod_session.features import transcripts
from starpod_session.storage.models import MessageRow
from starpod_session.storage.repositories import messages as message_repository


def bulk_messages(manager, session_id, count, content):
    """``count`` messages stored straight through the engine (the API would take a transaction each)."""
    stamp = manager.get_session(session_id).created_at
    rows = [
        {
            "session_id": session_id,
            "role": "user" if n % 2 else "assistant",
            "content": f"{n} {content}",
            "timestamp": stamp + timedelta(milliseconds=n),
        }
        for n in range(count)
    ]
    with manager._engine.begin() as connection:
        connection.execute(sa.insert(MessageRow.__table__), rows)


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(message_repository, "PAGE", 7)


def test_a_transcript_read_in_pages_is_the_same_text_as_in_one_piece(manager, small_pages):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(50):  # 7 full pages and a partial one
        manager.save_message(session_id, "user" if n % 3 else "assistant", f"message {n}\n\nwith ## markdown")
    manager.close_session(session_id, "done")
    path = manager.export_transcript(session_id)
    meta = manager.get_session(session_id)
    assert path.read_text(encoding="utf-8") == transcripts.render_transcript(meta, manager.get_messages(session_id))


def test_a_transcript_of_exactly_full_pages_ends_as_it_should(manager, small_pages):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(14):
        manager.save_message(session_id, "user", f"m{n}")
    manager.close_session(session_id, "done")
    text = manager.export_transcript(session_id).read_text(encoding="utf-8")
    assert "- Messages: 14\n" in text and text.endswith("\n\nm13\n") and text.count("\n---\n") == 14


def test_the_messages_are_read_page_by_page(manager, small_pages):
    session_id = manager.create_session(Channel.MAIN, "k")
    for n in range(20):
        manager.save_message(session_id, "user", f"m{n}")
    manager.close_session(session_id, "done")
    statements: list[str] = []

    def capture(_conn, _cursor, statement, *_args):
        if "session_messages" in statement and "count(" not in statement.lower():
            statements.append(statement)

    sa.event.listen(manager._engine, "before_cursor_execute", capture)
    try:
        manager.export_transcript(session_id)
    finally:
        sa.event.remove(manager._engine, "before_cursor_execute", capture)
    assert len(statements) == 3  # 7 + 7 + 6 (the short page says it was the last)


def test_a_failed_write_part_way_leaves_no_temporary_file_and_is_an_export_error(manager, tmp_path, monkeypatch):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.save_message(session_id, "user", "hello")
    manager.close_session(session_id, "done")
    monkeypatch.setattr(transcripts.os, "fsync", lambda _fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(ExportError, match="Input/output error"):
        manager.export_transcript(session_id)
    assert list((tmp_path / "sessions").iterdir()) == []


def test_exporting_a_long_transcript_holds_a_fraction_of_it_in_memory(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    bulk_messages(manager, session_id, 20_000, "x" * 500)  # some 10 MB of text
    manager.close_session(session_id, "done")
    tracemalloc.start()
    try:
        path = manager.export_transcript(session_id)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > 10_000_000
    assert peak < size / 2  # a page at a time; the whole transcript held (records, text, bytes) was 4.5x its size


def test_get_messages_reads_the_driver_rows_in_chunks_and_returns_them_all_in_order(manager, monkeypatch):
    monkeypatch.setattr(prepared, "FETCH_CHUNK", 3)
    session_id = manager.create_session(Channel.MAIN, "k")
    ids = [manager.save_message(session_id, "user", f"m{n}") for n in range(10)]
    assert [m.id for m in manager.get_messages(session_id)] == ids
    assert [m.content for m in manager.get_messages(session_id, limit=7)] == [f"m{n}" for n in range(3, 10)]
    assert [m.id for m in manager.get_messages(session_id, limit=4, before_id=ids[6])] == ids[2:6]
