"""Writers that keep writing through a fault, and what they saw: acknowledged, in flight, lost, raw errors."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import attrs

from starpod_session import RetryPolicy, SessionManager, StarpodSessionError


@attrs.frozen
class CountingPolicy(RetryPolicy):
    """The default policy, counting the retries (transient conflicts) it pauses for."""

    retried: Counter[str] = attrs.field(factory=Counter, kw_only=True)

    def pause(self, failed_attempts: int) -> None:
        self.retried["conflicts"] += 1
        super().pause(failed_attempts)


@attrs.define
class Tally:
    """What the writers saw, shared by them (under ``lock``)."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    acknowledged: list[tuple[str, str]] = attrs.field(factory=list)  # (session id, message key)
    in_flight: int = 0  # calls that raised our error: their outcome unknown, retried with the same key
    errors: Counter[str] = attrs.field(factory=Counter)  # our errors, by class
    raw: list[BaseException] = attrs.field(factory=list)  # anything that is not a StarpodSessionError
    successes: list[tuple[str, float]] = attrs.field(factory=list)  # (writer, monotonic time) per acknowledged write
    unresolved: int = 0  # in-flight keys still failing RETRY_AFTER_STOP seconds after the stop

    def first_success_after(self, moment: float) -> dict[str, float]:
        """Seconds from ``moment`` to each writer's first acknowledged write after it."""
        firsts: dict[str, float] = {}
        with self.lock:
            for writer, at in self.successes:
                if at >= moment and (writer not in firsts or at - moment < firsts[writer]):
                    firsts[writer] = at - moment
        return firsts


#: How long a writer keeps retrying its in-flight key once told to stop.
RETRY_AFTER_STOP = 30.0
_stopped_at: dict[int, float] = {}
_stopped_lock = threading.Lock()


def stop_retrying_at(stop: threading.Event) -> float:
    """When writers give up retrying after ``stop`` was set (first seen set, plus :data:`RETRY_AFTER_STOP`)."""
    with _stopped_lock:
        return _stopped_at.setdefault(id(stop), time.monotonic()) + RETRY_AFTER_STOP


def write_until(
    stop: threading.Event,
    managers: Sequence[SessionManager],
    session_id: str,
    prefix: str,
    tally: Tally,
    *,
    write: Callable[[SessionManager, str, str], object] | None = None,
) -> None:
    """Save messages under idempotency keys until ``stop``; a failed call is retried with its key.

    On our error the writer moves to the next manager (another node) and retries
    the same key; anything else is recorded as raw and ends the writer.
    """

    def save(manager: SessionManager, sid: str, key: str) -> object:
        return manager.save_message(sid, "user", key, message_key=key)

    write = write or save
    index = 0
    turn = 0
    while not stop.is_set():
        key = f"{prefix}-{turn}"
        while True:
            if stop.is_set() and time.monotonic() > stop_retrying_at(stop):
                with tally.lock:
                    tally.unresolved += 1
                return
            manager = managers[index % len(managers)]
            try:
                write(manager, session_id, key)
            except StarpodSessionError as error:
                with tally.lock:
                    tally.in_flight += 1
                    tally.errors[type(error).__name__] += 1
                index += 1
                time.sleep(0.05)
                continue
            except BaseException as error:
                with tally.lock:
                    tally.raw.append(error)
                return
            with tally.lock:
                tally.acknowledged.append((session_id, key))
                tally.successes.append((prefix, time.monotonic()))
            break
        turn += 1
