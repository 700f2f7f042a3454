"""The built wheel carries its migrations: an installed package upgrades a database with no checkout around."""

from __future__ import annotations

import importlib.util
import json
import os
import site
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the library's own dependency provides it
    import tomli as tomllib
from packaging.version import Version

import starpod_session
from starpod_session.storage.schema import head_revision

ROOT = Path(__file__).resolve().parents[2]


def run(*command: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def dependency_directories() -> list[str]:
    """Where the running interpreter finds the dependencies: its site-packages and user site, if any.

    It works the same in a virtual environment (the usual case) and on a system interpreter.
    """
    directories = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        directories.append(site.getusersitepackages())
    return directories


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment holding the built wheel, its dependencies borrowed offline.

    The wheel goes in first, so pip sees no other copy of the project. Then a ``.pth``
    names the running interpreter's site-packages as plain directories: they come after
    the environment's own, and the ``.pth`` files inside them are not processed, so
    this project's editable install (a ``.pth`` naming the checkout) is left out.
    """
    assert importlib.util.find_spec("hatchling"), "building the wheel offline needs hatchling: pip install -e '.[test]'"
    scratch = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        scratch / "dist",
        ROOT,
        cwd=scratch,
    )
    [wheel] = (scratch / "dist").glob("starpod_session-*.whl")
    environment = scratch / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(environment)
    python = environment / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=scratch)
    own_site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=scratch).stdout.strip()
    (Path(own_site) / "_borrowed_dependencies.pth").write_text("\n".join(dependency_directories()) + "\n")
    return python


def test_the_installed_package_is_the_wheel_and_ships_its_migrations(installed_python, tmp_path):
    probe = (
        "import json, sys, starpod_session, starpod_session.storage.schema as s; "
        "print(starpod_session.__file__); print(s.migrations_dir()); print(s.head_revision()); "
        "print(json.dumps(sys.path))"
    )
    package_file, migrations, head, path = run(installed_python, "-c", probe, cwd=tmp_path).stdout.splitlines()
    environment = installed_python.parents[1]
    assert Path(package_file).is_relative_to(environment)
    assert str(ROOT) not in json.loads(path)  # the checkout is not importable there
    assert Path(migrations).is_relative_to(environment) and Path(migrations).name == "_migrations"
    assert head == head_revision()
    assert sorted(path.name for path in (Path(migrations) / "versions").glob("*.py")) == sorted(
        path.name for path in (ROOT / "migrations" / "versions").glob("*.py")
    )


def test_the_installed_command_upgrades_an_empty_database(installed_python, tmp_path):
    database = tmp_path / "fresh.db"
    upgraded = run(installed_python, "-m", "starpod_session", "db", "upgrade", database, cwd=tmp_path)
    assert upgraded.stdout.strip() == f"{database}: upgraded from none to {head_revision()}"
    run(installed_python, "-m", "starpod_session", "db", "check", database, cwd=tmp_path)
    with sqlite3.connect(database) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]

    script = installed_python.parent / "starpod-session"
    assert script.exists()
    current = run(script, "db", "current", database, cwd=tmp_path)
    assert current.stdout.strip() == f"{head_revision()} (head)"


def test_the_installed_library_migrates_when_it_opens_a_database(installed_python, tmp_path):
    database = tmp_path / "opened.db"
    program = (
        "import sys; from starpod_session import SessionManager\n"
        "with SessionManager(sys.argv[1]) as m: print(m.create_session('main', 'k'))\n"
    )
    run(installed_python, "-c", program, database, cwd=tmp_path)
    with sqlite3.connect(database) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert raw.execute("SELECT count(*) FROM session_metadata").fetchone() == (1,)


def test_the_version_is_written_once_and_read_everywhere(installed_python, tmp_path):
    probe = (
        "import importlib.metadata as m, starpod_session as s; "
        "print(s.__version__); print(m.version('starpod-session'))"
    )
    in_package, in_metadata = run(installed_python, "-c", probe, cwd=tmp_path).stdout.splitlines()
    assert in_package == in_metadata == starpod_session.__version__
    assert str(Version(in_package)) == in_package  # a normalised PEP 440 version (Version() raises otherwise)
    shown = run(installed_python.parent / "starpod-session", "--version", cwd=tmp_path).stdout.strip()
    assert shown == f"starpod-session {starpod_session.__version__}"
    written = [line for line in (ROOT / "starpod_session" / "_version.py").read_text().splitlines() if "=" in line]
    assert written == [f'__version__ = "{starpod_session.__version__}"']
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
