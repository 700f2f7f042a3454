"""One ADK event of each kind the store keeps, for the tests that hold the service and its reading of
stored events to ADK's (``test_adk.py``, ``test_adk_events.py``). Imported only where ADK is installed."""

from __future__ import annotations

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types


def shapes() -> list[Event]:
    """One event of each kind the store keeps, each part and action kind at least once."""
    part = types.Part
    return [
        Event(author="user", invocation_id="i", content=types.Content(role="user", parts=[part(text="hello")])),
        Event(
            author="agent",
            invocation_id="i",
            branch="root.agent",
            content=types.Content(
                role="model",
                parts=[
                    part(text="thinking", thought=True, thought_signature=b"\x00sig\xff"),
                    part.from_bytes(data=bytes(range(256)), mime_type="image/png"),
                    part(file_data=types.FileData(file_uri="gs://b/f.pdf", mime_type="application/pdf")),
                    part(function_call=types.FunctionCall(id="c1", name="forecast", args={"city": "Oslo", "n": [1]})),
                    part(executable_code=types.ExecutableCode(code="print(1)", language=types.Language.PYTHON)),
                    part(code_execution_result=types.CodeExecutionResult(outcome=types.Outcome.OUTCOME_OK, output="1")),
                ],
            ),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=1000,
                candidates_token_count=50,
                cached_content_token_count=200,
                prompt_tokens_details=[types.ModalityTokenCount(modality=types.MediaModality.TEXT, token_count=9)],
            ),
            model_version="gemini-2.5-flash",
            long_running_tool_ids={"c1", "c2"},
            custom_metadata={"trace": {"id": [1, 2.5, "x"]}},
            timestamp=1_700_000_000.123456,
        ),
        Event(
            author="tool",
            invocation_id="i",
            content=types.Content(
                role="user",
                parts=[part(function_response=types.FunctionResponse(id="c1", name="forecast", response={"t": -3}))],
            ),
            actions=EventActions(
                state_delta={"k": "v", "app:shared": 1, "user:n": [1, 2]},
                artifact_delta={"report.pdf": 2},
                transfer_to_agent="other",
                escalate=True,
                skip_summarization=True,
            ),
        ),
        Event(
            author="agent",
            invocation_id="i",
            error_code="SAFETY",
            error_message="blocked",
            interrupted=True,
            turn_complete=True,
            grounding_metadata=types.GroundingMetadata(web_search_queries=["oslo weather"]),
        ),
        Event(author="agent", content=types.Content(role="model", parts=[part(text="Tromsø ☃ \u2028")])),
        Event(author="agent"),
    ]
