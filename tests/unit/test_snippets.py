"""Snippets: the faster matcher marks exactly what the plain lookbehind pattern marked.

``search_query`` builds its snippet pattern so that each word starts with a
literal (the check that no letter precedes it comes after the word), which lets
the regex engine skip ahead to candidate positions. The reference below is the
pattern it replaced; random texts and queries must give identical snippets.
"""

from __future__ import annotations

import random
import re

import pytest

from starpod_session._common.search_query import (
    MARK_CLOSE,
    MARK_OPEN,
    QueryPart,
    SearchQuery,
    highlight,
    highlighter,
    parse_query,
)


def _reference_pattern(part: QueryPart) -> str:
    if part.substring:
        return r"\s+".join(re.escape(word) for word in part.words)
    body = r"[\W_]+".join(re.escape(word) for word in part.words)
    return rf"(?<![^\W_]){body}" + (r"[^\W_]*" if part.prefix else r"(?![^\W_])")


def reference(content: str, query: SearchQuery, width: int = 160) -> str:
    text = " ".join(content.split())
    matcher = re.compile("|".join(f"(?:{_reference_pattern(part)})" for part in query.parts), re.IGNORECASE)
    first = matcher.search(text)
    start = 0 if first is None else max(0, first.start() - width // 4)
    if start:
        space = text.rfind(" ", 0, start)
        start = space + 1 if space >= start - 20 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start + width // 2, end)
        end = space if space > 0 else end
    window = matcher.sub(lambda m: f"{MARK_OPEN}{m.group(0)}{MARK_CLOSE}", text[start:end])
    return ("…" if start else "") + window + ("…" if end < len(text) else "")


WORDS = [
    "deploy",
    "Deployment",
    "DEPLOY",
    "re-deploy",
    "deploy_x",
    "x_deploy",
    "roll",
    "back",
    "rollback",
    "café",
    "CAFÉ",
    "cafe",
    "東京",
    "東京タワー",
    "ſtraße",
    "strasse",
    "İstanbul",
    "a",
    "ab",
    "the",
    "1deploy",
    "deploy2",
    "Ωmega",
]
SEPARATORS = [" ", "  ", "\n", "-", "_", ", ", ".", "\t", "…", "«", ""]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 60)))


@pytest.mark.parametrize("seed", range(40))
def test_snippets_match_the_reference_pattern(seed):
    rng = random.Random(seed)
    for _ in range(50):
        picked = rng.sample(WORDS, rng.randint(1, 3))
        query_text = " ".join(rng.choice([word, f"{word}*", f'"{word} {rng.choice(WORDS)}"']) for word in picked)
        try:
            query = parse_query(query_text)
        except Exception:  # a query of no word at all is InvalidInput, not a snippet question
            continue
        content = _text(rng)
        expected = reference(content, query)
        assert highlight(content, query) == expected, (query_text, content)
        assert highlighter(query)(content) == expected, (query_text, content)
