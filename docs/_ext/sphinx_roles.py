"""Griffe extension for the API reference: the docstrings' Sphinx roles as Markdown.

The docstrings cross-reference with Sphinx roles (``:meth:`open_session```,
``:class:`InvalidInput```), which mkdocstrings would print as they are. Each
role becomes inline code, linked (through mkdocs-autorefs) when it names an
object the reference renders: a public name of ``starpod_session`` or one of
its public members; anything else (private helpers) stays plain code, so the
strict build never meets an unresolved reference.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

import starpod_session

_ROLE = re.compile(r":(?:class|meth|attr|func|data|exc|obj|mod):`~?(?P<target>[\w.]+)`")
_PUBLIC = set(starpod_session.__all__)


def _rendered(path: str, package: griffe.Object) -> bool:
    """Whether the reference renders ``path`` (``starpod_session.Name`` or ``starpod_session.Name.member``)."""
    parts = path.split(".")
    if parts[0] != "starpod_session" or len(parts) not in (2, 3) or parts[1] not in _PUBLIC:
        return False
    if any(part.startswith("_") for part in parts[1:]):
        return False
    try:
        package[".".join(parts[1:])]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _public_path(obj: griffe.Object | griffe.Alias) -> str | None:
    """The path the reference shows ``obj`` under: ``starpod_session.Name[.member]``."""
    chain = []
    current: Any = obj
    while current is not None and not (current.is_class and current.name in _PUBLIC):
        chain.append(current.name)
        current = current.parent if current.is_class or current.is_function or current.is_attribute else None
    if current is None:
        return None
    return ".".join(["starpod_session", current.name, *reversed(chain)])


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "starpod_session":
            self._visit(pkg, pkg, set())

    def _visit(self, obj: griffe.Object, package: griffe.Module, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(lambda m: self._link(m["target"], obj, package), obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, package, seen)  # type: ignore[arg-type]

    @staticmethod
    def _link(target: str, obj: griffe.Object, package: griffe.Module) -> str:
        name = target.rsplit(".", 1)[-1]
        candidates = [target, f"starpod_session.{target}"]
        if (owner := _public_path(obj)) is not None:
            parts = owner.split(".")
            candidates.append(".".join([*parts[:2], target]))  # a member of the same public class
        for candidate in candidates:
            if _rendered(candidate, package):
                return f"[`{name}`][{candidate}]"
        return f"`{name}`"
