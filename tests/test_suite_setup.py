"""The suite as a newcomer runs it: without servers it runs on SQLite and says once why the others did not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .backends import EXAMPLE_URLS, URLS_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
#: One backend-parametrised test, so each run stays short.
ONE_TEST = "tests/api/test_sessions.py::test_create_session_records_the_given_user_and_no_trigger_by_default"


def run_pytest(*arguments: str) -> list[str]:
    """Run pytest on this suite with no server named; the lines it prints."""
    environment = {name: value for name, value in os.environ.items() if name != URLS_VARIABLE}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *arguments]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_a_run_without_servers_says_in_one_line_why_they_did_not_run():
    lines = run_pytest(ONE_TEST)
    assert "sqlite: 1 passed, 0 failed, 0 skipped" in lines
    assert "postgresql: not configured" in lines and "mariadb: not configured" in lines
    [explanation] = [line for line in lines if URLS_VARIABLE in line]
    assert f"{URLS_VARIABLE}={EXAMPLE_URLS['postgresql']},{EXAMPLE_URLS['mariadb']}" in explanation
    assert not [line for line in lines if "SKIPPED" in line]
    assert lines[-1].startswith("1 passed") or "= 1 passed" in lines[-1]


def test_backend_runs_the_backend_tests_on_that_backend_only():
    lines = run_pytest(ONE_TEST, "--backend", "sqlite", "-q")
    assert "sqlite: 1 passed, 0 failed, 0 skipped" in lines
    assert "postgresql: not selected (--backend)" in lines
    assert not [line for line in lines if URLS_VARIABLE in line]
