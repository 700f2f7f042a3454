"""PostgreSQL failover through a libpq multi-host URL: 8 writers through one manager, the primary lost three ways."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from starpod_session import Channel, SessionManager

from .servers import PostgresPair, postgres_pair
from .workload import Tally, write_until

WRITERS = 8
#: Seconds of writing before the fault, and after the promotion.
BEFORE, AFTER = 2.0, 6.0
#: The bound the issue sets: every writer succeeds on the new primary within this of the promotion.
RECOVERY_BOUND = 5.0

pytestmark = pytest.mark.faults


@pytest.fixture
def pair(pg_available: None):
    with postgres_pair() as started:
        yield started


def kill_then_promote(pair: PostgresPair) -> float:
    pair.primary.kill()  # kill -9, the whole process group
    pair.promote_standby()
    return time.monotonic()


def promote_then_stop(pair: PostgresPair) -> float:
    pair.promote_standby()
    promoted = time.monotonic()
    time.sleep(0.5)
    pair.primary.stop(signum=signal.SIGINT)  # fast shutdown: its clients are disconnected
    return promoted


def hang_then_promote(pair: PostgresPair) -> float:
    pair.primary.hang()  # SIGSTOP: sockets stay open, nothing answers
    time.sleep(1.0)
    pair.promote_standby()
    return time.monotonic()


def run_failover(pair: PostgresPair, fault: Callable[[PostgresPair], float], record_property) -> dict[str, object]:
    manager = SessionManager(pair.url(), lock_timeout=1, connect_timeout=2, statement_timeout=2)
    sessions = [manager.create_session(Channel.MAIN, f"writer-{n}") for n in range(WRITERS)]
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=write_until, args=(stop, [manager], session_id, f"w{n}", tally))
        for n, session_id in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    time.sleep(BEFORE)
    before_fault = len(tally.acknowledged)
    promoted = fault(pair)
    time.sleep(AFTER)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    manager.close()
    assert tally.raw == [], "a call raised something other than our own error"
    assert not any(thread.is_alive() for thread in threads)
    recovery = tally.first_success_after(promoted)
    lost = duplicated = 0
    with SessionManager(pair.single_url(pair.standby_port)) as new_primary:
        stored = {sid: Counter(m.content for m in new_primary.get_messages(sid)) for sid in sessions}
    for session_id, key in tally.acknowledged:
        lost += stored[session_id][key] == 0
    duplicated = sum(count > 1 for contents in stored.values() for count in contents.values())
    figures = {
        "acknowledged": len(tally.acknowledged),
        "acknowledged_before_fault": before_fault,
        "lost": lost,
        "duplicated": duplicated,
        "in_flight_errors": tally.in_flight,
        "errors": dict(tally.errors),
        "unresolved": tally.unresolved,
        "seconds_to_first_success": round(min(recovery.values()), 3) if recovery else None,
        "seconds_to_every_writer": round(max(recovery.values()), 3) if len(recovery) == WRITERS else None,
    }
    record_property("failover", figures)
    print(f"FAILOVER {fault.__name__}", figures)
    assert lost == 0 and duplicated == 0 and tally.unresolved == 0
    assert len(recovery) == WRITERS, "a writer never succeeded on the new primary"
    assert max(recovery.values()) < RECOVERY_BOUND
    return figures


def test_primary_killed_then_standby_promoted(pair: PostgresPair, record_property):
    run_failover(pair, kill_then_promote, record_property)


def test_standby_promoted_then_primary_stopped(pair: PostgresPair, record_property):
    run_failover(pair, promote_then_stop, record_property)


def test_primary_hung_then_standby_promoted(pair: PostgresPair, record_property):
    run_failover(pair, hang_then_promote, record_property)
