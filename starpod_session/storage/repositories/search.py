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
    cast,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
    type_coerce,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import NullType

from ..._common.search_query import MAX_INDEXED_WORD, QueryPart, SearchQuery
from ..._common.validation import MAX_COUNT
from ..._driver.runner import Runner
from ..._driver.statements import Prepared, PreparedShapes
from ..models import MessageRow, SessionRow
from ._waiting import INDEXED_UP_TO as _INDEXED_UP_TO
from ._waiting import WAITING_FTS, copy_waiting, waiting_scores

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

#: PostgreSQL indexes the first this many characters of a message (a tsvector
#: holds at most 1 MiB); migration 0008 carries a frozen copy in its index.
PG_INDEXED_CHARS = 100_000
#: PostgreSQL's generated column holding each message's ``tsvector`` (migration 0008).
PG_VECTOR_COLUMN = "content_tsv"
#: MariaDB's index (migration 0010): one row per (word, message), ``hits`` how often the
#: word occurs in the message; primary key (word, message_id). Outside the models: the
#: other backends have no such table.
WORDS_TABLE = "session_message_words"
_words = table(WORDS_TABLE, column("word"), column("message_id"), column("hits"))
#: Adds a message's words (``search_query.indexed_words``) to MariaDB's index; a
#: repeat of the same (word, message) sets the same count again.
ADD_WORDS = Prepared(
    mysql_insert(_words)
    .values(word=bindparam("word"), message_id=bindparam("message_id"), hits=bindparam("hits"))
    .on_duplicate_key_update(hits=literal_column("VALUES(hits)"))
)

_FTS = "session_messages_fts"
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
#: The FTS5 tables by whether they hold the waiting messages (see :data:`WAITING_FTS`).
_FTS_TABLES = {False: table(_FTS, column("rowid")), True: table(WAITING_FTS, column("rowid"))}
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
        name = connection.dialect.name
        self._dialect = "mariadb" if name in ("mysql", "mariadb") else name

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
        words = tuple(map(_word_part, indexed)) if self._dialect == "mariadb" else ()
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
        if self._dialect == "mariadb":
            values.update(_word_values(indexed, words))
        elif indexed:
            values["fts_query"] = _ENGINE_QUERY[self._dialect](indexed)
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
        scores = waiting_scores(self._connection, [_fts5((part,)) for part in query.indexed], (h[0] for h in hits))
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

        FTS5 records a deletion as a marker beside the old entry until segments
        merge; ``optimize`` merges them all now, so the shadow tables no longer
        hold the deleted messages' words. (Costly on a large index: erasure only.)
        The servers' indexes drop deleted rows themselves.
        """
        if self._dialect == "sqlite":
            self._connection.execute(text(f"INSERT INTO {_FTS}({_FTS}) VALUES ('optimize')"))


def _build(shape: _Shape, dialect: Dialect) -> Executable:
    """The two-step search statement of ``shape`` on ``dialect``, with named parameters."""
    # Two steps: rank the matches reading nothing but the index (and the message
    # row where a filter or a substring needs it), keep the page's (id, score), and
    # only then fetch those rows' message and session. Fetching every match's rows
    # before sorting is what made a common word slow over a million messages.
    name = "mariadb" if dialect.name in ("mysql", "mariadb") else dialect.name
    matched, score, source, message_id = _match(name, shape)
    ranked = score is not _UNRANKED
    order = (*((score.desc(),) if ranked else ()), message_id.desc())
    top = (
        select(message_id.label("id"), score.label("score"))
        .select_from(source)
        .where(
            *matched,
            *_substrings(name, shape),
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


# -- each engine's index ---------------------------------------------------------------


def _match(
    dialect: str, shape: _Shape
) -> tuple[list[ColumnElement[Any]], ColumnElement[Any], FromClause, ColumnElement[Any]]:
    """(conditions, score, FROM clause, message id) of the indexed parts, their query bound as ``fts_query``.

    ``shape.needs_row``: whether other conditions read the message row (SQLite then
    joins it to its FTS5 table; the servers' indexes are on the row's table itself).
    """
    if not shape.ranked:
        return [], _UNRANKED, _messages, _messages.c.id
    fts_query: BindParameter[str] = bindparam("fts_query")
    if dialect == "sqlite":
        fts = _FTS_TABLES[shape.waiting]
        # bm25() is lower for better matches; negated so every backend ranks high first.
        score: ColumnElement[Any] = -literal_column(f"bm25({fts.name})", Float)
        source = fts.join(_messages, _messages.c.id == fts.c.rowid) if shape.needs_row else fts
        condition = text(f"{fts.name} MATCH :fts_query")
        # A WHERE condition of raw SQL: SQLAlchemy accepts it, its stubs want a ColumnElement.
        return [condition], score, source, fts.c.rowid  # type: ignore[list-item]
    if dialect == "postgresql":
        # The stored tsvector: ranking reads it instead of parsing each match's content
        # again. The tsquery is a FROM item, built once even where a prepared
        # statement's generic plan would otherwise build it for every row.
        parsed = (
            func.to_tsquery(literal_column("'simple'::regconfig"), fts_query)
            .table_valued("tsquery")
            .render_derived(name="q")
        )
        tsquery = parsed.c.tsquery
        score = cast(func.ts_rank(_PG_VECTOR, tsquery), Float)
        return [_PG_VECTOR.op("@@")(tsquery)], score, _messages.join(parsed, true()), _messages.c.id
    return _match_words(shape)


def _match_words(
    shape: _Shape,
) -> tuple[list[ColumnElement[Any]], ColumnElement[Any], FromClause, ColumnElement[Any]]:
    """MariaDB: the indexed parts through ``session_message_words`` (migration 0010).

    Each word is a range of the table's primary key (a prefix: a range grouped per
    message), joined on the message id, so the engine starts from the rarest word
    and looks the others up by key; a phrase joins each of its words and its
    content must match the phrase's pattern. Every hit holds every word, so the
    score ranks by how often it holds them: the sum of BM25's saturated counts
    ``hits * (k1 + 1) / (hits + k1)``, k1 = 1.2 (no weighting by rarity, which would
    cost a count of each word's messages per query, and no length normalisation).
    """
    sources: list[FromClause] = []
    conditions: list[ColumnElement[Any]] = []
    terms: list[ColumnElement[Any]] = []
    for i, (count, prefix, verify) in enumerate(shape.words):
        for j in range(count):
            word: BindParameter[str] = bindparam(f"word_{i}_{j}")
            if prefix:
                source: FromClause = (
                    select(_words.c.message_id, func.sum(_words.c.hits).label("hits"))
                    .where(_words.c.word.like(word))
                    .group_by(_words.c.message_id)
                    .subquery(f"w{i}_{j}")
                )
            else:
                source = _words.alias(f"w{i}_{j}")
                conditions.append(source.c.word == word)
            hits = source.c.hits
            # Doubles (2.2e0): a decimal literal would make MariaDB compute in DECIMAL.
            terms.append(hits * literal_column("2.2e0") / (hits + literal_column("1.2e0")))
            sources.append(source)
        if verify:
            conditions.append(_messages.c.content.regexp_match(bindparam(f"verify_{i}")))
    first = sources[0]
    joined: FromClause = first
    for source in sources[1:]:
        joined = joined.join(source, source.c.message_id == first.c.message_id)
    if shape.needs_row:
        joined = joined.join(_messages, _messages.c.id == first.c.message_id)
    score = terms[0]
    for term in terms[1:]:
        score = score + term
    # MariaDB sends doubles as text with 15 digits, which need not read back as the
    # same double; rounded to 9 decimals, the score a cursor carries compares equal.
    return conditions, func.round(cast(score, Float), 9), joined, first.c.message_id


def _word_part(part: QueryPart) -> tuple[int, bool, bool]:
    """(words, prefix, verify) of an indexed part on MariaDB (see :class:`_Shape`)."""
    # A word of MAX_INDEXED_WORD characters or more is only known by its start in the index.
    too_long = any(len(word) >= MAX_INDEXED_WORD for word in part.words)
    return len(part.words), part.prefix and not too_long, len(part.words) > 1 or too_long


def _word_values(parts: tuple[QueryPart, ...], kinds: tuple[tuple[int, bool, bool], ...]) -> dict[str, str]:
    """The bound values of :func:`_match_words` (``kinds``: the parts' :func:`_word_part`): each word as the
    index keeps it, a prefix as a LIKE pattern."""
    values: dict[str, str] = {}
    for i, (part, (_count, prefix, verify)) in enumerate(zip(parts, kinds, strict=True)):
        for j, word in enumerate(part.words):
            # Words are letters and digits only: no LIKE wildcard or escape in them.
            values[f"word_{i}_{j}"] = word[:MAX_INDEXED_WORD] + ("%" if prefix else "")
        if verify:
            values[f"verify_{i}"] = _word_pattern(part)
    return values


def _substrings(dialect: str, shape: _Shape) -> list[ColumnElement[Any]]:
    """Conditions for the parts no index answers: substrings."""
    conditions: list[ColumnElement[Any]] = []
    for n in range(shape.substrings):
        part: BindParameter[str] = bindparam(f"substring_{n}")
        if dialect == "sqlite":
            conditions.append(func.instr(func.lower(_messages.c.content), part) > 0)
        elif dialect == "postgresql":
            conditions.append(func.strpos(func.lower(_messages.c.content), part) > 0)
        else:
            conditions.append(func.locate(part, func.lower(_messages.c.content)) > 0)
    return conditions


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


#: Each engine's query syntax, built from the indexed parts (MariaDB's index is a table: no syntax).
_ENGINE_QUERY = {"sqlite": _fts5, "postgresql": _tsquery}


def _word_pattern(part: QueryPart) -> str:
    """A case-insensitive PCRE matching a part's words in a row (a phrase, or a word the index keeps cut)."""
    body = r"[^[:alnum:]]+".join(part.words)
    end = "" if part.prefix else "(?![[:alnum:]])"
    return f"(?i)(?<![[:alnum:]]){body}{end}"
