"""The suite as a newcomer runs it: without servers it runs on SQLite and says once why the others did not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


#: A test that needs both server drivers and no server.
NEEDS_DRIVERS = "tests/api/test_urls.py::test_a_server_url_without_a_driver_uses_the_one_the_extra_installs"


def run_pytest_without_drivers(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in an interpreter where neither server driver can be imported, as after the README's install."""
    environment = {name: value for name, value in os.environ.items() if name != URLS_VARIABLE} | variables
    hide = "import sys; sys.modules['psycopg'] = sys.modules['pymysql'] = None; import pytest; "
    command = [sys.executable, "-c", f"{hide}sys.exit(pytest.main({['-p', 'no:cacheprovider', '-rs', *arguments]!r}))"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)


def test_a_test_that_needs_a_driver_skips_without_it_and_names_the_extra_to_install():
    result = run_pytest_without_drivers(NEEDS_DRIVERS)
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 2, result.stdout  # the PostgreSQL case, then the two MariaDB cases in one line
    assert "needs the psycopg driver: pip install -e '.[postgres]'" in skipped[0] + skipped[1]
    assert "needs the pymysql driver: pip install -e '.[mysql]'" in skipped[0] + skipped[1]


def test_a_missing_driver_never_hides_a_server_the_run_was_told_to_use():
    result = run_pytest_without_drivers(NEEDS_DRIVERS, **{URLS_VARIABLE: EXAMPLE_URLS["postgresql"]})
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "names postgresql" in result.stderr and "cannot be reached" in result.stderr, result.stderr
    assert "skipped" not in result.stdout
