"""Scratch databases per backend and the datasets the workloads run on (bulk-loaded through the driver)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from floors import Floor, MariaFloor, PostgresFloor, SqliteFloor
from harness import MODELS, T0, USERS
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import URL

from starpod_session import SessionManager
from starpod_session._common.search_query import indexed_words
from starpod_session._common.tool_calls import read_tool_use


class Target:
    """Where the databases of one backend live: files in a temp dir, or scratch server databases."""

    def __init__(self, url: URL | None, workdir: Path, *, drop_databases: bool = False) -> None:
        self.base = url
        self.workdir = workdir
        self.drop_databases = drop_databases  # at cleanup; else only their tables are dropped
        self.backend = "sqlite" if url is None else _backend_of(url)
        self._made: list[URL] = []

    def fresh(self, name: str) -> URL:
        """An empty database (no tables) called ``name``."""
        if self.base is None:
            path = self.workdir / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = URL.create("sqlite+pysqlite", database=str(path))
        else:
            url = self.base.set(database=f"{self.base.database}_{name}")
            _create_server_database(self.base, url.database)
            _drop_tables(url)
        self._made.append(url)
        return url

    def floor(self, url: URL) -> Floor:
        return {"sqlite": SqliteFloor, "postgresql": PostgresFloor, "mariadb": MariaFloor}[self.backend](url)

    def cleanup(self) -> None:
        if self.base is not None:
            for url in self._made:
                if self.drop_databases:
                    _drop_server_database(self.base, url.database)
                else:
                    _drop_tables(url)


def _backend_of(url: URL) -> str:
    name = url.get_backend_name()
    return "mariadb" if name in ("mysql", "mariadb") else name


def _create_server_database(base: URL, name: str) -> None:
    admin = create_engine(_admin_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if _backend_of(base) == "postgresql":
                found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
                if found is None:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    finally:
        admin.dispose()


def _drop_server_database(base: URL, name: str) -> None:
    admin = create_engine(_admin_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if _backend_of(base) == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()


def _admin_url(base: URL) -> URL:
    """The server's own database: the one in the URL need not exist."""
    return base.set(database="postgres" if _backend_of(base) == "postgresql" else "mysql")


def _drop_tables(url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            reflected = MetaData()
            reflected.reflect(conn)
            reflected.drop_all(conn)
    finally:
        engine.dispose()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Dataset:
    """What a loaded database holds that the workloads need."""

    url: URL
    sessions: list[str] = field(default_factory=list)
    main_keys: list[str] = field(default_factory=list)  # keys of open main sessions
    with_100: str = ""
    with_10k: str | None = None


SESSION_COLUMNS = (
    "id",
    "created_at",
    "last_message_at",
    "is_closed",
    "summary",
    "message_count",
    "channel",
    "channel_session_key",
    "title",
    "user_id",
    "is_read",
)
MESSAGE_COLUMNS = ("session_id", "role", "content", "timestamp")
USAGE_COLUMNS = (
    "session_id",
    "turn",
    "input_tokens",
    "output_tokens",
    "cache_read",
    "cache_write",
    "cost_usd",
    "model",
    "user_id",
    "timestamp",
)


TOOLS = ("Bash", "Read", "Edit", "MemorySearch", "VaultGet", "WebFetch", "CronList")


def load_tool_calls(floor: Floor, is_bool: bool) -> None:
    """The ``tool_calls`` rows ``save_message`` would have written for the loaded ``tool_use`` messages
    (one in seven failed)."""
    with floor.read() as cur:
        cur.execute("SELECT id, session_id, content, timestamp FROM session_messages WHERE role = 'tool_use'")
        uses = cur.fetchall()
    rows = []
    for n, (message_id, session_id, content, moment) in enumerate(uses):
        use = read_tool_use(content)
        failed = n % 7 == 0
        rows.append(
            (message_id, session_id, "tool_use", use.call_id, use.tool_name, moment, failed if is_bool else int(failed))
        )
    floor.load(
        "tool_calls", ("message_id", "session_id", "role", "call_id", "tool_name", "timestamp", "is_error"), rows
    )


#: MariaDB's search index (migration 0010): a message's words, as ``save_message`` writes them.
WORDS_INSERT = (
    "INSERT INTO session_message_words (word, message_id, hits) VALUES (%s, %s, %s) "
    "ON DUPLICATE KEY UPDATE hits = VALUES(hits)"
)


WORDS_MESSAGE_INDEX = "ix_session_message_words_message_id"
WORDS_FOREIGN_KEY = "fk_session_message_words_message_id_session_messages"


def load_words(target: Target, floor: Floor) -> None:
    """On MariaDB, the ``session_message_words`` rows ``save_message`` would have written for
    the messages loaded since the last call (the other backends index rows themselves)."""
    if target.backend != "mariadb":
        return
    postings: dict[str, list[tuple[int, int]]] = {}
    with floor.read() as cur:
        # Messages loaded since the last call (ids ascend in load order).
        cur.execute(
            "SELECT id, content FROM session_messages "
            "WHERE id > (SELECT COALESCE(MAX(message_id), 0) FROM session_message_words)"
        )
        for message_id, content in cur.fetchall():
            for word, hits in indexed_words(content).items():
                postings.setdefault(word, []).append((message_id, hits))
    # In primary-key order, with the message-id index (and its foreign key) built after
    # the rows: loading it row by row costs a random index write per row.
    with floor.write() as cur:
        cur.execute(f"ALTER TABLE session_message_words DROP FOREIGN KEY {WORDS_FOREIGN_KEY}")
        cur.execute(f"ALTER TABLE session_message_words DROP INDEX {WORDS_MESSAGE_INDEX}")
    batch: list[tuple[str, int, int]] = []
    for word in sorted(postings):
        batch += [(word, message_id, hits) for message_id, hits in sorted(postings[word])]
        if len(batch) >= 100_000:
            floor.load("session_message_words", ("word", "message_id", "hits"), batch)
            batch = []
    if batch:
        floor.load("session_message_words", ("word", "message_id", "hits"), batch)
    with floor.write() as cur:
        cur.execute(f"ALTER TABLE session_message_words ADD INDEX {WORDS_MESSAGE_INDEX} (message_id)")
        cur.execute("SET SESSION foreign_key_checks = 0")  # the rows were just made from session_messages
        cur.execute(
            f"ALTER TABLE session_message_words ADD CONSTRAINT {WORDS_FOREIGN_KEY} FOREIGN KEY (message_id) "
            "REFERENCES session_messages (id) ON DELETE CASCADE"
        )
        cur.execute("SET SESSION foreign_key_checks = 1")
        cur.execute("ANALYZE TABLE session_message_words")
        cur.fetchall()


def load_dataset(
    target: Target, name: str, *, sessions: int, messages: int, usage: int, with_10k: bool, long_messages: int = 10_000
) -> Dataset:
    """A database our manager created, filled through the raw driver.

    ``with_10k``: one session also gets ``long_messages`` messages (10,000 but at the smoke scale).
    """
    url = target.fresh(name)
    SessionManager(url).close()  # our schema, at head
    rng = random.Random(name)
    floor = target.floor(url)
    if isinstance(floor, SqliteFloor):
        floor.conn.execute("PRAGMA cache_size = -500000")  # 500 MB while loading
    is_bool = target.backend != "sqlite"

    data = Dataset(url)
    rows = []
    ids = sorted(_uuid(rng) for _ in range(sessions))  # sorted: the primary key loads in order
    spacing = timedelta(days=360) / max(sessions, 1)
    for n, session_id in enumerate(ids):
        created = T0 + spacing * n
        is_open = n % 10 == 0
        channel = "main" if n % 2 == 0 else "telegram"
        key = f"key-{n}"
        if is_open and channel == "main":
            data.main_keys.append(key)
        rows.append(
            (
                session_id,
                floor.stamp(created),
                floor.stamp(created + timedelta(seconds=rng.randrange(3600))),
                (not is_open) if is_bool else int(not is_open),
                None if is_open else "done",
                10,
                channel,
                key,
                f"Session {n}",
                USERS[n % len(USERS)],
                True if is_bool else 1,
            )
        )
    floor.load("session_metadata", SESSION_COLUMNS, rows)
    data.sessions = ids
    # The 100-message session (and the 10,000-message one) are open main sessions.
    data.with_100 = ids[0]
    data.with_10k = ids[10] if with_10k else None

    fixed = [(data.with_100, 100)] + ([(data.with_10k, long_messages)] if with_10k else [])
    rows = []
    moment = T0
    for session_id, count in fixed:
        for n in range(count):
            moment += timedelta(milliseconds=1500)
            rows.append(
                (session_id, "user" if n % 2 == 0 else "assistant", f"message {n} " + "x" * 150, floor.stamp(moment))
            )
    filler = max(messages - len(rows), 0)
    others = ids[20:] or ids
    for n in range(filler):
        moment += timedelta(seconds=3)
        if n % 10 == 0:  # one message in ten is a tool call, as the crate's agent saves them
            content = f'{{"type":"tool_use","id":"tu_{n}","name":"{TOOLS[n % len(TOOLS)]}","input":{{}}}}'
            rows.append((others[rng.randrange(len(others))], "tool_use", content, floor.stamp(moment)))
        else:
            rows.append(
                (others[rng.randrange(len(others))], "assistant", f"reply {n} " + "y" * 60, floor.stamp(moment))
            )
    floor.load("session_messages", MESSAGE_COLUMNS, rows)
    load_tool_calls(floor, is_bool)
    load_words(target, floor)

    rows = []
    spacing = timedelta(days=360) / max(usage, 1)
    for n in range(usage):
        rows.append(
            (
                ids[rng.randrange(len(ids))],
                n % 40,
                rng.randrange(50_000),
                rng.randrange(5_000),
                rng.randrange(100_000),
                rng.randrange(10_000),
                rng.random() / 10,
                MODELS[n % len(MODELS)],
                USERS[rng.randrange(len(USERS))],
                floor.stamp(T0 + spacing * n),
            )
        )
    floor.load("usage_stats", USAGE_COLUMNS, rows)
    if isinstance(floor, SqliteFloor):
        floor.conn.execute("ANALYZE")
    elif target.backend == "postgresql":
        # VACUUM too: the bulk load updated each usage_daily row (by its trigger) ~25 times in a
        # row, leaving dead versions autovacuum would clear in time; measure that steady state.
        assert isinstance(floor, PostgresFloor)
        floor.writer.autocommit = True
        floor.writer.execute("VACUUM ANALYZE")
        floor.writer.autocommit = False
    floor.close()
    return data
