"""A short walk-through of the API on a temporary SQLite file (``python -m starpod_session demo``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from .channels import Channel
from .manager import SessionManager
from .records import Continue, New, UsageRecord


def run_demo(db_path: Path | None = None, echo: Callable[[str], None] = print) -> None:
    """Resolve → messages → usage → cost overview, printing each step."""
    with tempfile.TemporaryDirectory(prefix="starpod-session-demo-") as scratch:
        path = db_path or Path(scratch) / "sessions.db"
        with SessionManager(path, Path(scratch) / "sessions") as manager:
            echo(f"database: {path}")

            opened = manager.open_session(Channel.TELEGRAM, "chat-42", user_id="alice")
            echo(f"1. open telegram/chat-42 -> {opened}")
            session_id = opened.session_id

            manager.save_message(session_id, "user", "Plan a weekend in Lisbon, please")
            manager.save_message(session_id, "assistant", "Day 1: Alfama and the castle...")
            manager.touch_session(session_id)
            for message in manager.get_messages(session_id):
                echo(f"2. message #{message.id} [{message.role}] {message.content}")

            decision = manager.resolve_session(Channel.TELEGRAM, "chat-42", user_id="alice")
            echo(f"3. resolve again within the gap -> {decision}")
            assert decision == Continue(session_id)

            manager.record_usage(
                session_id,
                UsageRecord(1200, 350, cache_read=4000, cost_usd=0.0123, model="claude-sonnet-4-5", user_id="alice"),
                turn=1,
            )
            manager.record_usage(
                session_id, UsageRecord(800, 200, cost_usd=0.004, model="claude-haiku-4-5", user_id="alice"), turn=2
            )
            usage = manager.session_usage(session_id)
            echo(
                f"4. session usage: {usage.total_turns} turns, {usage.total_input_tokens} in / "
                f"{usage.total_output_tokens} out tokens, {usage.total_cache_read} cache reads, "
                f"${usage.total_cost_usd:.4f}"
            )

            meta = manager.get_session(session_id)
            assert meta is not None
            echo(f"5. title from the first user message: {meta.title!r}, requests: {meta.message_count}")

            decision = manager.resolve_session(Channel.TELEGRAM, "chat-42", gap_minutes=0, user_id="alice")
            echo(f"6. resolve with a 0-minute gap -> {decision} (the stale session was auto-closed)")
            assert isinstance(decision, New) and decision.closed_session_id == session_id

            overview = manager.cost_overview(since="2000-01-01T00:00:00Z")
            echo(f"7. cost overview: ${overview.total_cost_usd:.4f} over {overview.total_turns} turns")
            for user in overview.by_user:
                echo(f"   user  {user.user_id:<20} ${user.total_cost_usd:.4f} ({user.total_turns} turns)")
            for model in overview.by_model:
                echo(f"   model {model.model:<20} ${model.total_cost_usd:.4f} ({model.total_turns} turns)")

            for meta in manager.list_sessions(20):
                state = "closed" if meta.is_closed else "open"
                echo(
                    f"8. session {meta.id[:8]} {meta.channel}/{meta.channel_session_key} {state}: {meta.summary or ''}"
                )
