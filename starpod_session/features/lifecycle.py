"""Data lifecycle: deleting sessions, forgetting a user, pruning old sessions; the erasure records they return."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs
from sqlalchemy import Connection

from .._clock import utc_now
from .._common.timestamps import coerce_instant
from .._common.validation import check_flag, check_limit, check_session_id, check_short_text
from ..errors import ExportError, InvalidInput
from ..records import Erasure
from ..storage.repositories import SessionRepository
from ..storage.repositories.lifecycle import LifecycleRepository, Removed, prunable, sessions_of_user
from ..storage.repositories.search import SearchRepository
from .base import ManagerState
from .sessions import require_session
from .transcripts import remove_transcripts

#: How many sessions :meth:`SessionManager.prune` deletes per transaction.
PRUNE_BATCH = 500


def delete_session(self: ManagerState, session_id: str, *, keep_usage: bool = True, dry_run: bool = False) -> Erasure:
    """Delete the session with its messages, compactions, search entries and exported transcript.

    Its usage rows stay for accounting, still naming the session id (they hold
    no content), unless ``keep_usage=False`` deletes them too.
    ``SessionNotFound`` for an unknown id. ``dry_run=True`` only counts what would go.
    """
    session_id = check_session_id(session_id)
    keep_usage = check_flag("keep_usage", keep_usage)
    if check_flag("dry_run", dry_run):

        def count(connection: Connection) -> Removed:
            require_session(SessionRepository(connection), session_id)
            return LifecycleRepository(connection).count_sessions([session_id], keep_usage=keep_usage)

        return _erasure(self._transactions.read(count), 0)

    def work(connection: Connection) -> Removed:
        require_session(SessionRepository(connection), session_id)
        return LifecycleRepository(connection).delete_sessions([session_id], keep_usage=keep_usage)

    removed = self._transactions.write(work)
    return _erasure(removed, _remove_transcripts(self, [session_id]))


def forget_user(self: ManagerState, user_id: str, *, dry_run: bool = False) -> Erasure:
    """Erase everything of ``user_id``, in one transaction: sessions, messages, compactions, search entries.

    The user's usage rows stay so that totals still add up, but their
    ``user_id`` becomes a pseudonym (``forgotten-`` and 32 random hex digits,
    returned in the result): random, so it cannot be traced back to the user
    id by trying candidate ids. Exported transcripts of the sessions are
    deleted after the commit. A user with no data gives all-zero counts.
    ``dry_run=True`` only counts what would go (and the usage rows that would
    take the pseudonym).
    """
    user_id = check_short_text("user_id", user_id)
    if check_flag("dry_run", dry_run):

        def count(connection: Connection) -> Erasure:
            lifecycle = LifecycleRepository(connection)
            removed = lifecycle.count_sessions(sessions_of_user(user_id), keep_usage=True)
            return attrs.evolve(_erasure(removed, 0), usage_rows=lifecycle.count_usage_of_user(user_id))

        return self._transactions.read(count)
    pseudonym = f"forgotten-{uuid.uuid4().hex}"

    def work(connection: Connection) -> tuple[list[str], Removed, int]:
        lifecycle = LifecycleRepository(connection)
        session_ids = lifecycle.session_ids_of_user(user_id)
        removed = lifecycle.delete_sessions(session_ids, keep_usage=True)
        usage_rows = lifecycle.pseudonymise_usage(user_id, pseudonym)
        if removed.messages:
            SearchRepository(connection).purge_deleted_entries()
        return session_ids, removed, usage_rows

    session_ids, removed, usage_rows = self._transactions.write(work)
    erasure = _erasure(removed, _remove_transcripts(self, session_ids))
    return attrs.evolve(erasure, usage_rows=usage_rows, pseudonym=pseudonym if usage_rows else None)


def prune(
    self: ManagerState,
    older_than: timedelta | datetime,
    *,
    dry_run: bool = False,
    keep_usage: bool = True,
    batch_size: int = PRUNE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> Erasure:
    """Delete closed sessions last active before the cut-off, as :meth:`delete_session` does.

    ``older_than`` is an age (``timedelta``, counted back from now) or an aware
    datetime. The sessions go ``batch_size`` per transaction, so pruning
    millions never holds a long lock; an interruption leaves whole sessions
    deleted or kept. ``dry_run=True`` only counts what would go. ``progress``
    is called after each batch's commit with the number of sessions deleted so far.
    """
    cutoff = _cutoff(older_than)
    dry_run = check_flag("dry_run", dry_run)
    keep_usage = check_flag("keep_usage", keep_usage)
    if check_limit("batch_size", batch_size) < 1:
        raise InvalidInput("batch_size", f"expected a positive int, got {batch_size!r}")
    if progress is not None and not callable(progress):
        raise InvalidInput("progress", f"expected a function or None, got {type(progress).__name__}")
    if dry_run:
        counted = self._transactions.read(
            lambda connection: LifecycleRepository(connection).count_sessions(prunable(cutoff), keep_usage=keep_usage)
        )
        return _erasure(counted, 0)
    total, transcripts = Removed(), 0

    def batch(connection: Connection) -> tuple[list[str], Removed]:
        lifecycle = LifecycleRepository(connection)
        session_ids = lifecycle.prunable_session_ids(cutoff, batch_size)
        return session_ids, lifecycle.delete_sessions(session_ids, keep_usage=keep_usage)

    while True:
        session_ids, removed = self._transactions.write(batch)
        total += removed
        transcripts += _remove_transcripts(self, session_ids)
        if progress is not None:
            progress(total.sessions)
        if len(session_ids) < batch_size:
            return _erasure(total, transcripts)


def _remove_transcripts(self: ManagerState, session_ids: list[str]) -> int:
    """Delete the sessions' exported transcripts (after the commit that deleted the sessions)."""
    if self.sessions_dir is None:
        return 0
    try:
        return sum(remove_transcripts(self.sessions_dir, session_id) for session_id in session_ids)
    except OSError as error:
        raise ExportError(
            f"the sessions were deleted but a transcript in {self.sessions_dir} could not be: {error.strerror or error}"
        ) from error


def _cutoff(older_than: object) -> datetime:
    """The instant before which a session counts as old."""
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidInput("older_than", f"{older_than} is negative")
        return utc_now() - older_than
    if isinstance(older_than, datetime):
        return coerce_instant(older_than, "older_than")
    raise InvalidInput("older_than", f"expected a timedelta or an aware datetime, got {type(older_than).__name__}")


def _erasure(removed: Removed, transcripts: int) -> Erasure:
    return Erasure(removed.sessions, removed.messages, removed.compactions, removed.usage_rows, transcripts)
