"""``AsyncSessionManager``: the awaitable facade, each call a :class:`SessionManager` call on a bounded pool of threads.

There is one implementation of each call: every method here hands the
synchronous method of the same name, with the same arguments, to a pool of
threads of the manager's own (:class:`_Workers`: at most as many threads as the
manager's pool holds connections, so a thread never waits for a connection
another thread of ours holds idle), and awaits a future of its own event loop,
which the thread settles. So the event loop never runs a statement, nor waits for
a lock, a connection or a retry's back-off; and a manager serves several event
loops (one per thread, say) at once. ``tests/api/test_async_manager.py`` checks
that this class has exactly the public methods of :class:`SessionManager`, with
the same parameters.

Cancellation: an await that is cancelled while its call waits in the pool's
queue removes the call, which never runs; once a thread runs it, the call runs
to its end (one transaction: committed whole or rolled back whole; never half
done) and its result is dropped. So a cancelled write may still have committed:
retry it with the same idempotency key (``message_key``, ``usage_key``) to store
it exactly once.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy.engine import URL

from .backends.deadlines import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from .backends.engine import DEFAULT_LOCK_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_SQLITE_CACHE_MIB, Database
from .channels import Channel, ChannelResolver
from .config import AgentConfig
from .errors import StarpodSessionError
from .features.base import CloseCallback
from .features.lifecycle import PRUNE_BATCH
from .manager import SessionManager
from .records import (
    CostOverview,
    Erasure,
    OpenedSession,
    SearchHit,
    SessionDecision,
    SessionMessage,
    SessionMeta,
    UsageRecord,
    UsageSummary,
)
from .retry import RetryPolicy
from .storage.replicas import ReadUrl

if TYPE_CHECKING:  # the tracing extra; never imported at run time by us
    from opentelemetry.trace import TracerProvider

__all__ = ["AsyncSessionManager"]

T = TypeVar("T")
P = ParamSpec("P")


class _Call:
    """One call handed to the workers: what to run, and the future of the loop that awaits it."""

    __slots__ = ("args", "function", "kwargs", "loop", "state", "waiter")

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Any],
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.waiter = waiter
        self.state = _QUEUED

    def run(self) -> tuple[Any, bool]:
        """Run the call (on a worker thread); its outcome, and whether that is an exception."""
        try:
            outcome, failed = self.function(*self.args, **self.kwargs), False
        except BaseException as error:  # handed to the awaiting task, as a thread pool does
            outcome, failed = error, True
        self.function = self.args = self.kwargs = None  # type: ignore[assignment]  # nothing kept alive
        return outcome, failed

    def hand_over(self, outcome: Any, failed: bool) -> None:
        """Send the outcome to the call's loop (from the worker thread)."""
        try:  # noqa: SIM105 - contextlib.suppress, a context manager, costs each hop a microsecond
            self.loop.call_soon_threadsafe(self.settle, outcome, failed)
        except RuntimeError:  # the loop was closed meanwhile: nobody awaits
            pass

    def settle(self, outcome: Any, failed: bool) -> None:
        """On the loop's thread: the call is done; its outcome goes to :attr:`waiter`, unless that was cancelled."""
        self.state = _DONE
        waiter = self.waiter
        if waiter.done():
            return
        if failed:
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


#: A call's states: waiting for a thread, taken by one, dropped by a cancellation before it was taken, done
#: (set on the loop's thread, where its outcome arrives).
_QUEUED, _TAKEN, _DROPPED, _DONE = 0, 1, 2, 3


class _Worker:
    """One thread of :class:`_Workers`, woken by a lock of its own (released when it is handed a call)."""

    __slots__ = ("call", "thread", "wake")

    def __init__(self) -> None:
        self.call: _Call | None = None
        self.wake = threading.Lock()
        self.wake.acquire()
        self.thread: threading.Thread | None = None


class _Workers:
    """At most ``size`` threads running calls, the most recently idle one taking the next call.

    ``ThreadPoolExecutor`` wakes whichever of its threads has waited longest, so
    consecutive calls rotate through threads with cold caches, and each call
    goes through a ``concurrent.futures.Future`` chained to the loop's future.
    Here idle threads form a stack, each waiting on a lock of its own: a call
    goes to the thread that finished last (warm caches), a thread is started
    only when none is idle (up to ``size``), and a call waits in a queue only
    when all ``size`` are busy. A thread settles the awaiting future with one
    ``call_soon_threadsafe``. A call still queued when its await is cancelled
    is dropped (never runs); one taken by a thread runs to its end.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last one idle is woken first
        self._queue: collections.deque[_Call] = collections.deque()
        self._workers: list[_Worker] = []
        self._closed = False

    def submit(self, call: _Call) -> None:
        """Hand ``call`` to an idle thread, a new one, or the queue; ``RuntimeError`` once shut down."""
        with self._lock:
            if self._closed:
                raise RuntimeError("shut down")
            if self._idle:
                worker = self._idle.pop()
                call.state = _TAKEN
                worker.call = call
                worker.wake.release()
                return
            if len(self._workers) >= self._size:
                self._queue.append(call)
                return
            call.state = _TAKEN
            worker = _Worker()
            worker.call = call
            worker.wake.release()
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"{self._name}-{len(self._workers)}", daemon=True
            )
            self._workers.append(worker)
        worker.thread.start()

    def start(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
        """Submit ``function(*args, **kwargs)`` for the running loop; the call, its future not yet awaited."""
        loop = asyncio.get_running_loop()
        call = _Call(function, args, kwargs, loop, loop.create_future())
        self.submit(call)
        return call

    def drop(self, call: _Call) -> bool:
        """Drop ``call`` if no thread has taken it yet (it will never run); whether it was dropped."""
        with self._lock:
            if call.state != _QUEUED:
                return False
            call.state = _DROPPED
            self._queue.remove(call)
            return True

    def _work(self, worker: _Worker) -> None:
        call = None
        while True:
            if call is None:
                worker.wake.acquire()
                call, worker.call = worker.call, None
                if call is None:  # shut down
                    return
            outcome, failed = call.run()
            # The next call is found before the outcome is sent: the awaiting loop wakes up
            # to find this thread asleep (idle) or busy, not holding the GIL it needs.
            done, call = call, None
            with self._lock:
                if self._queue:
                    call = self._queue.popleft()
                    call.state = _TAKEN
                elif self._closed:
                    done.hand_over(outcome, failed)
                    return
                else:
                    self._idle.append(worker)
            done.hand_over(outcome, failed)

    def shutdown(self) -> None:
        """Refuse new calls, let the queued and running ones finish, and wait for every thread to end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            workers = list(self._workers)
        for worker in idle:
            worker.call = None
            worker.wake.release()
        for worker in workers:
            if worker.thread is not None and worker.thread is not threading.current_thread():
                worker.thread.join()


#: Every pool not yet shut down: at exit each lets its queued and running calls finish (its threads are
#: daemons, so an idle one never holds the interpreter up).
_LIVE_WORKERS: weakref.WeakSet[_Workers] = weakref.WeakSet()


@atexit.register
def _shut_down_at_exit() -> None:
    for workers in list(_LIVE_WORKERS):
        workers.shutdown()


async def _to_completion(job: _Call) -> Any:
    """``job``'s outcome, awaited to its end: a cancellation is raised once the call is done, its outcome dropped."""
    try:
        return await job.waiter
    except asyncio.CancelledError:
        # The outcome arrives on this loop's thread (_Call.settle), so until it has, a fresh
        # future put in place of the cancelled one receives it; further cancellations wait too.
        loop = asyncio.get_running_loop()
        while job.state != _DONE:
            job.waiter = loop.create_future()
            with contextlib.suppress(BaseException):  # a further cancellation, or the outcome: dropped
                await job.waiter
        raise


class ThreadsToCompletion:
    """At most ``size`` threads of the async facade's own kind, each call awaited to its end.

    For a sibling facade over a :class:`SessionManager` (the ADK service): its calls
    run as :meth:`AsyncSessionManager.run_to_completion` runs them, on threads that
    belong to it. Not part of the public API.
    """

    def __init__(self, size: int, name: str) -> None:
        self._workers = _Workers(size, name)
        _LIVE_WORKERS.add(self._workers)

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on these threads, to its end even if the await is cancelled; ``RuntimeError`` once shut down."""
        return await _to_completion(self._workers.start(call, (), {}))  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        """Refuse new calls, let the queued and running ones finish, and wait for every thread to end."""
        self._workers.shutdown()
        _LIVE_WORKERS.discard(self._workers)


class AsyncSessionManager:
    """The awaitable :class:`SessionManager`: the same constructor and the same methods, each a coroutine.

    ``AsyncSessionManager(...)`` takes exactly the arguments of
    :class:`SessionManager` and opens one (synchronously: opening checks or
    upgrades the schema, so create it at start-up, not inside a request). Each
    call runs the synchronous method on a pool of ``pool_size`` threads that
    belongs to this manager (never the event loop's default executor), so no
    call blocks the event loop, and one manager may be awaited from several
    event loops and threads at once. It works under asyncio, and under anyio on
    its asyncio backend.

    Use it as ``async with AsyncSessionManager(path) as manager:`` or call
    :meth:`aclose` (or :meth:`close`, the same coroutine): both wait for the calls
    under way, then release every connection; closing again does nothing, and a
    call after the close raises :class:`StarpodSessionError`.

    Cancelling an await never leaves a half-done call: a call still queued never
    runs; a call already running finishes in its thread (committing or rolling
    back its one transaction) and its result is dropped. A cancelled write may
    therefore have committed: retry it with the same idempotency key
    (``message_key``, ``usage_key``) and it is stored once. See the Async guide
    (docs/guides/async.md).

    :attr:`sync` is the underlying :class:`SessionManager`, for code that is not async.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | URL | Database,
        sessions_dir: str | os.PathLike[str] | None = None,
        *,
        auto_upgrade: bool = True,
        sqlite_synchronous: str = "NORMAL",
        sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
        config: AgentConfig | str | os.PathLike[str] | None = None,
        channels: dict[str, ChannelResolver] | None = None,
        retry: RetryPolicy | None = None,
        on_close: CloseCallback | None = None,
        tracer_provider: TracerProvider | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        fast_path: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT,
        read_url: ReadUrl | Sequence[ReadUrl] | None = None,
    ) -> None:
        #: The :class:`SessionManager` every call runs on.
        self.sync = SessionManager(
            db_path,
            sessions_dir,
            auto_upgrade=auto_upgrade,
            sqlite_synchronous=sqlite_synchronous,
            sqlite_cache_mib=sqlite_cache_mib,
            config=config,
            channels=channels,
            retry=retry,
            on_close=on_close,
            tracer_provider=tracer_provider,
            lock_timeout=lock_timeout,
            pool_size=pool_size,  # checked by SessionManager before the pool below is made
            fast_path=fast_path,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            read_url=read_url,
        )
        # One thread per pooled connection: more would only wait for a connection.
        self._workers = _Workers(pool_size, "starpod-session")
        _LIVE_WORKERS.add(self._workers)
        self._close_lock = threading.Lock()
        self._closed: Future[None] | None = None

    # -- running a call --------------------------------------------------

    def _submit(self, function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
        """Hand ``function(*args, **kwargs)`` to this manager's threads; the call, its future not yet awaited."""
        try:
            return self._workers.start(function, args, kwargs)
        except RuntimeError:  # shut down
            raise StarpodSessionError(f"{self!r} is closed") from None

    async def _call(self, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``method(*args, **kwargs)`` on this manager's threads and await its result."""
        call = self._submit(method, args, kwargs)
        try:
            return await call.waiter  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            # A queued call is dropped; a running one cannot be and runs to its end (see the module's docstring).
            self._workers.drop(call)
            raise

    async def run_to_completion(self, call: Callable[[SessionManager], T]) -> T:
        """Run ``call(self.sync)`` on this manager's threads to its end, even if the await is cancelled.

        For a caller that must know whether a write happened before it lets a
        cancellation through (the OpenAI Agents SDK's sessions promise it): once
        submitted, the call runs and finishes whatever happens to the await (queued
        or running alike); a cancellation is raised when it is done, its result or
        error then dropped. Without a cancellation it returns ``call``'s result at
        the cost of an ordinary call (no task of its own).
        """
        return await _to_completion(self._submit(call, (self.sync,), {}))  # type: ignore[no-any-return]

    # -- lifecycle -------------------------------------------------------

    @property
    def target(self) -> str:
        """The database, as a path for SQLite or a URL with the password hidden."""
        return self.sync.target

    @property
    def config(self) -> AgentConfig:
        """The agent configuration in force (channels from ``agent.toml``)."""
        return self.sync.config

    @property
    def sessions_dir(self) -> Path | None:
        """Where :meth:`export_transcript` writes transcripts (``None``: not given)."""
        return self.sync.sessions_dir

    async def aclose(self) -> None:
        """Refuse new calls, wait for those under way, then release every connection.

        Closing again (from any loop or thread) waits for the first close and does
        nothing more. The waiting happens on a thread of its own: the event loop
        keeps running, and cancelling this await does not stop the close.
        """
        with self._close_lock:
            closing = self._closed
            if closing is None:
                closing = self._closed = Future()
                threading.Thread(target=self._close_now, args=(closing,), name="starpod-session-close").start()
        await asyncio.shield(asyncio.wrap_future(closing))

    def _close_now(self, closing: Future[None]) -> None:
        """The close itself: the queued and running calls finish, then the manager closes."""
        try:
            self._workers.shutdown()
            _LIVE_WORKERS.discard(self._workers)
            self.sync.close()
        except BaseException as error:  # handed to every awaiting closer
            closing.set_exception(error)
        else:
            closing.set_result(None)

    async def close(self) -> None:
        """The same as :meth:`aclose` (the name :meth:`SessionManager.close` has)."""
        await self.aclose()

    async def __aenter__(self) -> AsyncSessionManager:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncSessionManager({self.target!r})"

    # -- sessions --------------------------------------------------------

    async def resolve_session(
        self,
        channel: Channel | str,
        key: str,
        gap_minutes: int | None = None,
        *,
        user_id: str = "admin",
    ) -> SessionDecision:
        """Awaitable :meth:`SessionManager.resolve_session`."""
        return await self._call(self.sync.resolve_session, channel, key, gap_minutes, user_id=user_id)

    async def open_session(
        self,
        channel: Channel | str,
        key: str,
        gap_minutes: int | None = None,
        *,
        user_id: str = "admin",
        triggered_by: str | None = None,
    ) -> OpenedSession:
        """Awaitable :meth:`SessionManager.open_session`."""
        return await self._call(
            self.sync.open_session, channel, key, gap_minutes, user_id=user_id, triggered_by=triggered_by
        )

    async def create_session(
        self,
        channel: Channel | str,
        key: str,
        *,
        user_id: str = "admin",
        triggered_by: str | None = None,
    ) -> str:
        """Awaitable :meth:`SessionManager.create_session`."""
        return await self._call(self.sync.create_session, channel, key, user_id=user_id, triggered_by=triggered_by)

    async def touch_session(self, session_id: str) -> None:
        """Awaitable :meth:`SessionManager.touch_session`."""
        await self._call(self.sync.touch_session, session_id)

    async def set_title_if_empty(self, session_id: str, title: str) -> None:
        """Awaitable :meth:`SessionManager.set_title_if_empty`."""
        await self._call(self.sync.set_title_if_empty, session_id, title)

    async def close_session(self, session_id: str, summary: str) -> None:
        """Awaitable :meth:`SessionManager.close_session`."""
        await self._call(self.sync.close_session, session_id, summary)

    async def mark_read(self, session_id: str, is_read: bool) -> None:
        """Awaitable :meth:`SessionManager.mark_read`."""
        await self._call(self.sync.mark_read, session_id, is_read)

    async def archive_session(self, session_id: str, archived: bool = True) -> None:
        """Awaitable :meth:`SessionManager.archive_session`."""
        await self._call(self.sync.archive_session, session_id, archived)

    async def get_session(self, session_id: str) -> SessionMeta | None:
        """Awaitable :meth:`SessionManager.get_session`."""
        return await self._call(self.sync.get_session, session_id)

    async def find_open_session(self, channel: Channel | str, key: str, *, user_id: str = "admin") -> str | None:
        """Awaitable :meth:`SessionManager.find_open_session`."""
        return await self._call(self.sync.find_open_session, channel, key, user_id=user_id)

    async def session_ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Awaitable :meth:`SessionManager.session_ids_starting_with`."""
        return await self._call(self.sync.session_ids_starting_with, prefix, limit)

    async def list_sessions(
        self,
        limit: int,
        *,
        user_id: str | None = None,
        channel: Channel | str | None = None,
        is_closed: bool | None = None,
        is_read: bool | None = None,
        archived: bool | None = False,
    ) -> list[SessionMeta]:
        """Awaitable :meth:`SessionManager.list_sessions`."""
        return await self._call(
            self.sync.list_sessions,
            limit,
            user_id=user_id,
            channel=channel,
            is_closed=is_closed,
            is_read=is_read,
            archived=archived,
        )

    # -- messages --------------------------------------------------------

    async def save_message(self, session_id: str, role: str, content: str, *, message_key: str | None = None) -> int:
        """Awaitable :meth:`SessionManager.save_message`."""
        return await self._call(self.sync.save_message, session_id, role, content, message_key=message_key)

    async def save_messages(self, session_id: str, messages: Iterable[tuple[str, str]]) -> list[int]:
        """Awaitable :meth:`SessionManager.save_messages`."""
        return await self._call(self.sync.save_messages, session_id, messages)

    async def pop_message(self, session_id: str) -> SessionMessage | None:
        """Awaitable :meth:`SessionManager.pop_message`."""
        return await self._call(self.sync.pop_message, session_id)

    async def clear_messages(self, session_id: str) -> int:
        """Awaitable :meth:`SessionManager.clear_messages`."""
        return await self._call(self.sync.clear_messages, session_id)

    async def get_messages(
        self, session_id: str, limit: int | None = None, before_id: int | None = None
    ) -> list[SessionMessage]:
        """Awaitable :meth:`SessionManager.get_messages`."""
        return await self._call(self.sync.get_messages, session_id, limit, before_id)

    async def get_message_contents(self, session_id: str, limit: int | None = None) -> list[tuple[str, str]]:
        """Awaitable :meth:`SessionManager.get_message_contents`."""
        return await self._call(self.sync.get_message_contents, session_id, limit)

    async def export_transcript(self, session_id: str) -> Path:
        """Awaitable :meth:`SessionManager.export_transcript`."""
        return await self._call(self.sync.export_transcript, session_id)

    # -- usage and compactions ---------------------------------------------

    async def record_usage(
        self, session_id: str, usage_record: UsageRecord, turn: int, *, usage_key: str | None = None
    ) -> None:
        """Awaitable :meth:`SessionManager.record_usage`."""
        await self._call(self.sync.record_usage, session_id, usage_record, turn, usage_key=usage_key)

    async def session_usage(self, session_id: str) -> UsageSummary:
        """Awaitable :meth:`SessionManager.session_usage`."""
        return await self._call(self.sync.session_usage, session_id)

    async def cost_overview(
        self, since: str | datetime | None = None, until: str | datetime | None = None
    ) -> CostOverview:
        """Awaitable :meth:`SessionManager.cost_overview`."""
        return await self._call(self.sync.cost_overview, since, until)

    async def record_compaction(
        self,
        session_id: str,
        trigger: str,
        pre_tokens: int,
        summary: str,
        messages_compacted: int,
    ) -> None:
        """Awaitable :meth:`SessionManager.record_compaction`."""
        await self._call(self.sync.record_compaction, session_id, trigger, pre_tokens, summary, messages_compacted)

    # -- search and data lifecycle --------------------------------------------

    async def search_messages(
        self,
        query: str,
        *,
        limit: int = 20,
        user_id: str | None = None,
        channel: Channel | str | None = None,
        session_id: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        roles: Iterable[str] | None = None,
        cursor: str | None = None,
    ) -> list[SearchHit]:
        """Awaitable :meth:`SessionManager.search_messages`."""
        return await self._call(
            self.sync.search_messages,
            query,
            limit=limit,
            user_id=user_id,
            channel=channel,
            session_id=session_id,
            since=since,
            until=until,
            roles=roles,
            cursor=cursor,
        )

    async def delete_session(self, session_id: str, *, keep_usage: bool = True, dry_run: bool = False) -> Erasure:
        """Awaitable :meth:`SessionManager.delete_session`."""
        return await self._call(self.sync.delete_session, session_id, keep_usage=keep_usage, dry_run=dry_run)

    async def forget_user(self, user_id: str, *, dry_run: bool = False) -> Erasure:
        """Awaitable :meth:`SessionManager.forget_user`."""
        return await self._call(self.sync.forget_user, user_id, dry_run=dry_run)

    async def prune(
        self,
        older_than: timedelta | datetime,
        *,
        dry_run: bool = False,
        keep_usage: bool = True,
        batch_size: int = PRUNE_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> Erasure:
        """Awaitable :meth:`SessionManager.prune` (``progress`` is called on the manager's thread)."""
        return await self._call(
            self.sync.prune,
            older_than,
            dry_run=dry_run,
            keep_usage=keep_usage,
            batch_size=batch_size,
            progress=progress,
        )
