"""search_messages: words, prefixes, phrases, non-English text, filters, paging, hostile queries."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from freezegun import freeze_time

from starpod_session import InvalidInput, SessionManager

T0 = "2026-05-01T09:00:00Z"


@pytest.fixture
def corpus(manager: SessionManager) -> dict[str, str]:
    """Three sessions of two users on two channels, with messages in several scripts."""
    with freeze_time(T0) as clock:
        alice = manager.create_session("main", "main", user_id="alice")
        bob = manager.create_session("telegram", "42", user_id="bob")
        other = manager.create_session("main", "other", user_id="alice")
        for session_id, role, content in [
            (alice, "user", "Please deploy the billing service to production"),
            (alice, "assistant", "Deployment of billing finished; rolled back nothing."),
            (bob, "user", "We rolled back the deploy after the outage"),
            (bob, "assistant", "Café crème et résumé: déploiement terminé"),
            (other, "user", "Привет, как дела? Разверни сервис"),
            (other, "assistant", "東京タワーに行きましょう"),
            (other, "user", "go to the bank"),
        ]:
            clock.tick(timedelta(minutes=1))
            manager.save_message(session_id, role, content)
    return {"alice": alice, "bob": bob, "other": other}


def contents(manager: SessionManager, query: str, **options: object) -> set[str]:
    found = manager.search_messages(query, **options)
    return {" ".join(m.content for m in manager.get_messages(h.session_id) if m.id == h.message_id) for h in found}


def test_words_prefixes_and_phrases_match_alike_on_every_backend(manager, corpus):
    assert contents(manager, "deploy") == {
        "Please deploy the billing service to production",
        "We rolled back the deploy after the outage",
    }
    assert contents(manager, "DEPLOY*") == {
        "Please deploy the billing service to production",
        "Deployment of billing finished; rolled back nothing.",
        "We rolled back the deploy after the outage",
    }
    assert contents(manager, '"rolled back" deploy') == {"We rolled back the deploy after the outage"}
    assert contents(manager, '"back rolled"') == set()
    assert contents(manager, "billing production") == {"Please deploy the billing service to production"}


def test_short_words_and_stop_words_are_found(manager, corpus):
    assert contents(manager, "go bank") == {"go to the bank"}
    assert contents(manager, "go") == {"go to the bank"}
    assert contents(manager, "the outage") == {"We rolled back the deploy after the outage"}


def test_accented_latin_cyrillic_and_cjk(manager, corpus):
    assert contents(manager, "café résumé") == {"Café crème et résumé: déploiement terminé"}
    assert contents(manager, "привет") == {"Привет, как дела? Разверни сервис"}
    assert contents(manager, "СЕРВИС") == {"Привет, как дела? Разверни сервис"}
    assert contents(manager, "東京") == {"東京タワーに行きましょう"}
    assert contents(manager, "タワー") == {"東京タワーに行きましょう"}


def test_words_longer_than_an_index_keeps_match_whole(manager, corpus):
    session_id = corpus["other"]
    long_word = "k" * 70
    stored = {
        manager.save_message(session_id, "user", f"see {long_word} here"): "exact",
        manager.save_message(session_id, "user", f"see {'k' * 64}{'q' * 6} here"): "same first 64",
        manager.save_message(session_id, "user", f"see {long_word}zz here"): "longer",
    }
    found = lambda query: {stored[h.message_id] for h in manager.search_messages(query)}  # noqa: E731
    assert found(long_word) == {"exact"}
    assert found(long_word + "*") == {"exact", "longer"}
    assert found(f'"see {long_word}"') == {"exact"}
    assert found("k" * 64) == set()  # a whole word: none of the three is that word
    assert found("k" * 64 + "*") == {"exact", "same first 64", "longer"}


def test_saving_the_same_message_twice_indexes_it_once(manager, corpus):
    session_id = corpus["other"]
    first = manager.save_message(session_id, "user", "quince quince", message_key="k-1")
    again = manager.save_message(session_id, "user", "quince quince", message_key="k-1")
    assert first == again
    assert [h.message_id for h in manager.search_messages("quince")] == [first]


def test_a_hit_carries_its_message_session_and_a_marked_snippet(manager, corpus):
    [hit] = manager.search_messages("outage")
    assert (hit.session_id, hit.role, hit.channel, hit.user_id) == (corpus["bob"], "user", "telegram", "bob")
    assert hit.session_title == "We rolled back the deploy after the outage"
    assert hit.snippet == "We rolled back the deploy after the «outage»"
    assert hit.timestamp.tzinfo is not None


def test_most_relevant_first_then_newest_and_cursor_paging(manager, corpus):
    with freeze_time(T0):
        session_id = manager.create_session("main", "paging", user_id="carol")
        ids = [manager.save_message(session_id, "user", "kiwi") for _ in range(5)]
        strong = manager.save_message(session_id, "user", "kiwi kiwi kiwi kiwi")
    hits = manager.search_messages("kiwi", user_id="carol")
    assert hits[0].message_id == strong
    assert [h.message_id for h in hits[1:]] == sorted(ids, reverse=True)
    for filters in ({"user_id": "carol"}, {}):  # filtered, and answered by the index alone
        pages, cursor = [], None
        while True:
            page = manager.search_messages("kiwi", limit=2, cursor=cursor, **filters)
            if not page:
                break
            pages += [h.message_id for h in page]
            cursor = page[-1].cursor
        assert pages == [h.message_id for h in hits]


def test_filters(manager, corpus):
    assert contents(manager, "deploy*", user_id="bob") == {"We rolled back the deploy after the outage"}
    assert contents(manager, "deploy*", channel="main", roles=["assistant"]) == {
        "Deployment of billing finished; rolled back nothing."
    }
    assert contents(manager, "deploy*", session_id=corpus["alice"], roles=["user"]) == {
        "Please deploy the billing service to production"
    }
    assert contents(manager, "deploy*", since="2026-05-01T09:02:30Z", until="2026-05-01T09:03:30Z") == {
        "We rolled back the deploy after the outage"
    }


@pytest.mark.parametrize(
    "query",
    ["*", '""', "+-()", "AND OR NOT", "  ", "'); DROP TABLE session_messages; --", 'NEAR("a" "b")', ":^~<>"],
)
def test_operators_and_punctuation_never_reach_the_engine(manager, corpus, query):
    try:
        hits = manager.search_messages(query)
    except InvalidInput as error:
        assert error.field == "query"
    else:  # words were left (e.g. DROP TABLE): they are searched for as words, harmlessly
        assert all(h.snippet for h in hits)
    assert manager.get_messages(corpus["alice"])


def test_bad_arguments_are_invalid_input(manager, corpus):
    for options in ({"limit": -1}, {"cursor": "not-a-cursor"}, {"roles": "user"}, {"since": "yesterday"}):
        with pytest.raises(InvalidInput):
            manager.search_messages("deploy", **options)
    with pytest.raises(InvalidInput):
        manager.search_messages("***")


def test_rows_written_by_another_program_are_searchable_and_deleted_ones_are_not(manager, corpus):
    [_hit] = manager.search_messages("outage")
    manager.close_session(corpus["bob"], "done")
    manager.delete_session(corpus["bob"])
    assert manager.search_messages("outage") == []


def test_every_message_is_found_as_soon_as_its_save_returns(manager):
    # More than two of SQLite's index batches (repositories.search.INDEX_BATCH): some
    # messages are indexed by the insert completing their batch, the last ones wait for
    # the search to index them.
    session_id = manager.create_session("main", "batches")
    saved = [manager.save_message(session_id, "user", f"plum number{n}") for n in range(70)]
    assert sorted(h.message_id for h in manager.search_messages("plum", limit=100)) == saved
    for n in range(70, 80):  # a search after every save
        message_id = manager.save_message(session_id, "user", f"plum number{n}")
        assert [h.message_id for h in manager.search_messages(f"number{n}")] == [message_id]
    assert [h.message_id for h in manager.search_messages('"plum number3"')] == [saved[3]]


def test_relevance_and_phrases_hold_across_indexed_and_waiting_messages(manager):
    # 40 messages of five words each, with one to four mentions of "fig": on SQLite the
    # first batch is indexed as it fills, the rest wait and join the index at the search.
    with freeze_time(T0):
        session_id = manager.create_session("main", "figs")
        mentions = {}
        for n in range(40):
            k = n % 4 + 1
            mentions[manager.save_message(session_id, "user", " ".join(["fig"] * k + ["pad"] * (4 - k) + ["end"]))] = k
    hits = manager.search_messages("fig", limit=100)
    assert [h.message_id for h in hits] == sorted(mentions, key=lambda i: (-mentions[i], -i))
    assert all(a.score > b.score for a, b in pairwise(hits) if mentions[a.message_id] != mentions[b.message_id])
    phrase = manager.search_messages('"fig pad"', limit=100)
    assert {h.message_id for h in phrase} == {i for i, k in mentions.items() if k < 4}
