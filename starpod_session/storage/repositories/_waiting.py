"""SQLite: what a reader that may not write does with the messages waiting for the search index's batch.

A writer indexes them before it searches (``SearchRepository.index_waiting``). A
reader that may not write the file copies them into an FTS5 table of its own
connection's TEMP schema (which it may write), :data:`WAITING_FTS`, and
searches it beside the index. FTS5's ``bm25()`` over that copy would weigh
words by the copy alone (a few dozen messages), so each waiting hit is scored
here instead, by FTS5's own BM25 formula weighing words as the index does now
(its row and token counts, how many of its rows hold each phrase): the score
``bm25()`` gives the indexed hits of the same search.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from sqlalchemy import text

from ..._driver.runner import StatementRunner
from ..._driver.statements import Prepared
from ...backends.sqlite import FTS_TABLE, WAITING_FTS

__all__ = ["FTS_TOKENIZER", "INDEXED_UP_TO", "WAITING_FTS", "copy_waiting", "waiting_scores"]

#: Migration 0008's tokenizer, so the copy matches the same words as the index.
FTS_TOKENIZER = "unicode61 remove_diacritics 0"
#: FTS5's BM25 constants (fts5_aux.c).
_K1 = 1.2
_B = 0.75
#: FTS5 keeps its totals (rows, then tokens per column) in the ``%_data`` row of this id.
_AVERAGES_ROWID = 1
#: Marks FTS5's ``highlight()`` puts around each match, counted to know how often a phrase occurs.
_OPEN = "\x01"

#: The largest indexed message id: the messages above it wait for their batch.
INDEXED_UP_TO = f"(SELECT coalesce(max(id), 0) FROM {FTS_TABLE}_docsize)"
_COPY = (
    Prepared(
        text(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{WAITING_FTS} USING fts5(content, tokenize='{FTS_TOKENIZER}')")
    ),
    Prepared(text(f"DELETE FROM temp.{WAITING_FTS}")),
    Prepared(
        text(
            f"INSERT INTO temp.{WAITING_FTS}(rowid, content) "
            f"SELECT id, content FROM session_messages WHERE id > {INDEXED_UP_TO}"
        )
    ),
)
_TOTALS = {
    table: Prepared(text(f"SELECT block FROM {table}_data WHERE id = {_AVERAGES_ROWID}"))
    for table in (FTS_TABLE, WAITING_FTS)
}
_HITS = {
    table: Prepared(text(f"SELECT count(*) FROM {table} WHERE {table} MATCH :phrase"))
    for table in (FTS_TABLE, WAITING_FTS)
}
_SIZES = Prepared(text(f"SELECT id, sz FROM {WAITING_FTS}_docsize"))
_OCCURRENCES = Prepared(
    text(
        f"SELECT rowid, highlight({WAITING_FTS}, 0, char(1), char(2)), content FROM {WAITING_FTS} "
        f"WHERE {WAITING_FTS} MATCH :phrase"
    )
)


def copy_waiting(connection: StatementRunner) -> None:
    """Copy the messages waiting for the index into :data:`WAITING_FTS` (created on first use)."""
    for statement in _COPY:
        statement.rowcount(connection)


def waiting_scores(connection: StatementRunner, phrases: Sequence[str], message_ids: Iterable[int]) -> dict[int, float]:
    """The BM25 score (higher is better) of each copied message, per FTS5 query phrase of the search.

    As FTS5's ``bm25()`` computes it (fts5_aux.c), with the row count, token
    count and each phrase's number of matching rows of the index (of the copy
    while the index holds nothing yet). A phrase whose occurrences overlap each other (``"a a"``
    in ``a a a``) counts once per overlapping run, as ``highlight()`` marks it.
    """
    # The index's totals while it holds anything (every hit then weighs words alike), else the copy's.
    weighing, block = FTS_TABLE, _TOTALS[FTS_TABLE].scalar(connection)
    if block is None or _varints(block)[0] == 0:
        weighing, block = WAITING_FTS, _TOTALS[WAITING_FTS].scalar(connection)
    totals = _varints(block) if block is not None else [0, 0]
    rows, tokens = totals[0], sum(totals[1:])
    wanted = set(message_ids)
    sizes = {message_id: _varints(size)[0] for message_id, size in _SIZES.rows(connection) if message_id in wanted}
    average = tokens / rows if rows else 1.0
    scores = dict.fromkeys(sizes, 0.0)
    for phrase in phrases:
        hits = _HITS[weighing].scalar(connection, phrase=phrase)
        idf = math.log((rows - hits + 0.5) / (hits + 0.5))
        idf = idf if idf > 0 else 1e-6
        for message_id, marked, content in _OCCURRENCES.rows(connection, phrase=phrase):
            if message_id in scores:
                freq = marked.count(_OPEN) - content.count(_OPEN)
                norm = _K1 * (1 - _B + _B * sizes[message_id] / average)
                scores[message_id] += idf * freq * (_K1 + 1) / (freq + norm)
    return scores


def _varints(blob: bytes) -> list[int]:
    """The SQLite varints of ``blob`` (big-endian groups of 7 bits; a ninth byte carries 8)."""
    values, value, length = [], 0, 0
    for byte in blob:
        length += 1
        if length == 9:
            values.append((value << 8) | byte)
            value, length = 0, 0
        elif byte & 0x80:
            value = (value << 7) | (byte & 0x7F)
        else:
            values.append((value << 7) | byte)
            value, length = 0, 0
    return values
