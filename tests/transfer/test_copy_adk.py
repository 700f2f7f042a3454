"""A copy or a dump carries Google ADK's tables (migration 0012) too: ADK sees the same sessions after it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starpod_session import SessionManager, copy_database, dump_database, restore_database

from ..backends import needs_packages
from .conftest import typed_rows

pytestmark = needs_packages("adk", "google.adk")

APP = "weather"


async def _fill(service: Any) -> None:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    for user in ("ada", "bob"):
        session = await service.create_session(
            app_name=APP, user_id=user, state={"app:units": "metric", "user:name": user, "city": "Oslo"}
        )
        for n in range(3):
            event = Event(
                author="user" if n % 2 == 0 else "forecaster",
                invocation_id=f"inv{n}",
                content=types.Content(
                    role="user" if n % 2 == 0 else "model", parts=[types.Part(text=f"rain turn {n} for {user}")]
                ),
                actions=EventActions(state_delta={"turn": n, "temp:scratch": n}),
                usage_metadata=types.GenerateContentResponseUsageMetadata(
                    prompt_token_count=100, candidates_token_count=20, cached_content_token_count=40
                )
                if n % 2
                else None,
            )
            await service.append_event(session, event)


async def _seen(service: Any) -> list[Any]:
    seen = []
    for user in ("ada", "bob"):
        listed = await service.list_sessions(app_name=APP, user_id=user)
        seen.extend([await service.get_session(app_name=APP, user_id=user, session_id=m.id) for m in listed.sessions])
    return seen


def _through_adk(target: str, work: Any) -> Any:
    from starpod_session.integrations.adk import StarpodSessionService

    async def scenario() -> Any:
        with SessionManager(target) as manager:
            service = StarpodSessionService(manager)
            try:
                return await work(service)
            finally:
                await service.close()

    return asyncio.run(scenario())


def test_adk_sessions_survive_a_copy_to_every_backend(target, fresh_database):
    src, dst = fresh_database("sqlite", "adk_src"), fresh_database(target, "adk_dst")
    _through_adk(src, _fill)
    before = _through_adk(src, _seen)
    assert len(before) == 2 and all(len(session.events) == 3 for session in before)

    copy_database(src, dst)

    assert _through_adk(dst, _seen) == before  # events, merged state, update times
    rows = typed_rows(dst)
    assert {name: rows[name] for name in rows if name.startswith("adk_")} == {
        name: rows for name, rows in typed_rows(src).items() if name.startswith("adk_")
    }
    with SessionManager(dst) as manager:
        assert len(manager.search_messages("rain", limit=50)) == 6  # ADK's conversations, searchable there
        assert manager.cost_overview().total_output_tokens == 2 * 20


def test_adk_sessions_survive_a_dump_and_a_restore(target, fresh_database, tmp_path: Path):
    src, dst = fresh_database("sqlite", "adk_src"), fresh_database(target, "adk_dst")
    _through_adk(src, _fill)
    before = _through_adk(src, _seen)
    dump_database(src, tmp_path / "backup.jsonl.gz")
    restore_database(tmp_path / "backup.jsonl.gz", dst)
    assert _through_adk(dst, _seen) == before
