"""SQL of full-text search: SQLite's FTS5, PostgreSQL's ``tsvector``, MariaDB's table of words.

The user's text never reaches an engine's query syntax: :func:`search_query.parse_query`
reduces it to words of letters and digits, and the engine's query (FTS5 MATCH,
``tsquery``) is assembled here from those words, each one quoted; the query string
is then a bound parameter like any other value. MariaDB searches
``session_message_words`` (migration 0010), a table of (word, message id, count)
that :class:`~.messages.MessageRepository` fills as it stores each message: its
words are bound parameters of plain comparisons. (InnoDB's own FULLTEXT index
took 60-150 ms for two words over a million messages.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic

import attrs
from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import NullType

from ..._common.search_query import SearchQuery
from ..._common.validation import MAX_COUNT
from ..._driver.runner import Runner
from ..._driver.statements import Prepared, PreparedShapes
from ...backends import Backend, backend_of
from ...backends.mariadb import WORDS_TABLE, words_table
from ...backends.postgresql import PG_INDEXED_CHARS, PG_VECTOR_COLUMN
from ...backends.sqlite import FTS_TABLE, fts5
from ..models import MessageRow, SessionRow
from ._waiting import INDEXED_UP_TO as _INDEXED_UP_TO
from ._waiting import copy_waiting, waiting_scores

__all__ = [
    "ADD_WORDS",
    "INDEX_BATCH",
    "PG_INDEXED_CHARS",
    "PG_VECTOR_COLUMN",
    "WORDS_TABLE",
    "SearchFilter",
    "SearchRepository",
    "SearchRow",
]

_messages = MessageRow.__table__
_sessions = SessionRow.__table__

#: Adds a message's words (``search_query.indexed_words``) to MariaDB's index; a
#: repeat of the same (word, message) sets the same count again.
ADD_WORDS = Prepared(
    mysql_insert(words_table)
    .values(word=bindparam("word"), message_id=bindparam("message_id"), hits=bindparam("hits"))
    .on_duplicate_key_update(hits=literal_column("VALUES(hits)"))
)

_FTS = FTS_TABLE
#: SQLite's index takes messages this many ids at a time (migration 0011): the insert
#: trigger leaves a message unindexed while its id is less than this far above the
#: largest indexed id, and the insert that reaches it indexes all of them in one
#: segment (a segment per message cost every commit about 5 pages). The ones waiting
#: are exactly those above ``max(id)`` of FTS5's ``%_docsize`` (a row per indexed
#: message); :meth:`SearchRepository.index_waiting` indexes them before a search.
INDEX_BATCH = 32
_ANY_WAITING = Prepared(text(f"SELECT EXISTS (SELECT 1 FROM session_messages WHERE id > {_INDEXED_UP_TO})"))
_INDEX_WAITING = Prepared(
    text(f"INSERT INTO {_FTS}(rowid, content) SELECT id, content FROM session_messages WHERE id > {_INDEXED_UP_TO}")
)
#: The score of a query no index answers (substrings only): every hit ranks alike, newest first.
_UNRANKED = literal_column("0.0", Float)

#: One result row: message id, session id, role, timestamp, session title, channel,
#: user id, content, score (higher is more relevant).
SearchRow = tuple[int, str, str, datetime, "str | None", str, str, str, float]


@attrs.frozen
class SearchFilter:
    """Which messages a search considers; ``None`` does not filter."""

    user_id: str | None = None
    channel: str | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    roles: tuple[str, ...] | None = None


@attrs.frozen
class _Shape:
    """What a search's SQL depends on (the values are bound parameters): one compiled statement each.

    ``ranked``: whether an index answers part of the query; ``substrings`` counts
    the parts matched without it; ``words``: on MariaDB, per indexed part, how many
    words it has, whether it is a prefix and whether the content must confirm it
    (a phrase, or a word longer than the index keeps); ``roles`` counts the roles
    filtered on (``None``: no role filter).
    """

    ranked: bool
    needs_row: bool
    substrings: int
    words: tuple[tuple[int, bool, bool], ...]
    user_id: bool
    channel: bool
    session_id: bool
    since: bool
    until: bool
    roles: int | None
    after: bool
    waiting: bool = False  # SQLite: search the reader's copy of the waiting messages (WAITING_FTS)


class SearchRepository(Generic[Runner]):
    """Ranked full-text queries over ``session_messages``."""

    def __init__(self, connection: Runner) -> None:
        self._connection = connection
        self._backend = backend_of(connection.dialect)

    def search(
        self,
        query: SearchQuery,
        filters: SearchFilter,
        limit: int,
        after: tuple[float, int] | None,
        *,
        waiting: bool = False,
    ) -> list[SearchRow]:
        """Up to ``limit`` matching messages, most relevant first, then newest (highest id) first.

        ``after`` is the (score, id) of the last row of the previous page. One
        prepared statement per shape of query (:class:`_Shape`), its words and
        filter values bound as parameters.
        """
        indexed = query.indexed
        words = self._backend.word_kinds(indexed)
        shape = _Shape(
            ranked=bool(indexed),
            needs_row=_needs_row(query, filters) or any(verify for *_, verify in words),
            substrings=len(query.substrings),
            words=words,
            user_id=filters.user_id is not None,
            channel=filters.channel is not None,
            session_id=filters.session_id is not None,
            since=filters.since is not None,
            until=filters.until is not None,
            roles=None if filters.roles is None else len(filters.roles),
            after=after is not None,
            waiting=waiting,
        )
        values: dict[str, Any] = {"limit": limit}
        if indexed:
            values.update(self._backend.match_values(indexed, words))
        for n, part in enumerate(query.substrings):
            values[f"substring_{n}"] = part.text
        for name in ("user_id", "channel", "session_id", "since", "until"):
            if getattr(filters, name) is not None:
                values[name] = getattr(filters, name)
        for n, role in enumerate(filters.roles or ()):
            values[f"role_{n}"] = role
        if after is not None:
            values["after_score"], values["after_id"] = after
        rows: list[SearchRow] = _STATEMENTS[shape].rows(self._connection, **values)
        return rows

    def search_with_waiting(
        self, query: SearchQuery, filters: SearchFilter, limit: int, after: tuple[float, int] | None
    ) -> list[SearchRow]:
        """SQLite, for a reader that may not write: :meth:`search` over the index and the waiting messages.

        The waiting messages (fewer than :data:`INDEX_BATCH` while a writer runs, or
        after one was killed) are copied into :data:`WAITING_FTS`, in this
        connection's TEMP schema (``_waiting.py``), and searched there with the same
        query, each hit scored as the index will score it; both merge by score,
        then id. A query no index answers (substrings only) reads the messages
        themselves and needs none of this.
        """
        rows = self.search(query, filters, limit, after)
        if not query.indexed or not self.any_waiting():
            return rows
        copy_waiting(self._connection)
        # Every waiting hit (fewer than a batch, unless a writer was killed), scored by us, then paged.
        hits = self.search(query, filters, MAX_COUNT, None, waiting=True)
        scores = waiting_scores(self._connection, [fts5((part,)) for part in query.indexed], (h[0] for h in hits))
        for hit in hits:
            row: SearchRow = (*hit[:8], scores[hit[0]])
            if after is None or (row[8], row[0]) < after:
                rows.append(row)
        rows.sort(key=lambda row: (row[8], row[0]), reverse=True)
        return rows[:limit]

    def any_waiting(self) -> bool:
        """SQLite: whether some stored message waits to join the index (see :data:`INDEX_BATCH`)."""
        return bool(_ANY_WAITING.scalar(self._connection))

    def index_waiting(self) -> None:
        """SQLite: index the messages waiting for their batch (:data:`INDEX_BATCH`), so a search finds them.

        In a write transaction: two racing calls index each message once (the
        second finds none waiting).
        """
        _INDEX_WAITING.rowcount(self._connection)

    def purge_deleted_entries(self: SearchRepository[Connection]) -> None:
        """Make erased words leave the index's storage, not only its answers.

        See each backend's ``purge_deleted_entries`` (SQLite's FTS5 keeps deletion
        markers until its segments merge; the servers' indexes drop deleted rows themselves).
        """
        self._backend.purge_deleted_entries(self._connection)


def _build(shape: _Shape, dialect: Dialect) -> Executable:
    """The two-step search statement of ``shape`` on ``dialect``, with named parameters."""
    # Two steps: rank the matches reading nothing but the index (and the message
    # row where a filter or a substring needs it), keep the page's (id, score), and
    # only then fetch those rows' message and session. Fetching every match's rows
    # before sorting is what made a common word slow over a million messages.
    backend = backend_of(dialect)
    matched, score, source, message_id = (
        backend.match(_messages, shape.words, shape.needs_row, waiting=shape.waiting)
        if shape.ranked
        else ([], _UNRANKED, _messages, _messages.c.id)
    )
    ranked = score is not _UNRANKED
    order = (*((score.desc(),) if ranked else ()), message_id.desc())
    top = (
        select(message_id.label("id"), score.label("score"))
        .select_from(source)
        .where(
            *matched,
            *_substrings(backend, shape),
            *_filters(shape),
            *_keyset(score if ranked else None, message_id, shape.after),
        )
        .order_by(*order)
        .limit(bindparam("limit", type_=BigInteger))
        .subquery("top")
    )
    return (
        select(
            _messages.c.id,
            _messages.c.session_id,
            _messages.c.role,
            _messages.c.timestamp,
            _sessions.c.title,
            _sessions.c.channel,
            _sessions.c.user_id,
            _messages.c.content,
            # Every driver returns the score as a float already (the facade makes sure):
            # no result processing, which PostgreSQL's numeric types would want a type code for.
            type_coerce(top.c.score, NullType()),
        )
        .select_from(
            top.join(_messages, _messages.c.id == top.c.id).join(_sessions, _sessions.c.id == _messages.c.session_id)
        )
        .order_by(*((top.c.score.desc(),) if ranked else ()), top.c.id.desc())
    )


#: The search statements by shape (bounded by the query's and the filters' limits).
_STATEMENTS = PreparedShapes(_build)


def _substrings(backend: Backend, shape: _Shape) -> list[ColumnElement[Any]]:
    """Conditions for the parts no index answers: substrings."""
    lowered = func.lower(_messages.c.content)
    return [backend.contains(lowered, bindparam(f"substring_{n}")) for n in range(shape.substrings)]


def _keyset(score: ColumnElement[Any] | None, message_id: ColumnElement[Any], after: bool) -> list[ColumnElement[Any]]:
    """Rows after the (score, id) of the previous page's last row (``after_score``, ``after_id``), descending."""
    if not after:
        return []
    last_score, last_id = bindparam("after_score", type_=Float), bindparam("after_id", type_=BigInteger)
    if score is None:
        return [message_id < last_id]
    return [or_(score < last_score, and_(score == last_score, message_id < last_id))]


def _needs_row(query: SearchQuery, filters: SearchFilter) -> bool:
    """Whether the conditions of a search read the message row, not only the full-text index."""
    return bool(query.substrings) or filters != SearchFilter()


def _filters(shape: _Shape) -> list[ColumnElement[Any]]:
    """Conditions on the message row; the session's user and channel through a subquery of session ids."""
    conditions: list[ColumnElement[Any]] = []
    of_session: list[ColumnElement[Any]] = []
    if shape.user_id:
        of_session.append(_sessions.c.user_id == bindparam("user_id"))
    if shape.channel:
        of_session.append(_sessions.c.channel == bindparam("channel"))
    if of_session:
        conditions.append(_messages.c.session_id.in_(select(_sessions.c.id).where(*of_session)))
    if shape.session_id:
        conditions.append(_messages.c.session_id == bindparam("session_id"))
    if shape.since:
        conditions.append(_messages.c.timestamp >= bindparam("since"))
    if shape.until:
        conditions.append(_messages.c.timestamp < bindparam("until"))
    if shape.roles is not None:
        conditions.append(_messages.c.role.in_([bindparam(f"role_{n}") for n in range(shape.roles)]))
    return conditions
