"""``AsyncSessionManager`` (issue #28, point 1): the sync facade's calls, awaitable, on a bounded pool of its own."""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio  # the test extra: imported here, never skipped for want of it
import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

from starpod_session import AsyncSessionManager, Channel, SessionManager, StarpodSessionError

from ..helpers import raw_connection


def public_methods(cls: type) -> dict[str, Any]:
    return {name: value for name, value in vars(cls).items() if not name.startswith("_") and callable(value)}


def test_the_async_facade_has_exactly_the_sync_facades_methods_with_the_same_parameters():
    sync, awaitable = public_methods(SessionManager), public_methods(AsyncSessionManager)
    assert set(awaitable) - {"aclose", "run_to_completion"} == set(sync)
    for name, method in sync.items():
        assert inspect.iscoroutinefunction(awaitable[name]), name
        # ``self`` aside (the feature modules annotate theirs), the same parameters and return type.
        expected = list(inspect.signature(method).parameters.values())[1:]
        got = list(inspect.signature(awaitable[name]).parameters.values())[1:]
        assert got == expected, name
        assert inspect.signature(awaitable[name]).return_annotation in (
            inspect.signature(method).return_annotation,
            "None",
        ), name
    assert inspect.signature(AsyncSessionManager) == inspect.signature(SessionManager)
    properties = {name for name, value in vars(SessionManager).items() if isinstance(value, property)}
    assert properties <= {name for name, value in vars(AsyncSessionManager).items() if isinstance(value, property)}


def test_calls_come_back_as_the_sync_facade_returns_them(make_async, backend):
    async def main() -> None:
        async with make_async() as manager:
            opened = await manager.open_session(Channel.MAIN, "k")
            ids = [await manager.save_message(opened.session_id, "user", text) for text in ("one", "two")]
            ids += await manager.save_messages(opened.session_id, [("assistant", "three")])
            messages = await manager.get_messages(opened.session_id)
            assert [m.content for m in messages] == ["one", "two", "three"]
            assert [m.id for m in messages] == ids
            assert await manager.find_open_session("main", "k") == opened.session_id
            assert (await manager.pop_message(opened.session_id)).content == "three"
            assert await manager.clear_messages(opened.session_id) == 2
            assert (await manager.get_session(opened.session_id)).title == "one"
            assert manager.sync.get_messages(opened.session_id) == []
            assert manager.target == manager.sync.target
            assert manager.sessions_dir == manager.sync.sessions_dir

    asyncio.run(main())


def test_errors_arrive_as_the_sync_facade_raises_them(make_async):
    from starpod_session import InvalidInput, SessionNotFound

    async def main() -> None:
        manager = make_async()
        with pytest.raises(InvalidInput):
            await manager.save_message("s", "", "no role")
        with pytest.raises(SessionNotFound):
            await manager.save_message("no-such-session", "user", "hi")

    asyncio.run(main())


def test_calls_run_on_the_managers_own_threads_never_the_loops(make_async, backend):
    manager = make_async(pool_size=3)
    seen: list[str] = []
    real = manager.sync.get_messages

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    manager.sync.get_messages = recording  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.gather(*(manager.get_messages("s") for _ in range(10)))

    asyncio.run(main())
    assert len(seen) == 10
    assert all(name.startswith("starpod-session") for name in seen)
    assert threading.current_thread().name not in seen


def test_at_most_pool_size_calls_run_at_once(make_async):
    manager = make_async(pool_size=2)
    release = threading.Event()
    running, most = 0, 0
    lock = threading.Lock()

    def blocking(*_args: Any, **_kwargs: Any) -> list[Any]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(30)
        with lock:
            running -= 1
        return []

    manager.sync.get_messages = blocking  # type: ignore[method-assign]

    async def main() -> None:
        calls = asyncio.gather(*(manager.get_messages("s") for _ in range(6)))
        while running < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # room for a third call to start, were the pool unbounded
        release.set()
        await calls

    asyncio.run(main())
    assert most == 2


def test_one_call_after_another_runs_on_the_thread_that_finished_last(make_async):
    """Idle threads are a stack: a lone caller keeps one warm thread (and its caches), not a rotation of all."""
    manager = make_async(pool_size=4)
    all_busy, release = threading.Barrier(4), threading.Event()
    seen: list[str] = []
    real = manager.sync.get_messages

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    async def main() -> None:
        def hold(_sync: SessionManager) -> None:
            all_busy.wait(30)
            release.wait(30)

        holding = asyncio.gather(*(manager.run_to_completion(hold) for _ in range(4)))
        await asyncio.sleep(0.05)
        release.set()
        await holding  # four threads started, all idle now
        manager.sync.get_messages = recording  # type: ignore[method-assign]
        for _ in range(20):
            await manager.get_messages("s")

    asyncio.run(main())
    assert len(seen) == 20
    assert len(set(seen)) == 1


def test_the_loop_keeps_running_while_a_call_waits_for_a_lock(make_async, db_target, backend):
    manager = make_async()
    session_id = manager.sync.create_session(Channel.MAIN, "k")

    async def main() -> int:
        ticks = 0
        save = asyncio.ensure_future(manager.save_message(session_id, "user", "after the lock"))
        while ticks < 20:  # the loop runs while the save waits for the lock
            await asyncio.sleep(0.001)
            ticks += 1
        assert not save.done()
        return ticks

    # Another connection holds the lock the save needs: SQLite's file lock, the session row on servers.
    with raw_connection(db_target, begin=True) as blocker:
        if backend == "sqlite":
            blocker.execute(text("DELETE FROM session_messages WHERE id < 0"))
        else:
            blocker.execute(text("UPDATE session_metadata SET title = title WHERE id = :id"), {"id": session_id})
        loop = asyncio.new_event_loop()
        try:
            save_waiting = loop.run_until_complete(main())
            blocker.rollback()
            loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop)))
        finally:
            loop.close()
    assert save_waiting == 20
    assert [m.content for m in manager.sync.get_messages(session_id)] == ["after the lock"]


def test_one_manager_serves_several_event_loops_in_several_threads(make_async, backend):
    manager = make_async()
    session_ids = [manager.sync.create_session(Channel.MAIN, f"k{n}") for n in range(4)]
    errors: list[BaseException] = []

    def run(session_id: str) -> None:
        async def main() -> None:
            for n in range(10):
                await manager.save_message(session_id, "user", str(n))

        try:
            asyncio.run(main())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(session_id,)) for session_id in session_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for session_id in session_ids:
        assert [m.content for m in manager.sync.get_messages(session_id)] == [str(n) for n in range(10)]


def open_files_under(folder: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def driver_connection_is_closed(connection: Any) -> bool:
    """Whether a driver connection (sqlite3, psycopg or PyMySQL) has been closed."""
    if isinstance(connection, sqlite3.Connection):
        try:
            connection.execute("SELECT 1")
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
            return True
        return False
    if hasattr(connection, "open"):  # PyMySQL
        return not connection.open
    return bool(connection.closed)  # psycopg


def test_aclose_twice_is_harmless_and_a_later_call_raises(make_async, db_target, backend):
    """Closing releases every connection the manager opened: on SQLite no descriptor on the file stays open."""
    opened: list[Any] = []

    def record(dbapi_connection: Any, _record: Any) -> None:
        opened.append(dbapi_connection)

    async def main() -> None:
        async with make_async() as manager:
            session_id = await manager.create_session("main", "k")
            await asyncio.gather(*(manager.save_message(session_id, "user", str(n)) for n in range(8)))
            assert await manager.get_messages(session_id)
            if backend == "sqlite":
                assert open_files_under(Path(db_target))
        await manager.aclose()
        await manager.close()
        with pytest.raises(StarpodSessionError, match="closed"):
            await manager.get_messages(session_id)
        with pytest.raises(StarpodSessionError, match="closed"):
            await manager.save_message(session_id, "user", "after the close")

    # Every pool the manager makes reports the driver connections it opens (schema check included).
    event.listen(Pool, "connect", record)
    try:
        asyncio.run(main())
    finally:
        event.remove(Pool, "connect", record)
    assert opened
    assert [connection for connection in opened if not driver_connection_is_closed(connection)] == []
    if backend == "sqlite" and Path("/proc/self/fd").is_dir():  # the file and its -wal and -shm
        assert open_files_under(Path(db_target)) == []


def test_a_manager_never_closed_lets_the_program_exit_once_its_last_call_is_done(tmp_path):
    """Idle threads never hold the interpreter up; a call under way at exit still finishes (and commits)."""
    path = tmp_path / "sessions.db"
    program = f"""
import asyncio, threading, time
from starpod_session import AsyncSessionManager, Channel
manager = AsyncSessionManager({str(path)!r})
session_id = manager.sync.create_session(Channel.MAIN, "k")

def slow(sync):
    time.sleep(0.3)
    return sync.save_message(session_id, "user", "at exit")

async def main():
    await manager.get_session(session_id)  # a thread started, idle from now on
    started = threading.Event()
    loop = asyncio.get_running_loop()
    loop.create_task(manager.run_to_completion(lambda sync: (started.set(), slow(sync))[1]))
    while not started.is_set():
        await asyncio.sleep(0.001)

loop = asyncio.new_event_loop()
loop.run_until_complete(main())  # the loop is left as it is: the call's task is neither awaited nor cancelled
"""
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    reopened = SessionManager(path)
    try:
        [session] = reopened.list_sessions(10)
        assert [m.content for m in reopened.get_messages(session.id)] == ["at exit"]
    finally:
        reopened.close()


def test_closing_waits_for_the_calls_under_way(make_async):
    manager = make_async()
    session_id = manager.sync.create_session(Channel.MAIN, "k")

    async def main() -> None:
        saves = [asyncio.ensure_future(manager.save_message(session_id, "user", str(n))) for n in range(20)]
        await asyncio.sleep(0)  # every save submitted
        await asyncio.gather(manager.aclose(), manager.aclose())
        await asyncio.gather(*saves)

    asyncio.run(main())
    reopened = SessionManager(manager.target)
    try:
        assert len(reopened.get_messages(session_id)) == 20
    finally:
        reopened.close()


def test_a_cancelled_await_of_a_queued_call_never_runs_it(make_async, backend):
    manager = make_async(pool_size=1)
    session_id = manager.sync.create_session(Channel.MAIN, "k")
    release = threading.Event()
    real = manager.sync.get_session
    manager.sync.get_session = lambda *a, **k: (release.wait(30), real(*a, **k))[1]  # type: ignore[method-assign]

    async def main() -> None:
        blocking = asyncio.ensure_future(manager.get_session(session_id))  # holds the one thread
        queued = asyncio.ensure_future(manager.save_message(session_id, "user", "never", message_key="m1"))
        await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await blocking

    asyncio.run(main())
    assert manager.sync.get_messages(session_id) == []


def test_a_cancelled_running_write_commits_whole_and_its_retry_with_the_key_stores_it_once(make_async, backend):
    manager = make_async()
    session_id = manager.sync.create_session(Channel.MAIN, "k")
    started, release = threading.Event(), threading.Event()
    real = manager.sync.save_message

    def slow(*args: Any, **kwargs: Any) -> int:
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    manager.sync.save_message = slow  # type: ignore[method-assign]

    async def main() -> None:
        write = asyncio.ensure_future(manager.save_message(session_id, "user", "hello", message_key="turn-1"))
        while not started.is_set():
            await asyncio.sleep(0.001)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        release.set()
        manager.sync.save_message = real  # type: ignore[method-assign]
        await manager.save_message(session_id, "user", "hello", message_key="turn-1")  # the caller's retry

    asyncio.run(main())
    assert [m.content for m in manager.sync.get_messages(session_id)] == ["hello"]


def test_run_to_completion_lets_a_cancellation_through_only_once_the_write_is_done(make_async, backend):
    """Running or still queued: the call runs to its end before the cancellation is raised."""
    manager = make_async()
    session_id = manager.sync.create_session(Channel.MAIN, "k")
    started, release = threading.Event(), threading.Event()

    def slow_save(sync: SessionManager) -> int:
        started.set()
        release.wait(30)
        return sync.save_message(session_id, "user", "kept")

    async def main() -> None:
        write = asyncio.ensure_future(manager.run_to_completion(slow_save))
        while not started.is_set():
            await asyncio.sleep(0.001)
        write.cancel()
        await asyncio.sleep(0.01)
        assert not write.done()  # still waiting for the write's outcome
        write.cancel()  # a second cancellation changes nothing
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await write
        assert [m.content for m in await manager.get_messages(session_id)] == ["kept"]
        assert await manager.run_to_completion(lambda sync: sync.get_session(session_id)) is not None

    asyncio.run(main())


def test_run_to_completion_runs_a_queued_call_whose_await_was_cancelled(make_async, backend):
    manager = make_async(pool_size=1)
    session_id = manager.sync.create_session(Channel.MAIN, "k")
    release = threading.Event()

    async def main() -> None:
        blocking = asyncio.ensure_future(manager.run_to_completion(lambda sync: release.wait(30)))
        queued = asyncio.ensure_future(
            manager.run_to_completion(lambda sync: sync.save_message(session_id, "user", "queued"))
        )
        await asyncio.sleep(0.01)
        queued.cancel()
        await asyncio.sleep(0.01)
        assert not queued.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await blocking
        assert [m.content for m in await manager.get_messages(session_id)] == ["queued"]

    asyncio.run(main())


def test_anyio_on_its_asyncio_backend_awaits_it_as_it_is(make_async, backend):
    manager = make_async()

    async def main() -> list[str]:
        session_id = await manager.create_session(Channel.MAIN, "k")
        async with anyio.create_task_group() as group:
            for n in range(5):
                group.start_soon(manager.save_message, session_id, "user", str(n))
        return sorted(m.content for m in await manager.get_messages(session_id))

    assert anyio.run(main, backend="asyncio") == ["0", "1", "2", "3", "4"]
