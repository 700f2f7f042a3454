"""Read replicas on the private pair: which calls see the replica's lag, and a replica that is down."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from starpod_session import Channel, SessionManager, UsageRecord

from .servers import PostgresPair

pytestmark = pytest.mark.faults


def _eventually(check: Callable[[], bool], timeout: float = 20) -> float:
    """Seconds until ``check()`` held (AssertionError past ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError("never held")
        time.sleep(0.05)
    return time.monotonic() - started


def test_lagging_reads_go_to_the_replica_and_a_callers_own_reads_to_the_primary(
    pg_pair: PostgresPair, tmp_path, record_property
):
    primary, standby = pg_pair.single_url(pg_pair.primary_port), pg_pair.single_url(pg_pair.standby_port)
    # The schema first, replayed on the standby: a replica read that meets no tables yet fails, and the
    # manager then sets the replica aside for RETRY_REPLICA_AFTER seconds, reading from the primary.
    SessionManager(primary).close()
    _eventually(
        lambda: pg_pair.sql(pg_pair.standby_port, "SELECT to_regclass('alembic_version') IS NOT NULL") == [(True,)]
    )
    with SessionManager(primary, tmp_path / "transcripts", read_url=standby) as manager:
        first = manager.create_session(Channel.MAIN, "before")
        manager.save_message(first, "user", "visible everywhere")
        _eventually(lambda: [s.id for s in manager.list_sessions(10)] == [first])

        pg_pair.sql(pg_pair.standby_port, "SELECT pg_wal_replay_pause()")
        # A request: replay stops at its next record, which pg_get_wal_replay_pause_state() reports.
        _eventually(
            lambda: pg_pair.sql(pg_pair.standby_port, "SELECT pg_get_wal_replay_pause_state()") == [("paused",)]
        )
        try:
            later = manager.create_session(Channel.MAIN, "during the pause")
            manager.save_message(later, "user", "zeppelin arrives")
            manager.record_usage(later, UsageRecord(input_tokens=7, cost_usd=0.5, model="m"), 1)
            manager.close_session(later, "done")
            # On the primary: the caller's own writes, read back at once.
            assert manager.get_session(later) is not None
            assert [m.content for m in manager.get_messages(later)] == ["zeppelin arrives"]
            assert manager.session_usage(later).total_input_tokens == 7
            assert "zeppelin arrives" in manager.export_transcript(later).read_text()
            assert manager.open_session(Channel.MAIN, "during the pause").created is True  # resolution: primary
            # On the replica, replay paused: the listing, search and report are stale.
            assert later not in {s.id for s in manager.list_sessions(10)}
            assert manager.search_messages("zeppelin") == []
            assert manager.cost_overview().total_cost_usd == 0
            time.sleep(1)
            lag = pg_pair.sql(
                pg_pair.standby_port,
                "SELECT extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())",
            )[0][0]
        finally:
            pg_pair.sql(pg_pair.standby_port, "SELECT pg_wal_replay_resume()")
        caught_up = _eventually(lambda: later in {s.id for s in manager.list_sessions(10)})
        assert [hit.session_id for hit in manager.search_messages("zeppelin")] == [later]
        assert manager.cost_overview().total_cost_usd == 0.5
    figures = {"replica_lag_seconds_while_paused": round(float(str(lag)), 2), "caught_up_seconds": round(caught_up, 3)}
    record_property("replica", figures)
    print("REPLICA", figures)


def test_a_replica_that_is_down_sends_the_reads_to_the_primary(pg_pair: PostgresPair):
    """The module's last test: it kills the standby (the primary first stops waiting for it)."""
    pg_pair.sql(pg_pair.primary_port, "ALTER SYSTEM SET synchronous_standby_names = ''")
    pg_pair.sql(pg_pair.primary_port, "SELECT pg_reload_conf()")
    primary, standby = pg_pair.single_url(pg_pair.primary_port), pg_pair.single_url(pg_pair.standby_port)
    with SessionManager(primary, read_url=[standby], connect_timeout=2) as manager:
        assert manager.list_sessions(100)
        pg_pair.standby.kill()
        session_id = manager.create_session(Channel.MAIN, "after the replica went")
        manager.save_message(session_id, "user", "quokka")
        assert session_id in {s.id for s in manager.list_sessions(100)}  # from the primary: fresh
        assert [hit.session_id for hit in manager.search_messages("quokka")] == [session_id]
        assert manager.cost_overview().total_cost_usd >= 0
