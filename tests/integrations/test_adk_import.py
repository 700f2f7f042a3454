"""The ``adk`` extra (issue #29, point 3): importing starpod_session never imports ADK, and the adapter
without ADK says which extra to install. Runs with or without ADK installed (a subprocess hides it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ..backends import needs_packages

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_importing_the_library_and_its_adk_store_imports_no_adk():
    completed = run_python(
        """
        import sys
        import starpod_session, starpod_session.adk_store, starpod_session.integrations
        print(sorted(name for name in sys.modules if name.startswith(("google.adk", "google.genai", "pydantic"))))
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_the_adapter_without_adk_names_the_extra_to_install():
    completed = run_python(
        """
        import sys
        sys.modules["google.adk"] = None  # as if the extra were not installed
        import starpod_session.integrations.adk
        """
    )
    assert completed.returncode != 0
    assert "ImportError: starpod_session.integrations.adk needs Google's Agent Development Kit" in completed.stderr
    assert "pip install 'starpod-session[adk]'" in completed.stderr


@needs_packages("adk", "google.adk")
def test_the_adapter_is_a_base_session_service_where_adk_is_installed():
    completed = run_python(
        """
        from google.adk.sessions import BaseSessionService
        from starpod_session.integrations.adk import StarpodSessionService
        assert issubclass(StarpodSessionService, BaseSessionService)
        """
    )
    assert completed.returncode == 0, completed.stderr
