"""Running ``starpod-session`` in tests: the installed command as a process, or ``main`` in-process.

A process shows what only a process can (exit status, stderr, tracebacks, broken pipes,
terminal width); everything else runs through ``main(argv)``, which is much faster.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from starpod_session.cli import main


def installed_command() -> str:
    """The ``starpod-session`` script of the environment running the tests."""
    beside = Path(sys.executable).parent / "starpod-session"  # the venv's bin, not resolved
    found = str(beside) if beside.exists() else shutil.which("starpod-session")
    assert found, "the starpod-session command is not installed: pip install -e ."
    return found


def command_environment(db: object = None, **variables: str) -> dict[str, str]:
    """The environment of a command run: wide output, and STARPOD_SESSION_DB only when given."""
    environment = {**os.environ, "COLUMNS": "200", **variables}
    environment.pop("STARPOD_SESSION_DB", None)
    if db is not None:
        environment["STARPOD_SESSION_DB"] = str(db)
    return environment


def run_command(*arguments: object, db: object = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command and wait for it."""
    return subprocess.run(
        [installed_command(), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=command_environment(db, **variables),
    )


def run_commands(runs: Sequence[Sequence[object]]) -> list[subprocess.CompletedProcess[str]]:
    """Run several invocations of the installed command side by side; results in the same order."""
    environment = command_environment()
    started = [
        (
            arguments,
            subprocess.Popen(
                [installed_command(), *map(str, arguments)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment,
            ),
        )
        for arguments in runs
    ]
    results = []
    for arguments, process in started:
        out, err = process.communicate()
        results.append(subprocess.CompletedProcess(arguments, process.returncode, out, err))
    return results


def run_in_process(*arguments: object, db: object = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """``main(argv)`` in-process, in the environment ``run_command`` would give; same result shape."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, command_environment(db, **variables), clear=True),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        status = main([str(argument) for argument in arguments])
    return subprocess.CompletedProcess(arguments, status, out.getvalue(), err.getvalue())


def run_main(capsys: pytest.CaptureFixture[str], *arguments: object) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    status = main([str(argument) for argument in arguments])
    out, err = capsys.readouterr()
    return status, out, err


def assert_clean_failure(result: subprocess.CompletedProcess[str], status: int = 1) -> None:
    """The command failed with ``status`` and said why in one line on stderr, without a traceback."""
    assert result.returncode == status, result
    assert result.stderr.startswith("starpod-session: "), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    """The JSON a successful run printed."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def formatting_only(backend: str) -> None:
    """Output formatting and argument handling do not depend on the backend: test them once."""
    if backend != "sqlite":
        pytest.skip("formatting and errors are the same on every backend; checked on SQLite")
