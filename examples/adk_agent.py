"""An ADK agent on starpod_session: a weather agent whose model is scripted (no network, no API key).

    pip install 'starpod-session[adk]'
    python examples/adk_agent.py [DATABASE]    # a SQLite path (default: a temporary file) or a server URL

The one line that matters is the session service: ``StarpodSessionService(SessionManager(DATABASE))``.
The agent calls a tool, answers, and the same database then answers what ADK's own
stores cannot: a full-text search of the conversation, its Markdown transcript,
the tool statistics and what the conversation cost.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.genai import types

from starpod_session import ModelPrice, SessionManager
from starpod_session.integrations.adk import StarpodSessionService

MODEL = "scripted-weather-1"
PRICES = {MODEL: ModelPrice(input=0.30, output=2.50, cache_read=0.075)}


def get_forecast(city: str) -> dict[str, str]:
    """Tomorrow's forecast for a city."""
    return {"city": city, "forecast": "snow showers, -4 °C"}


class ScriptedModel(BaseLlm):
    """A model that calls ``get_forecast`` for the city asked about, then answers with its result."""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1].parts[0]
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1200, cached_content_token_count=800, candidates_token_count=40
        )
        if last.function_response is not None:
            forecast = last.function_response.response["forecast"]
            reply = types.Part(text=f"Tomorrow in {last.function_response.response['city']}: {forecast}.")
        else:
            city = (last.text or "").rstrip("?").split()[-1]
            call = types.FunctionCall(id=f"call-{city}", name="get_forecast", args={"city": city})
            reply = types.Part(function_call=call)
        yield LlmResponse(content=types.Content(role="model", parts=[reply]), usage_metadata=usage, model_version=MODEL)


async def main(database: str) -> None:
    agent = LlmAgent(name="weather", model=ScriptedModel(model=MODEL), tools=[get_forecast])
    with SessionManager(database, Path(tempfile.mkdtemp()) / "transcripts") as manager:
        async with StarpodSessionService(manager, prices=PRICES) as sessions:
            runner = Runner(agent=agent, app_name="weather-app", session_service=sessions)
            session = await sessions.create_session(
                app_name="weather-app", user_id="ada", state={"user:units": "metric"}
            )
            question = types.Content(role="user", parts=[types.Part(text="Will it snow tomorrow in Tromsø?")])
            async for event in runner.run_async(user_id="ada", session_id=session.id, new_message=question):
                if event.content and event.content.parts and event.content.parts[0].text:
                    print(f"{event.author}: {event.content.parts[0].text}")
            starpod_id = await sessions.starpod_session_id(app_name="weather-app", user_id="ada", session_id=session.id)

        # The same conversation, through the library's own calls.
        assert starpod_id is not None
        hit = manager.search_messages("snow Tromsø", roles=["user"])[0]
        print(f"search: {hit.role} said {hit.snippet!r}")
        overview = manager.cost_overview()
        tools = ", ".join(f"{t.tool_name} x{t.invocations}" for t in overview.by_tool)
        print(f"cost: ${overview.total_cost_usd:.6f} over {overview.total_turns} model calls; tools: {tools}")
        manager.close_session(starpod_id, "weather question answered")
        print(f"transcript: {manager.export_transcript(starpod_id).name}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "agent.db")
    asyncio.run(main(target))
