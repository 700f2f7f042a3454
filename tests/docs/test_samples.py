"""Every ```python block of README.md and docs/**/*.md runs, so no sample rots.

One test per page: the page's Python blocks run in order in one namespace, in a
fresh temporary working directory (so SQLite files and transcripts land there,
never in the checkout). A failing block's traceback names the Markdown file and
the line of the block's code that failed.

A page controls its samples with an HTML comment on the line before a block
(blank lines between are allowed; the comment is invisible on the rendered page
but visible in the Markdown):

``<!-- sample: skip (REASON) -->``
    The block is not run; it is reported as a skipped test of its own with
    REASON (say, ``needs a PostgreSQL server``). Keep these few: a sample that
    can set itself up in a line should do so instead.
``<!-- sample: server BACKEND -->``
    The block needs a server (``postgresql`` or ``mariadb``) and runs on its own,
    not with the page's other blocks: where the run names that server (see
    ``tests/backends.py``), each URL of that backend in the block is replaced by
    the run's scratch database; elsewhere it is a skipped test of its own, whose
    reason says how to name the server.
``<!-- sample: file NAME -->``
    The block (any language, e.g. the ``agent.toml`` sample) is written to NAME
    in the working directory when the page's run reaches it, for the Python
    blocks after it to read (which checks that it loads).

Any other ``<!-- sample: ... -->`` comment is an error, so a misspelt marker
never skips a sample silently.
"""

from __future__ import annotations

import gc
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import starpod_session
from starpod_session import SessionManager

from ..backends import not_configured_hint
from ..conftest import running_backends

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*sample:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s+\((?P<reason>[^)]+)\)$")
_FILE = re.compile(r"^file\s+(?P<name>[\w.-]+)$")
_SERVER = re.compile(r"^server\s+(?P<backend>postgresql|mariadb)$")
#: The URLs a server sample may name, per backend (replaced by the run's own database).
_SAMPLE_URLS = {
    "postgresql": re.compile(r"postgresql(\+psycopg)?://[^\s\"']+"),
    "mariadb": re.compile(r"(mysql|mariadb)(\+pymysql)?://[^\s\"']+"),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # the line of the block's first code line (1-based)
    language: str
    code: str
    skip: str | None = None  # the reason, when marked skip
    file: str | None = None  # the file name, when marked file
    server: str | None = None  # the backend, when marked server

    @property
    def where(self) -> str:
        return f"{page_name(self.page)}:{self.line}"


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)


def blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of a Markdown page, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, indent = opening["fence"], opening["indent"]
        start = index + 1
        end = start
        while end < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page_name(page)}:{index + 1}: code block never closed")
        code = textwrap.dedent("\n".join(line.removeprefix(indent) for line in lines[start:end]))
        skip = file = server = None
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        while before >= 0 and (marker := _MARKER.match(lines[before])):
            body = marker["body"]
            if match := _SKIP.match(body):
                skip = match["reason"]
            elif match := _FILE.match(body):
                file = match["name"]
            elif match := _SERVER.match(body):
                server = match["backend"]
            else:
                raise ValueError(
                    f"{page_name(page)}:{before + 1}: unknown sample marker {body!r} "
                    "(known: 'skip (REASON)', 'file NAME', 'server postgresql|mariadb')"
                )
            before -= 1
        yield Block(page, start + 1, opening["info"].lower(), code, skip, file, server)
        index = end + 1


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def is_python(block: Block) -> bool:
    return block.language in {"python", "py"}


def run_block(block: Block, namespace: dict[str, object]) -> None:
    """Run one Python block in ``namespace``; tracebacks name the page and its line."""
    # Blank lines in front keep the page's line numbers in tracebacks.
    exec(compile("\n" * (block.line - 1) + block.code, str(block.page), "exec"), namespace)


def close_managers(namespace: dict[str, object]) -> None:
    for value in namespace.values():
        if isinstance(value, SessionManager):
            value.close()
    namespace.clear()
    gc.collect()


def run_page(page: Path) -> int:
    """Run a page's Python blocks in order in one namespace, in the current directory, where its
    file blocks are written. Returns how many blocks ran."""
    namespace: dict[str, object] = {"__name__": "__sample__"}
    ran = 0
    try:
        for block in blocks(page):
            if block.skip is not None or block.server is not None:
                continue
            if block.file is not None:
                Path(block.file).write_text(block.code + "\n", encoding="utf-8")
            elif is_python(block):
                run_block(block, namespace)
                ran += 1
    finally:
        close_managers(namespace)
    return ran


def _checkout_entries() -> set[Path]:
    return set(ROOT.iterdir()) | set(DOCS.rglob("*"))


def _pages_with_samples() -> list[Path]:
    return [page for page in pages() if any(is_python(b) or b.file for b in blocks(page))]


@pytest.mark.parametrize("page", _pages_with_samples(), ids=page_name)
def test_page_samples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STARPOD_SESSION_DB", raising=False)
    before = _checkout_entries()
    ran = run_page(page)
    assert _checkout_entries() == before, "a sample left files in the checkout"
    assert ran or any(b.skip or b.server for b in blocks(page)), f"{page_name(page)}: no sample ran"


_ON_SERVERS = [block for page in pages() for block in blocks(page) if block.server is not None]


@pytest.mark.parametrize("block", _ON_SERVERS, ids=lambda block: block.where)
def test_server_sample_runs_on_the_server_the_run_names(
    block: Block,
    request: pytest.FixtureRequest,
    clean_database: Callable[[str, Path], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert block.server is not None
    if block.server not in running_backends(request.config):
        pytest.skip(f"{block.where}: needs a {block.server} server; {not_configured_hint([block.server])}")
    monkeypatch.chdir(tmp_path)
    url = clean_database(block.server, tmp_path)
    code, replaced = _SAMPLE_URLS[block.server].subn(url, block.code)
    assert replaced, f"{block.where}: a server sample names no {block.server} URL to replace"
    namespace: dict[str, object] = {"__name__": "__sample__"}
    try:
        run_block(replace(block, code=code), namespace)
    finally:
        close_managers(namespace)


_SKIPPED = [block for page in pages() for block in blocks(page) if block.skip is not None]


if _SKIPPED:  # no test at all rather than pytest's skip for an empty parameter set

    @pytest.mark.parametrize("block", _SKIPPED, ids=lambda block: block.where)
    def test_marked_sample_is_skipped(block: Block) -> None:
        pytest.skip(f"{block.where}: {block.skip}")


def test_every_public_name_has_a_reference_entry() -> None:
    """The API reference renders each name of ``starpod_session.__all__`` from its docstring."""
    documented = {
        match[1]
        for page in (DOCS / "reference").rglob("*.md")
        for match in re.finditer(r"^::: starpod_session\.(\w+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE)
    }
    assert documented == set(starpod_session.__all__)


def test_readme_links_reach_files() -> None:
    """The README is not part of the site's strict build: its relative links are checked here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?:|#)([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert targets
    assert [target for target in targets if not (ROOT / target).exists()] == []


# The runner itself: a broken sample must fail, naming its page and line.


def test_a_broken_sample_fails_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```python\nvalue = 1\n```\n\nText.\n\n```python\nassert value == 2, 'rotted'\n```\n",
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="rotted") as failure:
        run_page(page)
    assert failure.traceback[-1].path == page
    assert failure.traceback[-1].lineno + 1 == 10  # pytest counts from 0


def test_markers_skip_and_write_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- sample: file settings.toml -->\n```toml\nx = 1\n```\n\n"
        "<!-- sample: skip (needs a server) -->\n\n```python\nraise SystemExit\n```\n\n"
        "```python\nassert open('settings.toml').read() == 'x = 1\\n'\n```\n",
        encoding="utf-8",
    )
    found = list(blocks(page))
    assert [(b.language, b.skip, b.file) for b in found] == [
        ("toml", None, "settings.toml"),
        ("python", "needs a server", None),
        ("python", None, None),
    ]
    assert run_page(page) == 1


def test_an_unknown_marker_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- sample: skipp (typo) -->\n```python\npass\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown sample marker"):
        list(blocks(page))
