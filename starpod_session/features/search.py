"""Search: the query and its filters, the search cursors, and SQLite's index of the messages waiting for it."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from datetime import datetime

from .._common.search_query import highlighter, parse_query
from .._common.timestamps import coerce_instant
from .._common.validation import MAX_COUNT, check_limit, check_session_id, check_short_text
from .._driver.runner import StatementRunner
from ..channels import Channel
from ..errors import InvalidInput
from ..records import SearchHit
from ..storage.repositories.search import SearchFilter, SearchRepository, SearchRow
from .base import ManagerState


def search_messages(
    self: ManagerState,
    query: str,
    *,
    limit: int = 20,
    user_id: str | None = None,
    channel: Channel | str | None = None,
    session_id: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    roles: Iterable[str] | None = None,
    cursor: str | None = None,
) -> list[SearchHit]:
    """Messages matching ``query``, most relevant first (ties: newest first), at most ``limit``.

    ``query`` holds words (all must occur, case-insensitive), prefixes
    (``deploy*``) and quoted phrases (``"roll back"``); anything else is a
    separator, so a query of operators or punctuation only is ``InvalidInput``.
    The filters keep one user's, channel's or session's messages, messages with
    ``since <= timestamp < until``, or of the given roles. For the next page,
    pass the last hit's ``cursor``. See the search guide (docs/guides/search.md) for what each backend's index
    does with accents, short words and scripts written without spaces.
    """
    parsed = parse_query(query)
    limit = check_limit("limit", limit)
    filters = SearchFilter(
        user_id=None if user_id is None else check_short_text("user_id", user_id),
        channel=None if channel is None else self._channels.channel_name(channel),
        session_id=None if session_id is None else check_session_id(session_id),
        since=None if since is None else coerce_instant(since, "since"),
        until=None if until is None else coerce_instant(until, "until"),
        roles=None if roles is None else _check_roles(roles),
    )
    after = None if cursor is None else decode_cursor(cursor)
    waiting = self._indexes_waiting
    search = SearchRepository.search_with_waiting if self._searches_waiting else SearchRepository.search

    def work(connection: StatementRunner) -> list[SearchRow] | None:
        repository = SearchRepository(connection)
        if waiting and repository.any_waiting():
            return None  # messages saved before this call must be found: index them first
        return search(repository, parsed, filters, limit, after)

    # One statement (and on SQLite one look-up before it): prepared work, without a
    # snapshot's extra round trip on servers. May lag: on a read replica when there is one.
    rows = self._lagging_reads.read_prepared(work)
    if rows is None:
        self._transactions.write_prepared(lambda connection: SearchRepository(connection).index_waiting())
        waiting = False  # messages saved since this call began may wait: they need not be found
        rows = self._transactions.read_prepared(work)
    assert rows is not None
    snippet = highlighter(parsed)
    return [
        SearchHit(
            message_id,
            session,
            role,
            timestamp,
            title,
            channel_name,
            user,
            snippet(content),
            float(score),
            encode_cursor(float(score), message_id),
        )
        for message_id, session, role, timestamp, title, channel_name, user, content, score in rows
    ]


def index_waiting_messages(self: ManagerState) -> None:
    """SQLite: index the messages waiting for the search index's next batch (a write only if any wait)."""
    if self._transactions.read_prepared(lambda connection: SearchRepository(connection).any_waiting()):
        self._transactions.write_prepared(lambda connection: SearchRepository(connection).index_waiting())


def _check_roles(roles: object) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise InvalidInput("roles", f"expected an iterable of role names, got {type(roles).__name__}")
    checked = tuple(check_short_text("roles", role) for role in roles)
    if not checked:
        raise InvalidInput("roles", "must name at least one role (None keeps every role)")
    return checked


def encode_cursor(score: float, message_id: int) -> str:
    """The opaque cursor of a search hit: where the next page starts."""
    # What json.dumps([score, message_id]) writes for a finite score, without its overhead.
    text = f"[{score!r}, {message_id}]" if math.isfinite(score) else json.dumps([score, message_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[float, int]:
    """(score, message id) from :func:`encode_cursor`; ``InvalidInput`` for anything else."""
    if not isinstance(cursor, str) or len(cursor) > 200:
        raise InvalidInput("cursor", "not a cursor from search_messages")
    try:
        score, message_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise InvalidInput("cursor", "not a cursor from search_messages") from None
    if type(message_id) is not int or isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InvalidInput("cursor", "not a cursor from search_messages")
    if not math.isfinite(score) or not 0 <= message_id <= MAX_COUNT:
        raise InvalidInput("cursor", "not a cursor from search_messages")
    return float(score), message_id
