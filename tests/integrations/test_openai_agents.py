"""The OpenAI Agents SDK's Session kept in starpod_session (issue #28, points 2, 3 and 6), on every backend,
over both facades. Skips, naming the ``openai-agents`` extra, where the SDK is not installed."""

from __future__ import annotations

import asyncio
import enum
import json
import math
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from starpod_session import AsyncSessionManager, Channel, ModelPrice, PriceTable, SessionManager

from ..backends import needs_packages
from ..cli.run import as_json
from ..cli.run import run_in_process as cli
from ..helpers import raw_connection

pytestmark = needs_packages("openai-agents", "agents", "orjson")

TOP = Path(__file__).resolve().parents[2]

#: Items as the SDK hands them to a session: input messages, model output, tool calls, reasoning.
ITEMS: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "user", "content": "{not json, but it looks like it"},
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "input_text", "text": "a list of parts"}]},
    {"type": "message", "role": "user", "content": "with a type"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Sunny, 24 °C ☀", "annotations": [], "logprobs": []}],
    },
    {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
    {"role": "assistant", "content": ""},
    {"role": "user", "content": "emoji 🙂 and accents é and NUL-free"},
    {"odd": True, "nested": {"numbers": [1, 2.5, -3e-7, 10**30], "none": None}},
]

#: The role of each of ``ITEMS``'s messages.
ROLES = [
    "user",
    "user",
    "system",
    "user",
    "user",
    "assistant",
    "tool_use",
    "tool_result",
    "reasoning",
    "assistant",
    "user",
    "item",
]


@pytest.fixture(params=["sync", "async"])
def facade(request: pytest.FixtureRequest) -> str:
    """Which facade the session is built on."""
    return request.param


@pytest.fixture
def make_session(db_target: str, tmp_path: Path, facade: str) -> Iterator[Callable[..., Any]]:
    """``make_session(session_id, **options)``: a StarpodSession on one manager of the test's database."""
    from starpod_session.integrations.openai_agents import StarpodSession

    manager: SessionManager | AsyncSessionManager
    manager = SessionManager(db_target) if facade == "sync" else AsyncSessionManager(db_target)

    def make(session_id: str = "conversation", **options: Any) -> StarpodSession:
        return StarpodSession(session_id, manager, **options)

    make.manager = manager  # type: ignore[attr-defined]
    yield make
    if isinstance(manager, AsyncSessionManager):
        asyncio.run(manager.aclose())
    else:
        manager.close()


def sync_of(make_session: Any) -> SessionManager:
    manager = make_session.manager
    return manager.sync if isinstance(manager, AsyncSessionManager) else manager


def test_items_come_back_equal_in_order(make_session, backend):
    session = make_session()

    async def main() -> list[Any]:
        await session.add_items(ITEMS[:5])
        await session.add_items(ITEMS[5:])
        return await session.get_items()

    assert asyncio.run(main()) == ITEMS


def test_items_are_messages_with_roles_text_and_json(make_session, backend):
    session = make_session()
    asyncio.run(session.add_items(ITEMS))
    manager = sync_of(make_session)
    messages = manager.get_messages(session.starpod_session_id)
    assert [m.role for m in messages] == ROLES
    assert messages[0].content == "What is the weather in Paris?"  # plain text: what search and transcripts show
    assert json.loads(messages[1].content) == ITEMS[1]  # text starting with "{" is kept as JSON
    assert json.loads(messages[5].content) == ITEMS[5]
    assert "24 °C ☀" in messages[5].content  # JSON keeps UTF-8 as it is
    meta = manager.get_session(session.starpod_session_id)
    assert (meta.channel, meta.channel_session_key, meta.user_id) == ("main", "conversation", "admin")
    assert meta.title == "What is the weather in Paris?"
    assert [hit.role for hit in manager.search_messages("accents")] == ["user"]
    assert {hit.role for hit in manager.search_messages("sunny")} == {"assistant", "tool_result"}
    [tool] = manager.cost_overview().by_tool
    assert (tool.tool_name, tool.invocations) == ("get_weather", 1)


def test_get_items_limits_as_the_sdks_sqlite_session(make_session, backend):
    from agents import SessionSettings

    session = make_session(session_settings={"limit": 3})
    items = [{"role": "user", "content": str(n)} for n in range(6)]

    async def main() -> None:
        assert await session.get_items() == []
        await session.add_items(items)
        assert await session.get_items() == items[-3:]  # the settings' limit
        assert await session.get_items(limit=2) == items[-2:]
        assert await session.get_items(limit=100) == items
        assert await session.get_items(limit=0) == []
        assert await session.get_items(limit=-1) == items  # SQLite's LIMIT -1: all
        assert session.session_settings == SessionSettings(limit=3)

    asyncio.run(main())
    assert make_session().session_settings == SessionSettings()
    with pytest.raises(TypeError):
        make_session(session_settings={"limitt": 1})


def test_pop_item_and_clear_session(make_session, backend):
    session = make_session()

    async def main() -> None:
        assert await session.pop_item() is None
        await session.add_items(ITEMS[:3])
        assert await session.pop_item() == ITEMS[2]
        assert await session.get_items() == ITEMS[:2]
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.add_items(ITEMS[3:4])
        assert await session.get_items() == ITEMS[3:4]

    asyncio.run(main())


def test_reading_an_unknown_session_creates_nothing(make_session, backend):
    session = make_session("never-written")

    async def main() -> None:
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.clear_session()
        await session.add_items([])

    asyncio.run(main())
    assert sync_of(make_session).list_sessions(10) == []


@pytest.mark.parametrize(
    "session_id", ["", "x" * 300, "sha256:" + "0" * 64, "with\x00nul", "lone \ud800 surrogate", "ünïcode ✓", " "]
)
def test_any_string_is_a_session_id_and_one_id_is_one_history(make_session, backend, session_id):
    first, again, other = make_session(session_id), make_session(session_id), make_session("other")

    async def main() -> None:
        await first.add_items([{"role": "user", "content": "one"}])
        await other.add_items([{"role": "user", "content": "elsewhere"}])
        await again.add_items([{"role": "assistant", "content": "two"}])
        assert (
            await first.get_items()
            == await again.get_items()
            == [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
            ]
        )

    asyncio.run(main())
    assert first.starpod_session_id == again.starpod_session_id != other.starpod_session_id


def test_an_sdk_sessions_items_are_in_its_transcript_and_on_the_command_line(db_target, tmp_path, backend, facade):
    from starpod_session.integrations.openai_agents import StarpodSession

    manager = (SessionManager if facade == "sync" else AsyncSessionManager)(db_target, tmp_path / "transcripts")
    sync = manager.sync if isinstance(manager, AsyncSessionManager) else manager
    try:
        session = StarpodSession("conversation", manager)
        asyncio.run(session.add_items(ITEMS))
        starpod_id = session.starpod_session_id
        contents = [m.content for m in sync.get_messages(starpod_id)]
        # The SDK never closes a session; a transcript is of a closed one, so the host closes it. A new
        # StarpodSession with the id then starts a new history (docs/guides/openai-agents.md).
        sync.close_session(starpod_id, "Asked about the weather in Paris.")
        assert asyncio.run(StarpodSession("conversation", manager).get_items()) == []
        transcript = sync.export_transcript(starpod_id).read_text(encoding="utf-8")
    finally:
        if isinstance(manager, AsyncSessionManager):
            asyncio.run(manager.aclose())
        else:
            manager.close()

    assert "Asked about the weather in Paris." in transcript
    sections = transcript.removesuffix("\n").split("\n\n---\n\n## ")[1:]
    assert [section.split(" · ")[0] for section in sections] == ROLES
    assert [section.split("\n\n", 1)[1] for section in sections] == contents
    assert contents[0] == "What is the weather in Paris?"  # plain text, as people read it
    assert json.loads(contents[5]) == ITEMS[5] and "Sunny, 24 °C ☀" in contents[5]

    [listed] = as_json(cli("sessions", "list", "--json", db=db_target))
    assert (listed["id"], listed["channel"], listed["channel_session_key"]) == (starpod_id, "main", "conversation")
    assert listed["title"] == "What is the weather in Paris?"
    shown = as_json(cli("sessions", "show", starpod_id, "--json", db=db_target))
    assert [message["content"] for message in shown["messages"]] == contents
    hits = as_json(cli("search", "sunny", "--json", db=db_target))
    assert {(hit["session_id"], hit["role"]) for hit in hits} == {
        (starpod_id, "assistant"),
        (starpod_id, "tool_result"),
    }
    costs = as_json(cli("costs", "--json", db=db_target))["overview"]
    assert costs["by_tool"] == [{"tool_name": "get_weather", "invocations": 1, "errors": 0}]
    exported = as_json(cli("sessions", "export", "--all", tmp_path / "exported", "--json", db=db_target))
    assert [Path(path).read_text(encoding="utf-8") for path in exported["transcripts"]] == [transcript]


def test_it_is_the_sdks_session_and_can_be_subclassed(make_session):
    from agents.memory import Session, SessionABC

    from starpod_session.integrations.openai_agents import StarpodSession

    class Tagged(StarpodSession):
        async def add_items(self, items):
            await super().add_items([{**item, "tag": 1} for item in items])

    session = make_session()
    assert isinstance(session, SessionABC)
    assert isinstance(session, Session)
    tagged = Tagged("t", make_session.manager)
    asyncio.run(tagged.add_items([{"role": "user", "content": "x"}]))
    assert asyncio.run(tagged.get_items()) == [{"role": "user", "content": "x", "tag": 1}]


def test_bad_arguments_raise_type_errors(make_session):
    from starpod_session.integrations.openai_agents import StarpodSession

    with pytest.raises(TypeError, match="session_id"):
        StarpodSession(1, make_session.manager)
    with pytest.raises(TypeError, match="manager"):
        StarpodSession("s", "sessions.db")
    with pytest.raises(TypeError, match="dict"):
        asyncio.run(make_session().add_items(["not an item"]))


class _WideCount(enum.IntEnum):
    """An ``int`` subclass (as an SDK item may hold) whose value the fast decoder would read as a float."""

    ALL = 2**70 + 1


@pytest.mark.parametrize("checked_by", ["orjson", "the standard module"])
def test_the_standard_decoder_gives_the_same_items(make_session, monkeypatch, checked_by):
    from starpod_session.integrations import openai_agents

    if checked_by != "orjson":  # what an item is stored as does not depend on orjson either
        monkeypatch.setattr(openai_agents, "_fast_checks", None)

    unusual = [
        {"n": math.inf},
        {"big": 2**70},
        {"widest": 2**64 - 1, "narrowest": -(2**63), "below": -(2**63) - 1, "digits": "1" * 30},
        {"escaped": "\ud800"},
        {"deep": [{"list": [1, 2**65]}], "flag": True},
        {"\udfff key": "a key with a lone surrogate", "n": None},
        {"an int subclass beyond 64 bits": _WideCount.ALL},
        *ITEMS,
    ]
    session = make_session()
    asyncio.run(session.add_items(unusual))
    fast = asyncio.run(session.get_items())
    monkeypatch.setattr(openai_agents, "_fast_loads", json.loads)
    standard = asyncio.run(session.get_items())
    assert fast == standard == unusual
    assert all(type(a) is type(b) for x, y in zip(fast, standard, strict=True) for a, b in zip(x, y, strict=True))


def test_a_run_keeps_its_history_and_its_usage_costs_from_the_price_table(make_session, backend):
    from agents import Agent, Runner, set_tracing_disabled
    from agents.testing import ModelStep, ScriptedModel
    from agents.usage import InputTokensDetails, OutputTokensDetails, Usage
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    def reply(text: str) -> ResponseOutputMessage:
        content = [ResponseOutputText(text=text, type="output_text", annotations=[], logprobs=[])]
        return ResponseOutputMessage(id="m", type="message", role="assistant", content=content, status="completed")

    usage = Usage(
        requests=1,
        input_tokens=1000,
        input_tokens_details=InputTokensDetails(cached_tokens=400, cache_write_tokens=100),
        output_tokens=200,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=1200,
    )
    model = ScriptedModel(
        [
            ModelStep(output=[reply("Paris")], usage=usage, response_id="resp-1"),
            ModelStep(output=[reply("France")], usage=usage, response_id="resp-2"),
        ]
    )
    prices = PriceTable({"gpt-test": ModelPrice(input=2, output=8, cache_read=0.5, cache_write=3)})
    session = make_session(prices=prices)
    agent = Agent(name="geo", model=model)
    set_tracing_disabled(True)  # no network: the SDK's traces would go to OpenAI

    async def main() -> None:
        first = await Runner.run(agent, "Capital?", session=session)
        assert await session.store_run_usage(first, model="gpt-test") == 1
        second = await Runner.run(agent, "Country?", session=session)
        await session.store_run_usage(second, model="gpt-test")
        await session.store_run_usage(second, model="gpt-test")  # stored once: keyed by the response id
        assert len(model.calls[-1].input) == 3  # the first turn's history and the new question

    asyncio.run(main())
    overview = sync_of(make_session).cost_overview()
    [by_model] = overview.by_model
    assert by_model.model == "gpt-test"
    # Ours count neither cache reads nor cache writes as input tokens; the SDK's count both.
    assert (overview.total_input_tokens, overview.total_output_tokens) == (2 * 500, 2 * 200)
    assert (overview.total_cache_read, overview.total_cache_write) == (2 * 400, 2 * 100)
    assert overview.total_cost_usd == pytest.approx(2 * (500 * 2 + 200 * 8 + 400 * 0.5 + 100 * 3) / 1e6)


def sdk_usage(input_tokens: int, cached: int, written: int, output: int) -> Any:
    """The SDK's ``Usage`` of one model response, with its input count holding the cached and written tokens."""
    from agents.usage import InputTokensDetails, OutputTokensDetails, Usage

    return Usage(
        requests=1,
        input_tokens=input_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=written),
        output_tokens=output,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=input_tokens + output,
    )


def usage_rows(db_target: str, session_id: str | None) -> list[tuple[Any, ...]]:
    """The session's usage rows as stored: (turn, model, input, output, cache read, cache write, cost, key)."""
    with raw_connection(db_target) as connection:
        rows = connection.execute(
            text(
                "SELECT turn, model, input_tokens, output_tokens, cache_read, cache_write, cost_usd, usage_key"
                " FROM usage_stats WHERE session_id = :id ORDER BY id"
            ),
            {"id": session_id},
        )
        return [(*row[:6], pytest.approx(float(row[6])), row[7]) for row in rows]


@pytest.mark.parametrize("named", ["a model name", "a Model object", "no model"])
def test_store_run_usage_takes_the_model_of_the_runs_last_agent_by_default(make_session, db_target, backend, named):
    from agents import Agent, ModelResponse, OpenAIResponsesModel
    from openai import AsyncOpenAI

    model = {
        "a model name": "gpt-agent",
        "a Model object": OpenAIResponsesModel(model="gpt-agent", openai_client=AsyncOpenAI(api_key="unused")),
        "no model": None,
    }[named]
    # What store_run_usage reads of the SDK's RunResult: its model responses and its last agent.
    result = SimpleNamespace(
        raw_responses=[ModelResponse(output=[], usage=sdk_usage(1000, 200, 0, 100), response_id="resp-a")],
        last_agent=Agent(name="last", model=model),
    )
    session = make_session(prices={"gpt-agent": ModelPrice(input=2, output=8, cache_read=0.5)})
    assert asyncio.run(session.store_run_usage(result)) == 1
    if named == "no model":  # stored without a model: unpriced, and "unknown" to the reports
        assert usage_rows(db_target, session.starpod_session_id) == [
            (1, None, 800, 100, 200, 0, 0.0, "openai-agents:resp-a")
        ]
        [by_model] = sync_of(make_session).cost_overview().by_model
        assert by_model.model == "unknown"
    else:
        cost = (800 * 2 + 100 * 8 + 200 * 0.5) / 1e6
        assert usage_rows(db_target, session.starpod_session_id) == [
            (1, "gpt-agent", 800, 100, 200, 0, cost, "openai-agents:resp-a")
        ]


def test_a_run_of_several_model_responses_stores_one_row_each_in_order_and_once(make_session, db_target, backend):
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

    @function_tool
    def forecast(city: str) -> str:
        """Tomorrow's weather in a city."""
        return f"snow in {city}"

    model = ScriptedModel(
        [
            ModelStep(
                output=[function_call("forecast", {"city": "Oslo"}, call_id="c1")],
                usage=sdk_usage(1000, 400, 100, 20),
                response_id="resp-1",
            ),
            ModelStep(
                output=[function_call("forecast", {"city": "Tromsø"}, call_id="c2")],
                usage=sdk_usage(1500, 1000, 0, 30),
                response_id="resp-2",
            ),
            ModelStep(
                output=[assistant_message("Snow in both.")], usage=sdk_usage(2000, 0, 300, 50), response_id="resp-3"
            ),
        ]
    )
    prices = PriceTable({"gpt-test": ModelPrice(input=2, output=8, cache_read=0.5, cache_write=3)})
    session = make_session(prices=prices)
    set_tracing_disabled(True)  # no network: the SDK's traces would go to OpenAI

    async def main() -> None:
        result = await Runner.run(
            Agent(name="weather", model=model, tools=[forecast]), "Oslo and Tromsø?", session=session
        )
        assert [response.response_id for response in result.raw_responses] == ["resp-1", "resp-2", "resp-3"]
        assert await session.store_run_usage(result, model="gpt-test") == 3
        assert await session.store_run_usage(result, model="gpt-test") == 3  # its responses, already stored

    asyncio.run(main())

    def row(turn: int, input_tokens: int, output: int, cached: int, written: int, key: str) -> tuple[Any, ...]:
        cost = (input_tokens * 2 + output * 8 + cached * 0.5 + written * 3) / 1e6
        return (turn, "gpt-test", input_tokens, output, cached, written, cost, key)

    # Ours counts neither cache reads nor cache writes as input tokens; the SDK's count both.
    assert usage_rows(db_target, session.starpod_session_id) == [
        row(1, 1000 - 400 - 100, 20, 400, 100, "openai-agents:resp-1"),
        row(2, 1500 - 1000, 30, 1000, 0, "openai-agents:resp-2"),
        row(3, 2000 - 300, 50, 0, 300, "openai-agents:resp-3"),
    ]
    assert sync_of(make_session).session_usage(session.starpod_session_id).total_turns == 3


def test_importing_the_library_imports_no_sdk_and_a_missing_sdk_names_the_extra():
    script = (
        "import sys, starpod_session, starpod_session.integrations\n"
        "assert 'agents' not in sys.modules and 'orjson' not in sys.modules, 'imported too early'\n"
        "sys.modules['agents'] = None\n"
        "try:\n"
        "    import starpod_session.integrations.openai_agents\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=TOP)
    assert "pip install 'starpod-session[openai-agents]'" in done.stdout


def test_the_example_agent_keeps_its_history_and_costs(db_target, tmp_path, backend):
    done = subprocess.run(
        [sys.executable, str(TOP / "examples" / "openai_agents_history.py"), db_target],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "San Francisco is in California." in done.stdout
    assert "asked with 3 items" in done.stdout  # the first turn's question and answer, then the new question
    assert "keeps 4 messages: user, assistant, user, assistant" in done.stdout
    assert "cost: $0.002440 for 80 output tokens" in done.stdout
    manager = SessionManager(db_target)
    try:
        [meta] = manager.list_sessions(10)
        assert (meta.channel_session_key, meta.title) == ("visitor-42", "Where is the Golden Gate Bridge?")
    finally:
        manager.close()


# -- concurrency (point 6) ----------------------------------------------------------------------


def run_items(run: int, count: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"run {run} item {n}"} for n in range(count)]


def check_runs(items: list[dict[str, Any]], runs: int, count: int) -> None:
    """Every item of every run stored once, each run's in its order."""
    assert sorted(item["content"] for item in items) == sorted(
        item["content"] for run in range(runs) for item in run_items(run, count)
    )
    for run in range(runs):
        assert [item for item in items if item["content"].startswith(f"run {run} ")] == run_items(run, count)


@pytest.mark.parametrize("sessions", [1, 16])
def test_sixteen_concurrent_runs_lose_duplicate_and_reorder_nothing(make_session, backend, facade, sessions):
    runs, count = 16, 12
    session_of = [make_session(f"s{run % sessions}") for run in range(runs)]

    async def run(number: int) -> None:
        for pair in range(0, count, 2):  # as a run adds them: a few at a time
            await session_of[number].add_items(run_items(number, count)[pair : pair + 2])

    if facade == "async":

        async def together() -> None:
            await asyncio.gather(*(run(number) for number in range(runs)))

        asyncio.run(together())
    else:  # a sync manager's calls run in their caller: sixteen threads, each with its loop
        threads = [threading.Thread(target=asyncio.run, args=(run(number),)) for number in range(runs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stored = [item for key in range(sessions) for item in asyncio.run(make_session(f"s{key}").get_items())]
    check_runs(stored, runs, count)


def test_one_session_over_an_async_manager_serves_several_event_loops_in_several_threads(db_target, backend):
    """One StarpodSession and one AsyncSessionManager shared by eight threads, each running its own event loop."""
    from starpod_session.integrations.openai_agents import StarpodSession

    runs, count = 8, 12
    manager = AsyncSessionManager(db_target, pool_size=3)  # fewer threads than loops: calls queue too
    shared = StarpodSession("shared", manager)
    together = threading.Barrier(runs)
    errors: list[BaseException] = []

    async def run(number: int) -> None:
        own = StarpodSession(f"own {number}", manager)  # made in this loop, as a request handler makes one
        for pair in range(0, count, 2):
            items = run_items(number, count)[pair : pair + 2]
            await shared.add_items(items)
            await own.add_items(items)
            assert (await own.get_items(limit=2)) == items
            await shared.get_items(limit=5)
        assert await own.pop_item() == run_items(number, count)[-1]

    def thread(number: int) -> None:
        together.wait(30)
        try:
            asyncio.run(run(number))
        except BaseException as error:
            errors.append(error)

    try:
        # Daemon threads joined with a bound: a loop stuck on another loop's future fails the test, never hangs it.
        threads = [threading.Thread(target=thread, args=(number,), daemon=True) for number in range(runs)]
        for started in threads:
            started.start()
        for started in threads:
            started.join(60)
        assert [started for started in threads if started.is_alive()] == []
        assert errors == []
        check_runs(asyncio.run(shared.get_items()), runs, count)
        for number in range(runs):
            own_items = asyncio.run(StarpodSession(f"own {number}", manager).get_items())
            assert own_items == run_items(number, count)[:-1]
        assert len(manager.sync.list_sessions(20)) == runs + 1
    finally:
        asyncio.run(manager.aclose())


def test_two_hundred_concurrent_awaits_across_twenty_sessions_store_each_message_once(db_target, backend):
    async def main() -> None:
        async with AsyncSessionManager(db_target) as manager:
            session_ids = [await manager.create_session(Channel.MAIN, f"k{n}") for n in range(20)]
            await asyncio.gather(
                *(manager.save_message(session_ids[n % 20], "user", f"m{n}", message_key=f"m{n}") for n in range(200))
            )
            for number, session_id in enumerate(session_ids):
                stored = [m.content for m in await manager.get_messages(session_id)]
                assert sorted(stored) == sorted(f"m{n}" for n in range(number, 200, 20))

    asyncio.run(main())


def test_a_storm_of_cancelled_awaits_leaves_no_half_written_call(db_target, backend):
    """Calls of three messages cancelled at random points: each is stored whole or not at all. Keyed saves
    cancelled at random, then all retried with the same keys: each message stored exactly once (a cancelled
    write may have committed, a queued one never ran). The manager keeps working."""
    from starpod_session.integrations.openai_agents import StarpodSession

    chance = random.Random(28)

    async def main() -> None:
        async with AsyncSessionManager(db_target, pool_size=4) as manager:
            session_id = await manager.create_session(Channel.MAIN, "k")
            calls = [
                asyncio.ensure_future(manager.save_messages(session_id, [("user", f"c{n} {part}") for part in "abc"]))
                for n in range(100)
            ]
            for _ in range(60):
                await asyncio.sleep(0)
                victim = chance.choice(calls)
                victim.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            stored = [m.content for m in await manager.get_messages(session_id)]
            for n in range(100):
                parts = [content for content in stored if content.startswith(f"c{n} ")]
                assert parts in ([], [f"c{n} a", f"c{n} b", f"c{n} c"])
            assert any(call.cancelled() for call in calls)
            # The caller's retry after a storm: every save again, with the key it had.
            keyed = await manager.create_session(Channel.MAIN, "keyed")
            saves = [
                asyncio.ensure_future(manager.save_message(keyed, "user", f"k{n}", message_key=f"k{n}"))
                for n in range(100)
            ]
            for _ in range(60):
                await asyncio.sleep(0)
                chance.choice(saves).cancel()
            await asyncio.gather(*saves, return_exceptions=True)
            before = [m.content for m in await manager.get_messages(keyed)]
            assert len(before) < 100  # the retry has missing ones to store
            ids = [await manager.save_message(keyed, "user", f"k{n}", message_key=f"k{n}") for n in range(100)]
            after = await manager.get_messages(keyed)
            assert sorted(m.content for m in after) == sorted(f"k{n}" for n in range(100))
            assert sorted(ids) == [m.id for m in after]  # a stored one's retry gave its id back
            # The adapter's add_items completes despite cancellation (as the SDK's sessions do).
            session = StarpodSession("storm", manager)
            adds = [asyncio.ensure_future(session.add_items(run_items(n, 2))) for n in range(50)]
            for _ in range(30):
                await asyncio.sleep(0)
                chance.choice(adds).cancel()
            await asyncio.gather(*adds, return_exceptions=True)
            check_runs(await session.get_items(), 50, 2)
            assert await manager.save_message(session_id, "user", "still working") > 0

    asyncio.run(main())
