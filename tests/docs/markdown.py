"""The fenced code blocks of the README and of ``docs/``, with their sample markers.

``test_samples.py`` runs them (its docstring describes the markers); other tests
read a page's samples through :func:`blocks` too.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*sample:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s+\((?P<reason>[^)]+)\)$")
_FILE = re.compile(r"^file\s+(?P<name>[\w.-]+)$")
_SERVER = re.compile(r"^server\s+(?P<backend>postgresql|mariadb)$")


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
