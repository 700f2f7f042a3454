"""Markdown transcripts of closed sessions (the on_close hook that can write them is in test_resolution.py)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from starpod_session import Channel, ExportError, SessionManager, SessionNotFound
from starpod_session.features import transcripts

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
    with SessionManager(db_target) as without_folder, pytest.raises(ExportError, match="sessions_dir"):
        without_folder.export_transcript(session_id)
    with pytest.raises(SessionNotFound):
        manager.export_transcript("00000000-0000-4000-8000-000000000000")
    assert files_in(tmp_path / "sessions") == []
