"""The session lifecycle calls: ``open_session`` (new, existing and stale key), ``create_session``,
``close_session``, ``mark_read``, ``archive_session`` / unarchive and ``record_compaction``.

Each floor is one write transaction on the bare driver (``BEGIN IMMEDIATE`` on
SQLite, READ COMMITTED on the servers) doing what our call does in its one
transaction, statement for statement where the work needs it:

* ``floor_open_session``: ``SELECT id, last_message_at`` of the key's open
  session (through ``open_slot = 1``); if there is one, the telegram gap test on
  its parsed timestamp: fresh → return it (the "existing key" workload: one
  select, no write; ``open_session`` does not touch the session); stale →
  ``UPDATE ... SET is_closed, summary WHERE id = ? AND is_closed = false`` (the
  closed id is reported if one row changed). Then, with no open session left,
  ``INSERT`` the new session (a fresh uuid4, created and last active now, open,
  read, no messages); the unique index ``uq_session_one_open_per_key`` is what
  keeps the key to one open session. Ours additionally selects the key again
  (in ``insert_unless_open``) and its INSERT skips on that index (``ON CONFLICT
  DO NOTHING``; on MariaDB a duplicate-key error it catches), so that a racing
  insert loses without undoing the transaction; the floor has no race to lose
  here, and that race-proofing is part of what the ratio measures.
* ``floor_create_session``: the same select of the key's open session (none, the
  keys are new) and the ``INSERT`` (ours: the select twice, and the skipping insert).
* ``floor_update``: ``close_session`` (``SET is_closed = true, summary = ?``),
  ``mark_read`` (``SET is_read = ?``), ``archive_session`` (``SET is_archived =
  ?``): one ``UPDATE ... WHERE id = ?`` that must match one row, else
  ``SessionNotFound`` (here ``LookupError``). MariaDB connections count matched
  rows (``CLIENT_FOUND_ROWS``), as SQLAlchemy's ours do.
* ``floor_record_compaction``: ``SELECT EXISTS`` of the session (else
  ``LookupError``), ``INSERT`` the ``compaction_log`` row stamped now.

Sessions that a call consumes (a new key, a stale key, a session to close) are
made beforehand, outside the timing: the stale ones are bulk-loaded open on
telegram keys with ``last_message_at`` seven hours back (the gap is six), one per
call and side, so every timed call closes one and opens its successor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from floors import Floor
from harness import AUTO_CLOSE, TELEGRAM_GAP, UTC, Report, Scale, interleaved

from starpod_session import Channel, SessionManager

#: The issue's target for every per-call workload: at most twice the floor.
LIMIT = 2.0
#: interleaved() warms each side up with the calls numbered ``calls .. calls + WARMUP - 1``.
WARMUP = 3

_FIND_OPEN = (
    "SELECT id, last_message_at FROM session_metadata WHERE channel = ? "
    "AND channel_session_key = ? AND user_id = ? AND open_slot = 1"
)
_INSERT = (
    "INSERT INTO session_metadata (id, created_at, last_message_at, is_closed, message_count, channel, "
    "channel_session_key, user_id, is_read, triggered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert_session(floor: Floor, cur: Any, channel: str, key: str, user_id: str) -> str:
    session_id = str(uuid.uuid4())
    now = floor.stamp(datetime.now(UTC))
    cur.execute(floor.sql(_INSERT), (session_id, now, now, False, 0, channel, key, user_id, True, None))
    return session_id


def _find_open(floor: Floor, cur: Any, channel: str, key: str, user_id: str) -> Any:
    """The key's open session (id, last_message_at) or None; on PostgreSQL unprepared, planned per run,
    as ours runs it (``Prepared(..., replan=True)``: a generic plan can stick to the wrong index)."""
    if floor.backend == "postgresql":
        cur.execute(floor.sql(_FIND_OPEN), (channel, key, user_id), prepare=False)
    else:
        cur.execute(floor.sql(_FIND_OPEN), (channel, key, user_id))
    return cur.fetchone()


def floor_open_session(floor: Floor, channel: str, key: str, user_id: str = "admin") -> tuple[str, str | None, bool]:
    """(session id, id of the stale session closed here, whether it was created), as ``OpenedSession``."""
    closed = None
    with floor.write() as cur:
        row = _find_open(floor, cur, channel, key, user_id)
        if row is not None:
            if not (channel == "telegram" and datetime.now(UTC) - floor.parse(row[1]) >= TELEGRAM_GAP):
                return row[0], None, False
            cur.execute(
                floor.sql("UPDATE session_metadata SET is_closed = ?, summary = ? WHERE id = ? AND is_closed = ?"),
                (True, AUTO_CLOSE, row[0], False),
            )
            closed = row[0] if cur.rowcount == 1 else None
        return _insert_session(floor, cur, channel, key, user_id), closed, True


def floor_create_session(floor: Floor, channel: str, key: str, user_id: str = "admin") -> str:
    """The key's open session if it has one, else a new one."""
    with floor.write() as cur:
        row = _find_open(floor, cur, channel, key, user_id)
        return row[0] if row is not None else _insert_session(floor, cur, channel, key, user_id)


def floor_update(floor: Floor, assignments: str, values: tuple, session_id: str) -> None:
    """``UPDATE session_metadata SET <assignments> WHERE id = ?``; one row matched or LookupError."""
    with floor.write() as cur:
        cur.execute(floor.sql(f"UPDATE session_metadata SET {assignments} WHERE id = ?"), (*values, session_id))
        if cur.rowcount != 1:
            raise LookupError(session_id)


def floor_record_compaction(
    floor: Floor, session_id: str, trigger: str, pre_tokens: int, summary: str, messages_compacted: int
) -> None:
    trigger_column = "`trigger`" if floor.backend == "mariadb" else '"trigger"'
    with floor.write() as cur:
        cur.execute(floor.sql("SELECT EXISTS (SELECT * FROM session_metadata WHERE id = ?)"), (session_id,))
        if not cur.fetchone()[0]:
            raise LookupError(session_id)
        cur.execute(
            floor.sql(
                f"INSERT INTO compaction_log (session_id, timestamp, {trigger_column}, pre_tokens, summary, "
                "messages_compacted) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (session_id, floor.stamp(datetime.now(UTC)), trigger, pre_tokens, summary, messages_compacted),
        )


def _load_open_sessions(floor: Floor, channel: str, keys: list[str], last_message_at: datetime) -> list[str]:
    """Open sessions on ``keys`` (one each), bulk-loaded; their ids in key order."""
    ids = [str(uuid.uuid4()) for _ in keys]
    created = floor.stamp(last_message_at - timedelta(minutes=5))
    last = floor.stamp(last_message_at)
    floor.load(
        "session_metadata",
        (
            "id",
            "created_at",
            "last_message_at",
            "is_closed",
            "message_count",
            "channel",
            "channel_session_key",
            "user_id",
            "is_read",
        ),
        [
            (session_id, created, last, False, 1, channel, key, "admin", True)
            for session_id, key in zip(ids, keys, strict=True)
        ],
    )
    return ids


def measure(mgr: SessionManager, floor: Floor, scale: Scale, report: Report) -> None:
    calls = scale.session_calls
    per_call = calls + WARMUP  # one consumed session (or key) per call, warm-up calls included

    def compare(label: str, ours: Callable[[int], object], theirs: Callable[[int], object]) -> None:
        report.compare(label, *interleaved(calls, ours, theirs, warmup=WARMUP), limit=LIMIT)

    # open_session on a new key: resolve finds nothing, the session is inserted.
    opened: dict[str, list[Any]] = {"ours": [], "floor": []}
    compare(
        "open_session (new key)",
        lambda n: opened["ours"].append(mgr.open_session(Channel.TELEGRAM, f"new-ours-{n}")),
        lambda n: opened["floor"].append(floor_open_session(floor, "telegram", f"new-floor-{n}")),
    )
    assert all(o.created and o.closed_session_id is None for o in opened["ours"])
    assert all(created and closed is None for _id, closed, created in opened["floor"])

    # open_session on an existing key: the open session continues.
    hot_ours = mgr.open_session(Channel.TELEGRAM, "open-hot-ours").session_id
    hot_floor = mgr.open_session(Channel.TELEGRAM, "open-hot-floor").session_id
    compare(
        "open_session (existing key)",
        lambda _n: mgr.open_session(Channel.TELEGRAM, "open-hot-ours"),
        lambda _n: floor_open_session(floor, "telegram", "open-hot-floor"),
    )
    assert mgr.open_session(Channel.TELEGRAM, "open-hot-ours").session_id == hot_ours
    assert floor_open_session(floor, "telegram", "open-hot-floor")[0] == hot_floor

    # open_session on a stale key: the stale session is closed and replaced in the call.
    seven_hours_ago = datetime.now(UTC) - TELEGRAM_GAP - timedelta(hours=1)
    stale = {
        side: _load_open_sessions(floor, "telegram", [f"stale-{side}-{n}" for n in range(per_call)], seven_hours_ago)
        for side in ("ours", "floor")
    }
    replaced: dict[str, list[Any]] = {"ours": [], "floor": []}
    compare(
        "open_session (stale key)",
        lambda n: replaced["ours"].append((n, mgr.open_session(Channel.TELEGRAM, f"stale-ours-{n}"))),
        lambda n: replaced["floor"].append((n, floor_open_session(floor, "telegram", f"stale-floor-{n}"))),
    )
    assert all(o.created and o.closed_session_id == stale["ours"][n] for n, o in replaced["ours"])
    assert all(created and closed == stale["floor"][n] for n, (_id, closed, created) in replaced["floor"])

    # create_session on a new key.
    compare(
        "create_session",
        lambda n: mgr.create_session(Channel.MAIN, f"create-ours-{n}"),
        lambda n: floor_create_session(floor, "main", f"create-floor-{n}"),
    )

    # close_session of an open session (one per call).
    now = datetime.now(UTC)
    to_close = {
        side: _load_open_sessions(floor, "main", [f"close-{side}-{n}" for n in range(per_call)], now)
        for side in ("ours", "floor")
    }
    compare(
        "close_session",
        lambda n: mgr.close_session(to_close["ours"][n], "Done for today."),
        lambda n: floor_update(floor, "is_closed = ?, summary = ?", (True, "Done for today."), to_close["floor"][n]),
    )
    assert mgr.get_session(to_close["ours"][0]).is_closed and mgr.get_session(to_close["floor"][0]).is_closed

    # mark_read and archive_session on one session each, alternating the flag (unread/read,
    # archive/unarchive), and record_compaction.
    ours_id = mgr.create_session(Channel.MAIN, "flags-ours")
    floor_id = mgr.create_session(Channel.MAIN, "flags-floor")
    compare(
        "mark_read (unread/read)",
        lambda n: mgr.mark_read(ours_id, n % 2 == 1),
        lambda n: floor_update(floor, "is_read = ?", (n % 2 == 1,), floor_id),
    )
    compare(
        "archive_session (archive/unarchive)",
        lambda n: mgr.archive_session(ours_id, n % 2 == 0),
        lambda n: floor_update(floor, "is_archived = ?", (n % 2 == 0,), floor_id),
    )
    summary = "The user asked for a deployment plan; we settled on a blue-green rollout. " * 3
    compare(
        "record_compaction",
        lambda n: mgr.record_compaction(ours_id, "auto", 150_000 + n, summary, 40),
        lambda n: floor_record_compaction(floor, floor_id, "auto", 150_000 + n, summary, 40),
    )
