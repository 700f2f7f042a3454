"""The package's layers, in one place, and a check that no module imports a layer above its own.

Each layer may import its own layer and those below it, never one above: a
repository never reaches the facade, the fast path never reaches a repository.
ARCHITECTURE.md draws these layers; the test below holds every module to them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import starpod_session

PACKAGE = Path(starpod_session.__file__).parent
ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"

#: Top to bottom. A name is a top-level module or folder of ``starpod_session``
#: (``__init__`` is the package's own module: its public names).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli", "demo"),  # entry points: the command line, the demo
    ("integrations",),  # framework adapters (each behind an extra), over the facades
    ("__init__",),  # the public names
    ("async_manager",),  # the awaitable facade over the synchronous one
    ("manager", "tracing", "adk_store"),  # the facades (SessionManager; ADK's tables' AdkStore) and spans
    ("features",),  # what each public call does: its checks and its work
    ("channels", "config", "prices"),  # channel policy, agent.toml, prices
    ("storage",),  # tables, schema, transactions, repositories (all SQL)
    ("backends",),  # what differs per database: engines, begin statements
    ("_driver",),  # the fast path: prepared statements on the driver
    ("records", "errors", "retry", "_common", "_clock", "_version"),  # what every layer may use
)

_LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    """The top-level name of a ``starpod_session`` module (``storage.repositories.search`` → ``storage``)."""
    return module.split(".", 1)[0] if module else "__init__"


def _module_name(path: Path) -> str:
    """``starpod_session/storage/schema.py`` → ``storage.schema``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, module under ``starpod_session``) of each import of the package in ``source``."""
    package = list(path.parent.relative_to(PACKAGE).parts)  # what a relative import starts from
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(["starpod_session", *package[: len(package) - node.level + 1]])
            # ``from .. import manager`` imports the module ``manager``; ``from ..x import y``, ``x``.
            targets = [f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""]
        else:
            continue
        found += [
            (node.lineno, target.removeprefix("starpod_session").lstrip("."))
            for target in targets
            if target == "starpod_session" or target.startswith("starpod_session.")
        ]
    return found


def violations(path: Path, source: str) -> list[str]:
    """Each import in ``source`` (the file at ``path``) of a layer above the file's own."""
    own = _LAYER_OF[_top(_module_name(path))]
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target or 'starpod_session'}, a layer above"
        for line, target in imported_modules(path, source)
        if _LAYER_OF[_top(target)] < own
    ]


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "_migrations" not in path.parts)


def test_every_module_has_a_layer() -> None:
    """A new top-level module or folder must be placed in LAYERS (and so in ARCHITECTURE.md)."""
    assert {_top(_module_name(path)) for path in _modules()} - set(_LAYER_OF) == set()


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert [problem for path in _modules() for problem in violations(path, path.read_text())] == []


def test_the_check_sees_an_import_from_above() -> None:
    """The check itself: the fast path importing a repository or the facade, in each spelling, is caught."""
    statements = PACKAGE / "_driver" / "statements.py"
    for spelling in (
        "from ..storage.repositories import SessionRepository",
        "from starpod_session.manager import SessionManager",
        "import starpod_session.features.sessions",
        "from .. import manager",
    ):
        assert len(violations(statements, spelling)) == 1, spelling
    assert violations(statements, "from ..errors import StorageError\nfrom .errors import wrap_driver_error") == []


def test_architecture_names_every_layer() -> None:
    """ARCHITECTURE.md's table of folders names each entry of LAYERS."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [
        name
        for name in _LAYER_OF
        if f"`{name}/`" not in text and f"`{name}.py`" not in text and f"`{name}`" not in text
    ]
    assert missing == []
