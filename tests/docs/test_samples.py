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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import starpod_session
from starpod_session import SessionManager

from ..backends import not_configured_hint
from ..conftest import running_backends
from .markdown import DOCS, ROOT, Block, blocks, is_python, page_name, pages

#: The URLs a server sample may name, per backend (replaced by the run's own database).
_SAMPLE_URLS = {
    "postgresql": re.compile(r"postgresql(\+psycopg)?://[^\s\"']+"),
    "mariadb": re.compile(r"(mysql|mariadb)(\+pymysql)?://[^\s\"']+"),
}


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
