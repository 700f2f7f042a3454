"""``examples/adk_agent.py`` runs, on every backend (issue #29, point 4): an ADK agent with a scripted
model on ``StarpodSessionService``, then search, cost report and transcript of its conversation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..backends import needs_packages

ROOT = Path(__file__).resolve().parents[2]


@needs_packages("adk", "google.adk")
def test_the_example_agent_runs_and_its_conversation_is_searchable_and_costed(db_target: str) -> None:
    completed = subprocess.run(
        [sys.executable, "examples/adk_agent.py", db_target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "weather: Tomorrow in Tromsø: snow showers, -4 °C.",
        "search: user said 'Will it «snow» tomorrow in «Tromsø»?'",
        "cost: $0.000560 over 2 model calls; tools: get_forecast x1",
        "transcript: will-it-snow-tomorrow-in-troms-" + completed.stdout.split("-troms-")[1].strip(),
    ]
