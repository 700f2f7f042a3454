"""Markdown transcripts of closed sessions, and the on_close hook of auto-closes."""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, ExportError, InvalidInput, New, SessionManager, SessionMeta, SessionNotFound
from starpod_session import transcripts

T0 = datetime(2026, 3, 20, 12, 0, 0, tzinfo=timezone.utc)


def closed_session(manager, title_text="Plan a weekend in Lisbon, please", key="chat-42"):
    with freeze_time(T0) as clock:
        session_id = manager.create_session(Channel.TELEGRAM, key, user_id="alice")
        manager.save_message(session_id, "user", title_text)
        clock.tick(timedelta(seconds=30))
        manager.save_message(session_id, "assistant", "Day 1: Alfama.\n\n## Day 2\nBelém ✓")
        manager.touch_session(session_id)
        manager.close_session(session_id, "Weekend planned")
    return session_id


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


def test_the_transcript_has_a_header_and_every_message(manager, tmp_path):
    session_id = closed_session(manager)
    path = manager.export_transcript(session_id)
    assert path.parent == tmp_path / "sessions"
    assert path.name == f"plan-a-weekend-in-lisbon-please-{session_id[:8]}.md"
    assert path.read_text(encoding="utf-8") == (
        "# Plan a weekend in Lisbon, please\n"
        "\n"
        f"- Session: `{session_id}`\n"
        "- Date: 2026-03-20 12:00:00 UTC to 2026-03-20 12:00:30 UTC\n"
        "- Channel: telegram (key `chat-42`)\n"
        "- User: alice\n"
        "- Messages: 2\n"
        "- Summary: Weekend planned\n"
        "\n---\n\n"
        "## user · 2026-03-20 12:00:00 UTC\n"
        "\n"
        "Plan a weekend in Lisbon, please\n"
        "\n---\n\n"
        "## assistant · 2026-03-20 12:00:30 UTC\n"
        "\n"
        "Day 1: Alfama.\n\n## Day 2\nBelém ✓\n"
    )


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Ça va? Crème brûlée — 100%!", "ca-va-creme-brulee-100"),
        ("日本語だけ", "session"),
        ("x" * 120, "x" * 60),
        ("../../etc/passwd", "etc-passwd"),
    ],
)
def test_file_names_are_a_safe_slug_of_the_title_and_the_id_prefix(manager, title, slug):
    session_id = closed_session(manager, title_text=title)
    assert manager.export_transcript(session_id).name == f"{slug}-{session_id[:8]}.md"


def test_an_untitled_session_is_exported_as_session(manager):
    session_id = manager.create_session(Channel.MAIN, "k")
    manager.close_session(session_id, "")
    path = manager.export_transcript(session_id)
    assert path.name == f"session-{session_id[:8]}.md"
    assert path.read_text().startswith("# Untitled session\n")
    assert "- Messages: 0\n" in path.read_text()


def test_exporting_again_rewrites_nothing_and_makes_no_duplicate(manager, tmp_path):
    session_id = closed_session(manager)
    first = manager.export_transcript(session_id)
    os.utime(first, (1_000_000, 1_000_000))
    second = manager.export_transcript(session_id)
    assert second == first
    assert first.stat().st_mtime == 1_000_000  # same content: the file was not touched
    assert files_in(tmp_path / "sessions") == [first.name]


def test_a_changed_session_replaces_its_file(manager, tmp_path):
    session_id = closed_session(manager)
    path = manager.export_transcript(session_id)
    manager.close_session(session_id, "A better summary")
    assert manager.export_transcript(session_id) == path
    assert "- Summary: A better summary\n" in path.read_text()
    assert files_in(tmp_path / "sessions") == [path.name]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(manager, tmp_path, monkeypatch):
    session_id = closed_session(manager)
    path = manager.export_transcript(session_id)
    before = path.read_bytes()
    manager.close_session(session_id, "changed")

    def crash(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transcripts.os, "replace", crash)
    with pytest.raises(ExportError, match="No space left on device"):
        manager.export_transcript(session_id)
    assert path.read_bytes() == before
    assert files_in(tmp_path / "sessions") == [path.name]


def test_an_open_session_or_a_manager_without_a_folder_cannot_export(manager, db_target, tmp_path):
    session_id = manager.create_session(Channel.MAIN, "k")
    with pytest.raises(ExportError, match="still open"):
        manager.export_transcript(session_id)
    manager.close_session(session_id, "done")
    with SessionManager(db_target) as without_folder:
        with pytest.raises(ExportError, match="sessions_dir"):
            without_folder.export_transcript(session_id)
    with pytest.raises(SessionNotFound):
        manager.export_transcript("00000000-0000-4000-8000-000000000000")
    assert files_in(tmp_path / "sessions") == []


# -- on_close ---------------------------------------------------------------


def test_on_close_gets_the_auto_closed_session_after_it_is_committed(make_manager):
    seen = []
    manager = None

    def on_close(meta):
        # Committed: a fresh transaction already sees the session closed.
        seen.append((meta, manager.get_session(meta.id).is_closed))

    manager = make_manager(on_close=on_close)
    with freeze_time(T0) as clock:
        old = manager.open_session(Channel.TELEGRAM, "k").session_id
        clock.tick(timedelta(hours=6))
        opened = manager.open_session(Channel.TELEGRAM, "k")
    [(meta, closed_in_database)] = seen
    assert isinstance(meta, SessionMeta) and meta.id == old == opened.closed_session_id
    assert meta.is_closed and meta.summary == "Auto-closed: inactivity" and closed_in_database


def test_on_close_is_not_called_for_a_close_by_hand_or_a_continue(make_manager):
    seen = []
    manager = make_manager(on_close=seen.append)
    session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
    manager.resolve_session(Channel.TELEGRAM, "k")
    manager.close_session(session_id, "by hand")
    manager.resolve_session(Channel.TELEGRAM, "k")
    assert seen == []


def test_on_close_can_export_the_transcript(make_manager, tmp_path):
    exported = []
    manager = None
    manager = make_manager(on_close=lambda meta: exported.append(manager.export_transcript(meta.id)))
    with freeze_time(T0) as clock:
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
        manager.save_message(session_id, "user", "hello")
        clock.tick(timedelta(hours=7))
        manager.resolve_session(Channel.TELEGRAM, "k")
    [path] = exported
    assert "- Summary: Auto-closed: inactivity\n" in path.read_text()


def test_a_failing_on_close_does_not_undo_the_close(make_manager, caplog):
    def on_close(meta):
        raise RuntimeError("webhook down")

    manager = make_manager(on_close=on_close)
    with freeze_time(T0) as clock:
        session_id = manager.open_session(Channel.TELEGRAM, "k").session_id
        clock.tick(timedelta(hours=6))
        with caplog.at_level(logging.ERROR, logger="starpod_session"):
            decision = manager.resolve_session(Channel.TELEGRAM, "k")
    assert decision == New(closed_session_id=session_id)
    assert manager.get_session(session_id).is_closed
    assert "webhook down" in caplog.text and session_id in caplog.text


@pytest.mark.parametrize("call", ["open_session", "resolve_session"])
def test_on_close_is_called_once_when_many_threads_resolve_the_stale_session(make_manager, backend, call):
    calls = []
    lock = threading.Lock()

    def on_close(meta):
        with lock:
            calls.append(meta.id)

    manager = make_manager(on_close=on_close)
    with freeze_time(T0):
        stale = manager.open_session(Channel.TELEGRAM, "k").session_id
    threads, barrier = 8, threading.Barrier(8)
    results = []

    def resolve():
        barrier.wait()
        results.append(getattr(manager, call)(Channel.TELEGRAM, "k"))

    workers = [threading.Thread(target=resolve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert calls == [stale]
    assert len(results) == threads
    assert [getattr(r, "closed_session_id", None) for r in results].count(stale) == 1
    if call == "open_session":
        assert len({r.session_id for r in results}) == 1


def test_on_close_must_be_callable(tmp_path):
    with pytest.raises(InvalidInput) as raised:
        SessionManager(tmp_path / "s.db", on_close="export")
    assert raised.value.field == "on_close"
