"""Outcomes of resolving a key: ``Continue(id)`` / ``New(closed_session_id)``, and :class:`OpenedSession`."""

from __future__ import annotations

import attrs

__all__ = ["SessionDecision", "Continue", "New", "OpenedSession"]


@attrs.frozen
class SessionDecision:
    """Base of the two decisions; match on :class:`Continue` and :class:`New`.

    ``SessionDecision.Continue`` and ``SessionDecision.New`` name the same classes,
    for code that reads like the Rust crate's ``SessionDecision::Continue``.
    """


@attrs.frozen
class Continue(SessionDecision):
    """Keep using the open session ``session_id``."""

    session_id: str


@attrs.frozen
class New(SessionDecision):
    """Start a new session; ``closed_session_id`` is the stale session this call auto-closed, if any."""

    closed_session_id: str | None = None


@attrs.frozen
class OpenedSession:
    """The outcome of :meth:`SessionManager.open_session`.

    ``session_id`` is the key's open session; ``created`` says whether this call
    created it; ``closed_session_id`` is the stale session this call auto-closed
    (reported to exactly one caller), if any.
    """

    session_id: str
    closed_session_id: str | None
    created: bool


SessionDecision.Continue = Continue  # type: ignore[attr-defined]
SessionDecision.New = New  # type: ignore[attr-defined]
