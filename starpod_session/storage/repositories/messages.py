"""SQL of the ``session_messages`` aggregate."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime
from typing import Generic

from sqlalchemy import BigInteger, bindparam, delete, func, select

from ..._common.search_query import indexed_words
from ..._driver.runner import Runner
from ..._driver.statements import Prepared
from ...backends import backend_of, insert_unless_duplicate
from ...records import SessionMessage
from ..models import MessageRow
from .search import ADD_WORDS

__all__ = ["MessageRepository"]

_t = MessageRow.__table__
_COLUMNS = (_t.c.id, _t.c.session_id, _t.c.role, _t.c.content, _t.c.timestamp)
_APPEND = Prepared(
    insert_unless_duplicate(
        _t,
        {
            "session_id": bindparam("session_id"),
            "role": bindparam("role"),
            "content": bindparam("content"),
            "timestamp": bindparam("now"),
            "message_key": bindparam("key"),
        },
        unique=(_t.c.session_id, _t.c.message_key),
        id_column=_t.c.id,
    ),
    id_column=_t.c.id,
)
#: Messages per page of :meth:`MessageRepository.pages`.
PAGE = 1000
_AFTER = Prepared(
    select(*_COLUMNS)
    .where(_t.c.session_id == bindparam("session_id"), _t.c.id > bindparam("after_id"))
    .order_by(_t.c.id)
    .limit(bindparam("limit", type_=BigInteger)),
    stream=True,
)
_COUNT = Prepared(select(func.count()).select_from(_t).where(_t.c.session_id == bindparam("session_id")))
_BY_KEY = Prepared(
    select(_t.c.id).where(_t.c.session_id == bindparam("session_id"), _t.c.message_key == bindparam("key"))
)
_DELETE_ONE = Prepared(delete(_t).where(_t.c.id == bindparam("message_id", type_=BigInteger)))
_DELETE_ALL = Prepared(delete(_t).where(_t.c.session_id == bindparam("session_id")))


class MessageRepository(Generic[Runner]):
    """Appends to and reads session transcripts."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection

    def append(self, session_id: str, role: str, content: str, now: datetime, key: str) -> int:
        """Store one message under its idempotency ``key``; returns its id (ids ascend in insertion order).

        When the session already has a message under ``key`` (stored by an earlier
        or a racing call) nothing is stored and that message's id is returned.
        On MariaDB the message's words go into the search index in the same
        transaction (``repositories.search``, migration 0010); the other engines
        index a message themselves.
        """
        message_id = _APPEND.insert_or_none(
            self._connection, session_id=session_id, role=role, content=content, now=now, key=key
        )
        if message_id is None:
            message_id = self.find_by_key(session_id, key)
            assert message_id is not None, "an insert skipped as a duplicate has a stored row to read"
        elif backend_of(self._connection.dialect).indexes_words:
            words = [
                {"word": word, "message_id": message_id, "hits": hits} for word, hits in indexed_words(content).items()
            ]
            if words:
                ADD_WORDS.execute_many(self._connection, words)
        return message_id

    def find_by_key(self, session_id: str, key: str) -> int | None:
        """The id of the session's message stored under idempotency ``key``, or ``None``."""
        row = _BY_KEY.first(self._connection, session_id=session_id, key=key)
        return None if row is None else row[0]

    def list_for_session(
        self, session_id: str, limit: int | None = None, before_id: int | None = None
    ) -> list[SessionMessage]:
        """The session's messages with ``id < before_id`` (all if None), oldest first.

        With ``limit``, only the newest ``limit`` of them, still returned oldest
        first: a page of a long transcript, read backwards through the
        ``(session_id, id)`` index.
        """
        messages = _page(limit is not None, before_id is not None).records(
            self._connection, SessionMessage, session_id=session_id, limit=limit, before_id=before_id
        )
        if limit is not None:
            messages.reverse()
        return messages

    def contents_for_session(self, session_id: str, limit: int | None = None) -> list[tuple[str, str]]:
        """The ``(role, content)`` of the session's messages, oldest first (the newest ``limit`` with one).

        :meth:`list_for_session` without the id, the session id and the timestamp,
        whose processing costs a long transcript's read as much as the rows themselves.
        """
        rows: list[tuple[str, str]] = _contents(limit is not None).rows(
            self._connection, session_id=session_id, limit=limit
        )
        if limit is not None:
            rows.reverse()
        return rows

    def delete_newest(self, session_id: str) -> SessionMessage | None:
        """Delete the session's newest message and return it (``None``, deleting nothing, for none).

        Its ``tool_calls`` row and search entries go with it (``ON DELETE CASCADE``,
        the engines' indexes); run it in a write transaction, whose lock on SQLite
        and row lock on servers keep two callers from taking the same message.
        """
        while True:
            newest = _page(True, False).records(self._connection, SessionMessage, session_id=session_id, limit=1)
            if not newest:
                return None
            # At READ COMMITTED a racing caller may have deleted it since the SELECT (our
            # DELETE waited for its commit, then matched nothing): take the next newest.
            if _DELETE_ONE.rowcount(self._connection, message_id=newest[0].id):
                return newest[0]

    def delete_for_session(self, session_id: str) -> int:
        """Delete every message of the session (their tool rows and search entries follow); returns how many."""
        return _DELETE_ALL.rowcount(self._connection, session_id=session_id)

    def count_for_session(self, session_id: str) -> int:
        """How many messages the session has."""
        count: int = _COUNT.scalar(self._connection, session_id=session_id)
        return count

    def pages(self, session_id: str) -> Iterator[list[SessionMessage]]:
        """The session's messages oldest first, :data:`PAGE` at a time (keyset pages on ``(session_id, id)``).

        Each page is a statement of its own in the caller's transaction: run it in a
        snapshot read, so that the pages add up to one state of the transcript.
        """
        after_id = 0
        while True:
            page = _AFTER.records(
                self._connection, SessionMessage, session_id=session_id, after_id=after_id, limit=PAGE
            )
            if page:
                yield page
            if len(page) < PAGE:
                return
            after_id = page[-1].id


@functools.cache
def _contents(limited: bool) -> Prepared:
    """The roles and contents of a transcript: all of it (oldest first), or its newest ``limit`` (newest first)."""
    query = select(_t.c.role, _t.c.content).where(_t.c.session_id == bindparam("session_id"))
    if not limited:
        return Prepared(query.order_by(_t.c.id), stream=True)
    return Prepared(query.order_by(_t.c.id.desc()).limit(bindparam("limit", type_=BigInteger)), stream=True)


@functools.cache
def _page(limited: bool, before: bool) -> Prepared:
    """The transcript statement: all of it (oldest first), or a page read newest first."""
    query = select(*_COLUMNS).where(_t.c.session_id == bindparam("session_id"))
    if before:
        query = query.where(_t.c.id < bindparam("before_id", type_=BigInteger))
    if not limited:
        return Prepared(query.order_by(_t.c.id), stream=True)
    return Prepared(query.order_by(_t.c.id.desc()).limit(bindparam("limit", type_=BigInteger)), stream=True)
