"""SQL of full-text search: each engine's own index, queried in its own syntax built from parsed words.

The user's text never reaches an engine's query syntax: :func:`search_query.parse_query`
reduces it to words of letters and digits, and the engine's query (FTS5 MATCH,
``tsquery``, InnoDB boolean mode) is assembled here from those words, each one
quoted. The query string is then a bound parameter like any other value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Connection, Float, and_, cast, column, func, literal_column, or_, select, table, text, true
from sqlalchemy.dialects.mysql import match as mysql_match
from sqlalchemy.sql import ColumnElement, FromClause

from ..models import MessageRow, SessionRow
from ..search_query import QueryPart, SearchQuery

__all__ = ["SearchRepository", "SearchFilter", "SearchRow", "PG_INDEXED_CHARS", "PG_VECTOR_COLUMN", "MARIADB_MIN_TOKEN"]

_messages = MessageRow.__table__
_sessions = SessionRow.__table__

#: PostgreSQL indexes the first this many characters of a message (a tsvector
#: holds at most 1 MiB); migration 0008 carries a frozen copy in its index.
PG_INDEXED_CHARS = 100_000
#: PostgreSQL's generated column holding each message's ``tsvector`` (migration 0008).
PG_VECTOR_COLUMN = "content_tsv"
#: MariaDB's default ``innodb_ft_min_token_size``: shorter words are not in its index.
MARIADB_MIN_TOKEN = 3

_FTS = "session_messages_fts"
#: The score of a query no index answers (substrings only): every hit ranks alike, newest first.
_UNRANKED = literal_column("0.0", Float)
_fts = table(_FTS, column("rowid"))
#: PostgreSQL's stored ``tsvector`` of a message (migration 0008), outside the models:
#: the other backends have no such column.
_PG_VECTOR: ColumnElement[Any] = literal_column(f"{_messages.name}.{PG_VECTOR_COLUMN}")

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


class SearchRepository:
    """Ranked full-text queries over ``session_messages``."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        name = connection.dialect.name
        self._dialect = "mariadb" if name in ("mysql", "mariadb") else name

    def search(
        self, query: SearchQuery, filters: SearchFilter, limit: int, after: tuple[float, int] | None
    ) -> list[SearchRow]:
        """Up to ``limit`` matching messages, most relevant first, then newest (highest id) first.

        ``after`` is the (score, id) of the last row of the previous page.
        """
        # Two steps: rank the matches reading nothing but the index (and the message
        # row where a filter or a substring needs it), keep the page's (id, score), and
        # only then fetch those rows' message and session. Fetching every match's rows
        # before sorting is what made a common word slow over a million messages.
        matched, score, source, message_id = self._match(query, needs_row=_needs_row(query, filters))
        ranked = score is not _UNRANKED
        order = (*((score.desc(),) if ranked else ()), message_id.desc())
        top = (
            select(message_id.label("id"), score.label("score"))
            .select_from(source)
            .where(
                *matched, *self._substrings(query), *_filters(filters),
                *_keyset(score if ranked else None, message_id, after),
            )  # fmt: skip
            .order_by(*order)
            .limit(limit)
            .subquery("top")
        )
        statement = (
            select(
                _messages.c.id, _messages.c.session_id, _messages.c.role, _messages.c.timestamp,
                _sessions.c.title, _sessions.c.channel, _sessions.c.user_id, _messages.c.content, top.c.score,
            )  # fmt: skip
            .select_from(top.join(_messages, _messages.c.id == top.c.id).join(_sessions, _sessions.c.id == _messages.c.session_id))
            .order_by(*((top.c.score.desc(),) if ranked else ()), top.c.id.desc())
        )
        return [tuple(row) for row in self._connection.execute(statement)]

    def purge_deleted_entries(self) -> None:
        """Make erased words leave the index's storage, not only its answers.

        FTS5 records a deletion as a marker beside the old entry until segments
        merge; ``optimize`` merges them all now, so the shadow tables no longer
        hold the deleted messages' words. (Costly on a large index: erasure only.)
        The servers' indexes drop deleted rows themselves.
        """
        if self._dialect == "sqlite":
            self._connection.execute(text(f"INSERT INTO {_FTS}({_FTS}) VALUES ('optimize')"))

    # -- each engine's index ---------------------------------------------------------------

    def _match(
        self, query: SearchQuery, *, needs_row: bool
    ) -> tuple[list[ColumnElement[Any]], ColumnElement[Any], FromClause, ColumnElement[Any]]:
        """(conditions, score, FROM clause, message id) of the indexed parts of ``query``.

        ``needs_row``: whether other conditions read the message row (SQLite then joins
        it to its FTS5 table; the servers' indexes are on the row's table itself).
        """
        indexed = query.indexed
        if self._dialect == "mariadb":
            indexed = tuple(part for part in indexed if _in_mariadb_index(part))
        if not indexed:
            return [], _UNRANKED, _messages, _messages.c.id
        if self._dialect == "sqlite":
            # bm25() is lower for better matches; negated so every backend ranks high first.
            score: ColumnElement[Any] = -literal_column(f"bm25({_FTS})", Float)
            source = _fts.join(_messages, _messages.c.id == _fts.c.rowid) if needs_row else _fts
            condition = text(f"{_FTS} MATCH :fts_query").bindparams(fts_query=_fts5(indexed))
            # A WHERE condition of raw SQL: SQLAlchemy accepts it, its stubs want a ColumnElement.
            return [condition], score, source, _fts.c.rowid  # type: ignore[list-item]
        if self._dialect == "postgresql":
            # The stored tsvector: ranking reads it instead of parsing each match's content
            # again. The tsquery is a FROM item, built once even where a prepared
            # statement's generic plan would otherwise build it for every row.
            parsed = (
                func.to_tsquery(literal_column("'simple'::regconfig"), _tsquery(indexed))
                .table_valued("tsquery")
                .render_derived(name="q")
            )
            tsquery = parsed.c.tsquery
            score = cast(func.ts_rank(_PG_VECTOR, tsquery), Float)
            return [_PG_VECTOR.op("@@")(tsquery)], score, _messages.join(parsed, true()), _messages.c.id
        matched = mysql_match(_messages.c.content, against=_boolean_mode(indexed)).in_boolean_mode()
        # MariaDB sends doubles as text with 15 digits, which need not read back as the
        # same double; rounded to 9 decimals, the score a cursor carries compares equal.
        return [matched], func.round(cast(matched, Float), 9), _messages, _messages.c.id

    def _substrings(self, query: SearchQuery) -> list[ColumnElement[Any]]:
        """Conditions for the parts no index answers: substrings, and MariaDB's short words."""
        conditions: list[ColumnElement[Any]] = []
        for part in query.substrings:
            if self._dialect == "sqlite":
                conditions.append(func.instr(func.lower(_messages.c.content), part.text) > 0)
            elif self._dialect == "postgresql":
                conditions.append(func.strpos(func.lower(_messages.c.content), part.text) > 0)
            else:
                conditions.append(func.locate(part.text, func.lower(_messages.c.content)) > 0)
        if self._dialect == "mariadb":
            conditions += [
                _messages.c.content.regexp_match(_word_pattern(part))
                for part in query.indexed
                if not _in_mariadb_index(part)
            ]
        return conditions


def _keyset(
    score: ColumnElement[Any] | None, message_id: ColumnElement[Any], after: tuple[float, int] | None
) -> list[ColumnElement[Any]]:
    """Rows after the (score, id) of the previous page's last row, in (score, id) descending order."""
    if after is None:
        return []
    last_score, last_id = after
    if score is None:
        return [message_id < last_id]
    return [or_(score < last_score, and_(score == last_score, message_id < last_id))]


def _needs_row(query: SearchQuery, filters: SearchFilter) -> bool:
    """Whether the conditions of a search read the message row, not only the full-text index."""
    return bool(query.substrings) or filters != SearchFilter()


def _filters(filters: SearchFilter) -> list[ColumnElement[Any]]:
    """Conditions on the message row; the session's user and channel through a subquery of session ids."""
    conditions: list[ColumnElement[Any]] = []
    of_session: list[ColumnElement[Any]] = []
    if filters.user_id is not None:
        of_session.append(_sessions.c.user_id == filters.user_id)
    if filters.channel is not None:
        of_session.append(_sessions.c.channel == filters.channel)
    if of_session:
        conditions.append(_messages.c.session_id.in_(select(_sessions.c.id).where(*of_session)))
    if filters.session_id is not None:
        conditions.append(_messages.c.session_id == filters.session_id)
    if filters.since is not None:
        conditions.append(_messages.c.timestamp >= filters.since)
    if filters.until is not None:
        conditions.append(_messages.c.timestamp < filters.until)
    if filters.roles is not None:
        conditions.append(_messages.c.role.in_(filters.roles))
    return conditions


# The words are letters and digits only (``parse_query``), so none can hold a quote;
# quoting each one still keeps any word from being read as an operator (NEAR, AND, OR).


def _fts5(parts: tuple[QueryPart, ...]) -> str:
    """FTS5: ``"word" AND "pre"* AND "two words"``."""
    return " AND ".join(f'"{part.text}"' + ("*" if part.prefix else "") for part in parts)


def _tsquery(parts: tuple[QueryPart, ...]) -> str:
    """PostgreSQL: ``'word' & 'pre':* & ('two' <-> 'words')``."""

    def quoted(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    terms = []
    for part in parts:
        if len(part.words) > 1:
            terms.append("(" + " <-> ".join(map(quoted, part.words)) + ")")
        else:
            terms.append(quoted(part.words[0]) + (":*" if part.prefix else ""))
    return " & ".join(terms)


def _boolean_mode(parts: tuple[QueryPart, ...]) -> str:
    """InnoDB boolean mode: ``+word +pre* +"two words"``."""
    return " ".join(
        f'+"{part.text}"' if len(part.words) > 1 else f"+{part.text}" + ("*" if part.prefix else "")
        for part in parts
    )


def _in_mariadb_index(part: QueryPart) -> bool:
    """Whether InnoDB's index can answer the part: a phrase needs one indexed word, a word must be indexed."""
    return any(len(word) >= MARIADB_MIN_TOKEN for word in part.words)


def _word_pattern(part: QueryPart) -> str:
    """A case-insensitive PCRE for a part made of words too short for InnoDB's index."""
    body = r"[^[:alnum:]]+".join(part.words)
    end = "" if part.prefix else "(?![[:alnum:]])"
    return f"(?i)(?<![[:alnum:]]){body}{end}"
