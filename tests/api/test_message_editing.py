"""Several messages in one call, taking the newest back, clearing a transcript, finding a key's open session
(the calls an adapter such as the OpenAI Agents SDK's Session needs), on every backend."""

from __future__ import annotations

import json
import threading

import pytest

from starpod_session import Channel, InvalidInput, SessionNotFound


def test_save_messages_stores_all_in_order_in_one_call(manager, session_id):
    ids = manager.save_messages(session_id, [("user", "one"), ("assistant", "two"), ("user", "three")])
    messages = manager.get_messages(session_id)
    assert [(m.role, m.content) for m in messages] == [("user", "one"), ("assistant", "two"), ("user", "three")]
    assert [m.id for m in messages] == ids == sorted(ids)
    assert manager.get_session(session_id).title == "one"  # the first user message titles it, as save_message does


def test_save_messages_of_nothing_stores_nothing_and_checks_no_session(manager):
    assert manager.save_messages("no-such-session", []) == []


def test_save_messages_on_an_unknown_session_stores_none_of_them(manager, session_id):
    with pytest.raises(SessionNotFound):
        manager.save_messages("no-such-session", [("user", "one"), ("user", "two")])
    assert manager.get_messages("no-such-session") == []


@pytest.mark.parametrize(
    "messages",
    ["user", [("user",)], [("user", "ok"), ("", "empty role")], [("user", b"bytes")], [["user", "a list"]]],
)
def test_save_messages_refuses_bad_input_before_writing_anything(manager, session_id, messages):
    with pytest.raises(InvalidInput):
        manager.save_messages(session_id, messages)
    assert manager.get_messages(session_id) == []


def test_save_messages_feeds_the_tool_statistics(manager, session_id):
    use = json.dumps({"type": "tool_use", "id": "c1", "name": "search"})
    manager.save_messages(session_id, [("tool_use", use), ("tool_result", json.dumps({"tool_use_id": "c1"}))])
    [tool] = manager.cost_overview().by_tool
    assert (tool.tool_name, tool.invocations) == ("search", 1)


def test_pop_message_takes_the_newest_back_until_none_is_left(manager, session_id):
    manager.save_messages(session_id, [("user", "one"), ("assistant", "two")])
    popped = manager.pop_message(session_id)
    assert (popped.role, popped.content, popped.session_id) == ("assistant", "two", session_id)
    assert [m.content for m in manager.get_messages(session_id)] == ["one"]
    assert manager.pop_message(session_id).content == "one"
    assert manager.pop_message(session_id) is None
    assert manager.pop_message("no-such-session") is None


def test_a_popped_message_leaves_search_and_tool_statistics(manager, session_id):
    manager.save_message(session_id, "user", "keep this")
    manager.save_message(session_id, "tool_use", json.dumps({"id": "c1", "name": "search"}))
    manager.save_message(session_id, "assistant", "zebra crossing")
    manager.pop_message(session_id)
    manager.pop_message(session_id)
    assert manager.search_messages("zebra") == []
    assert manager.cost_overview().by_tool == ()
    assert [hit.snippet for hit in manager.search_messages("keep")] != []


def test_racing_pops_each_take_a_different_message(manager, session_id):
    ids = manager.save_messages(session_id, [("user", str(n)) for n in range(24)])
    taken: list[int] = []
    lock = threading.Lock()

    def pop() -> None:
        for _ in range(3):
            message = manager.pop_message(session_id)
            assert message is not None
            with lock:
                taken.append(message.id)

    threads = [threading.Thread(target=pop) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == ids
    assert manager.get_messages(session_id) == []


def test_clear_messages_empties_the_transcript_and_keeps_the_session(manager, session_id):
    other = manager.create_session(Channel.MAIN, "other")
    manager.save_messages(session_id, [("user", "one"), ("assistant", "two")])
    manager.save_message(other, "user", "theirs")
    assert manager.clear_messages(session_id) == 2
    assert manager.get_messages(session_id) == []
    assert manager.get_session(session_id) is not None
    assert [m.content for m in manager.get_messages(other)] == ["theirs"]
    assert manager.clear_messages(session_id) == 0
    assert manager.clear_messages("no-such-session") == 0
    assert manager.search_messages("one") == []


def test_find_open_session_reads_without_creating_or_closing(manager):
    assert manager.find_open_session(Channel.MAIN, "k") is None
    assert manager.list_sessions(10) == []
    session_id = manager.create_session(Channel.MAIN, "k", user_id="ann")
    assert manager.find_open_session("main", "k", user_id="ann") == session_id
    assert manager.find_open_session("main", "k") is None  # another user's key
    manager.close_session(session_id, "done")
    assert manager.find_open_session("main", "k", user_id="ann") is None


def test_find_open_session_refuses_bad_input(manager):
    with pytest.raises(InvalidInput):
        manager.find_open_session("main", "")
    with pytest.raises(InvalidInput):
        manager.find_open_session("no-such-channel", "k")
