"""The message store: transcripts come back in order and byte-identical on every backend."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from starpod_session import Channel, StorageError

from ..helpers import raw_connection

MIB = 1024 * 1024


def test_messages_come_back_in_insertion_order(manager, session_id):
    turns = [("user", "first"), ("assistant", "second"), ("user", "third"), ("tool", "fourth")]
    ids = [manager.save_message(session_id, role, content) for role, content in turns]
    messages = manager.get_messages(session_id)
    assert [(m.role, m.content) for m in messages] == turns
    assert [m.id for m in messages] == ids == sorted(ids)
    assert {m.session_id for m in messages} == {session_id}


def test_messages_of_one_session_are_not_mixed_with_another(manager, session_id):
    other = manager.create_session(Channel.MAIN, "other")
    manager.save_message(session_id, "user", "mine")
    manager.save_message(other, "user", "theirs")
    assert [m.content for m in manager.get_messages(session_id)] == ["mine"]


def test_a_message_records_its_role_and_the_time_it_was_saved(manager, session_id):
    saved_at = datetime(2026, 3, 20, 9, 15, 30, 250000, tzinfo=timezone.utc)
    with freeze_time(saved_at):
        manager.save_message(session_id, "assistant", "On it.")
    [message] = manager.get_messages(session_id)
    assert (message.role, message.content) == ("assistant", "On it.")
    assert message.timestamp == saved_at
    assert message.timestamp.utcoffset() is not None


def test_tool_use_and_tool_result_json_is_stored_verbatim(manager, session_id):
    tool_use = json.dumps(
        [{"type": "tool_use", "id": "toolu_01", "name": "search", "input": {"q": 'Lisbon "old town"\n'}}],
        indent=2,
    )
    tool_result = '[{"type":"tool_result","tool_use_id":"toolu_01","content":"ok \\u00e9 \\\\ %s %%"}]'
    manager.save_message(session_id, "assistant", tool_use)
    manager.save_message(session_id, "user", tool_result)
    assert [m.content for m in manager.get_messages(session_id)] == [tool_use, tool_result]


def test_unicode_including_4_byte_emoji_round_trips(manager, session_id):
    content = "Olá 👋🏽 — 日本語, Ελληνικά, עברית, 🛒🧪𝔘𝔫𝔦𝔠𝔬𝔡𝔢, e\u0301, \u200b zero-width, \t tab"
    manager.save_message(session_id, "user", content)
    assert manager.get_messages(session_id)[0].content == content


def test_a_70000_character_message_round_trips(manager, session_id):
    content = "".join(chr(0x41 + n % 26) for n in range(70_000))
    manager.save_message(session_id, "user", content)
    assert manager.get_messages(session_id)[0].content == content


def test_16_mib_of_utf8_content_round_trips_byte_identical(manager, session_id):
    # 8 bytes per unit (4 + 2 + 1 + 1), so exactly 16 MiB of UTF-8 with multi-byte characters.
    content = "🛒é a" * (2 * MIB)
    assert len(content.encode("utf-8")) == 16 * MIB
    manager.save_message(session_id, "assistant", content)
    [message] = manager.get_messages(session_id)
    assert message.content.encode("utf-8") == content.encode("utf-8")


def test_get_messages_of_an_unknown_id_is_empty(manager, session_id):
    manager.save_message(session_id, "user", "hello")
    assert manager.get_messages(str(uuid.uuid4())) == []


def test_mariadb_statement_over_the_servers_packet_limit_is_a_clear_storage_error(
    backend, db_target, manager, session_id
):
    if backend != "mariadb":
        pytest.skip("max_allowed_packet is a MariaDB server setting")
    with raw_connection(db_target) as connection:
        limit = connection.execute(text("SELECT @@GLOBAL.max_allowed_packet")).scalar_one()
    if limit > 256 * MIB:
        pytest.skip(f"the server's max_allowed_packet ({limit}) is too large to exceed cheaply")
    # Summaries have no size limit of their own, so one can exceed the server's packet.
    with pytest.raises(StorageError, match="max_allowed_packet"):
        manager.close_session(session_id, "s" * (limit + 1))
    assert manager.get_session(session_id).is_closed is False
