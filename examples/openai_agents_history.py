"""An OpenAI Agents SDK agent whose history and costs live in starpod_session.

    pip install 'starpod-session[openai-agents]'
    python examples/openai_agents_history.py [DATABASE]

DATABASE is a SQLite file or a server URL (``postgresql+psycopg://...``,
``mysql+pymysql://...``); a temporary SQLite file by default.

The model is scripted (the SDK's ``ScriptedModel``), so the example needs no
network and no API key: swap in ``model="gpt-4.1"`` for a real one. The agent
answers two questions; the second sees the first in its history, which the
``StarpodSession`` keeps as messages of a starpod_session session (listed by
``starpod-session sessions list``, searchable, priced in ``costs``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from agents import Agent, Runner, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel
from agents.usage import InputTokensDetails, OutputTokensDetails, Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from starpod_session import AsyncSessionManager, ModelPrice, PriceTable
from starpod_session.integrations.openai_agents import StarpodSession

PRICES = PriceTable({"gpt-4.1": ModelPrice(input=2.0, output=8.0, cache_read=0.5)})


def answer(text: str, response_id: str) -> ModelStep:
    """One scripted model response: the text, and the tokens a real model would have reported."""
    content = [ResponseOutputText(text=text, type="output_text", annotations=[], logprobs=[])]
    message = ResponseOutputMessage(
        id=f"msg_{response_id}", type="message", role="assistant", content=content, status="completed"
    )
    usage = Usage(
        requests=1,
        input_tokens=1200,
        input_tokens_details=InputTokensDetails(cached_tokens=1000, cache_write_tokens=0),
        output_tokens=40,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=1240,
    )
    return ModelStep(output=[message], usage=usage, response_id=response_id)


async def main(database: str) -> None:
    set_tracing_disabled(True)  # the SDK would send traces to OpenAI
    model = ScriptedModel(
        [answer("The Golden Gate Bridge is in San Francisco.", "r1"), answer("San Francisco is in California.", "r2")]
    )
    agent = Agent(name="Guide", instructions="Answer briefly.", model=model)
    async with AsyncSessionManager(database) as manager:
        session = StarpodSession("visitor-42", manager, prices=PRICES)
        for question in ("Where is the Golden Gate Bridge?", "Which state is that in?"):
            result = await Runner.run(agent, question, session=session)
            await session.store_run_usage(result, model="gpt-4.1")
            print(f"> {question}\n{result.final_output}")
        print(f"the second question was asked with {len(model.calls[-1].input)} items of history and input")
        messages = await manager.get_messages(session.starpod_session_id)
        print(f"starpod_session keeps {len(messages)} messages:", ", ".join(m.role for m in messages))
        costs = await manager.cost_overview()
        print(f"cost: ${costs.total_cost_usd:.6f} for {costs.total_output_tokens} output tokens")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "sessions.db")
    asyncio.run(main(target))
