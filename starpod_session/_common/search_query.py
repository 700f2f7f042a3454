"""What a search query means, parsed once by us and never handed to an engine as the user typed it.

A query is a list of parts, all of which a message must contain:

- a word (``deploy``): a whole word, case-insensitive;
- a prefix (``deploy*``): any word starting with it;
- a phrase (``"roll back"``): its words next to each other, in order.

Words are runs of letters and digits (``str.isalnum``); everything else separates
them, so punctuation and the engines' operators (``+ - ~ < > ( ) : ^ NEAR AND``)
typed by a user are separators, not syntax. Each backend's own query syntax is
then built from these words, every one quoted (:mod:`repositories.search`).

Words in scripts written without spaces (Han, Hiragana, Katakana, Thai, ...)
have no word boundaries a tokenizer can find, so a part holding one is matched
as a substring of the message instead (``substring``), on every backend.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

import attrs

from ..errors import InvalidInput

__all__ = [
    "MAX_INDEXED_WORD",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_PARTS",
    "QueryPart",
    "SearchQuery",
    "highlight",
    "highlighter",
    "indexed_words",
    "parse_query",
]

#: Longest query text accepted.
MAX_QUERY_CHARS = 1000
#: Most parts (words, prefixes, phrases) in one query.
MAX_QUERY_PARTS = 16

#: Characters of a word kept by a word index (:func:`indexed_words`); a longer word is
#: indexed by its first this many characters (and a search for it checks the content).
MAX_INDEXED_WORD = 64

# A quoted phrase, or a run of anything else up to the next space or quote.
_TOKEN = re.compile(r'"([^"]*)"?|([^\s"]+)')
_NO_SPACE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


_SEPARATORS = re.compile(r"[^\w]|_")


def _words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits; everything else separates."""
    return [word.lower() for word in _SEPARATORS.split(text) if word]


def indexed_words(content: str) -> dict[str, int]:
    """What a word index keeps of ``content``: each word (cut to :data:`MAX_INDEXED_WORD`) and how often it occurs.

    The words a query is made of (:func:`parse_query`), so a word typed in a query
    finds the messages holding it; words of scripts written without spaces are left
    out (a query matches them as substrings of the content).
    """
    counts: dict[str, int] = {}
    for word in _words(content):
        if word.isascii() or not _without_spaces(word):
            word = word[:MAX_INDEXED_WORD]
            counts[word] = counts.get(word, 0) + 1
    return counts


@functools.lru_cache(maxsize=4096)
def _without_spaces(word: str) -> bool:
    """Whether the word holds a character of a script written without spaces between words."""
    return any(not ch.isascii() and unicodedata.name(ch, "").startswith(_NO_SPACE_SCRIPTS) for ch in word)


@attrs.frozen
class QueryPart:
    """One condition of a query: ``words`` (one for a word or prefix, several for a phrase)."""

    words: tuple[str, ...]
    prefix: bool = False

    @property
    def substring(self) -> bool:
        """Matched as a substring of the content, not through the word index (see the module)."""
        return any(_without_spaces(word) for word in self.words)

    @property
    def text(self) -> str:
        """The words joined by single spaces (the substring searched for, when ``substring``)."""
        return " ".join(self.words)


@attrs.frozen
class SearchQuery:
    """A parsed query: every part must match."""

    parts: tuple[QueryPart, ...]

    @property
    def indexed(self) -> tuple[QueryPart, ...]:
        """The parts the full-text index answers."""
        return tuple(part for part in self.parts if not part.substring)

    @property
    def substrings(self) -> tuple[QueryPart, ...]:
        """The parts matched as substrings of the content."""
        return tuple(part for part in self.parts if part.substring)


def parse_query(query: object) -> SearchQuery:
    """Parse user text into a :class:`SearchQuery`; ``InvalidInput`` when it holds no word."""
    if not isinstance(query, str):
        raise InvalidInput("query", f"expected a str, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput("query", f"{len(query)} characters, at most {MAX_QUERY_CHARS} allowed")
    return _parse(query)


@functools.lru_cache(maxsize=256)
def _parse(query: str) -> SearchQuery:
    """:func:`parse_query` of a checked string; a query repeated (the next page, a retry) is parsed once."""
    parts: list[QueryPart] = []
    for match in _TOKEN.finditer(query):
        phrase, bare = match.groups()
        if phrase is not None:
            words = _words(phrase)
            if words:
                parts.append(QueryPart(tuple(words)))
            continue
        words = _words(bare)
        # "deploy*" is a prefix; "foo-bar*" is the word foo and the prefix bar.
        prefix = bare.endswith("*")
        for index, word in enumerate(words):
            parts.append(QueryPart((word,), prefix=prefix and index == len(words) - 1))
    if not parts:
        raise InvalidInput("query", f"{query!r} holds no word to search for (only operators or punctuation)")
    unique = tuple(dict.fromkeys(parts))
    if len(unique) > MAX_QUERY_PARTS:
        raise InvalidInput("query", f"{len(unique)} words or phrases, at most {MAX_QUERY_PARTS} allowed")
    return SearchQuery(unique)


#: How the snippet marks a matched term.
MARK_OPEN, MARK_CLOSE = "«", "»"
_SNIPPET_CHARS = 160


def _pattern(part: QueryPart) -> str:
    if part.substring:
        return r"\s+".join(re.escape(word) for word in part.words)
    # "No letter or digit before the word", checked once the first word has matched
    # (a look-behind over it and the character before): the pattern then starts with
    # a literal, so the regex engine skips to where a word can begin instead of
    # trying a look-behind at every position. Case-insensitive matching is per
    # character, so the look-behind has the word's fixed length plus one.
    first = re.escape(part.words[0])
    body = r"[\W_]+".join([rf"{first}(?<![^\W_]{first})", *(re.escape(word) for word in part.words[1:])])
    return body + (r"[^\W_]*" if part.prefix else r"(?![^\W_])")


@functools.lru_cache(maxsize=256)
def _matcher(query: SearchQuery) -> re.Pattern[str]:
    """One pattern matching any part of ``query``, compiled once per query."""
    return re.compile("|".join(f"(?:{_pattern(part)})" for part in query.parts), re.IGNORECASE)


def _mark(match: re.Match[str]) -> str:
    return f"{MARK_OPEN}{match.group(0)}{MARK_CLOSE}"


def highlight(content: str, query: SearchQuery, width: int = _SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``content`` around its first match, each match marked «like this».

    Whitespace runs become single spaces; ``…`` marks a cut at either end.
    """
    return _snippet(content, _matcher(query), width)


def highlighter(query: SearchQuery, width: int = _SNIPPET_CHARS) -> Callable[[str], str]:
    """:func:`highlight` for one query, its pattern built once for every hit of a page."""
    return functools.partial(_snippet, matcher=_matcher(query), width=width)


def _snippet(content: str, matcher: re.Pattern[str], width: int) -> str:
    text = " ".join(content.split())
    first = matcher.search(text)
    start = 0 if first is None else max(0, first.start() - width // 4)
    if start:
        space = text.rfind(" ", 0, start)
        start = space + 1 if space >= start - 20 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start + width // 2, end)
        end = space if space > 0 else end
    window = matcher.sub(_mark, text[start:end])
    return ("…" if start else "") + window + ("…" if end < len(text) else "")
