"""Our own errors, each saying what happened and what to do, within the timeouts, never with the password.

The tests run in order on one pair: a standby refusing writes, a hung primary,
then the primary killed (only a standby left), then everything down.
"""

from __future__ import annotations

import time

import pytest

from starpod_session import Channel, SessionManager, StorageError

from .servers import PostgresPair

SECRET = "pw-never-shown"

pytestmark = pytest.mark.faults


def _url(pair: PostgresPair, *ports: int) -> str:
    return pair.url(*ports).replace("postgres@", f"postgres:{SECRET}@")  # trust auth: the password is ignored


def _fails_quickly(bound: float, match: str, make) -> StorageError:
    started = time.monotonic()
    with pytest.raises(StorageError, match=match) as raised:
        make()
    assert time.monotonic() - started < bound
    assert SECRET not in str(raised.value) and "***" in str(raised.value)
    return raised.value


def test_a_standby_refuses_writes_and_the_error_says_where_to_point(pg_pair: PostgresPair):
    with SessionManager(pg_pair.comma_url()) as manager:  # the comma form finds the primary too
        manager.create_session(Channel.MAIN, "on the primary")  # migrated there, replicated to the standby
    standby = pg_pair.single_url(pg_pair.standby_port).replace("postgres@", f"postgres:{SECRET}@")
    with SessionManager(standby, connect_timeout=2) as manager:
        time.sleep(0.5)
        _fails_quickly(
            5, "read-only standby.*target_session_attrs=read-write", lambda: manager.create_session(Channel.MAIN, "k")
        )


def test_a_hung_server_costs_connect_timeout_then_our_error(pg_pair: PostgresPair):
    pg_pair.primary.hang()
    try:
        _fails_quickly(
            8, "connect_timeout", lambda: SessionManager(_url(pg_pair, pg_pair.primary_port), connect_timeout=2)
        )
    finally:
        pg_pair.primary.resume()


def test_a_call_on_a_server_that_hangs_mid_call_ends_after_statement_timeout(pg_pair: PostgresPair):
    url = _url(pg_pair, pg_pair.primary_port)
    with SessionManager(url, lock_timeout=1, statement_timeout=2, connect_timeout=2) as manager:
        session_id = manager.create_session(Channel.MAIN, "hang")
        pg_pair.primary.hang()
        try:
            _fails_quickly(
                10, "statement_timeout|connect_timeout", lambda: manager.save_message(session_id, "user", "x")
            )
        finally:
            pg_pair.primary.resume()


def test_only_a_standby_left_gives_our_error_naming_target_session_attrs(pg_pair: PostgresPair):
    pg_pair.primary.kill()
    _fails_quickly(8, "target_session_attrs", lambda: SessionManager(_url(pg_pair), connect_timeout=2))


def test_every_host_down_gives_our_error(pg_pair: PostgresPair):
    pg_pair.standby.kill()
    _fails_quickly(8, "no server could be reached", lambda: SessionManager(_url(pg_pair), connect_timeout=2))
