"""Private database servers for the fault tests: started in temporary folders on free ports, always cleaned up.

Each server runs in a process group of its own (``start_new_session``), and only
those groups are ever signalled: the servers CI shares (5432, 3306) are never
touched. Tests run as root, so PostgreSQL runs as the ``postgres`` user and
MariaDB as ``mysql``, each in folders that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

PG_BIN = Path("/usr/lib/postgresql/15/bin")
GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"

#: Ports the shared servers use: never handed out, never signalled.
SHARED_PORTS = frozenset({5432, 3306})


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def postgres_missing() -> str | None:
    """Why a private PostgreSQL pair cannot run here, or ``None``."""
    needed = [PG_BIN / name for name in ("initdb", "postgres", "pg_basebackup")]
    absent = [str(path) for path in needed if not path.exists()]
    if absent:
        return f"needs PostgreSQL 15's binaries ({', '.join(absent)} missing)"
    if os.geteuid() != 0 or not _user_exists("postgres"):
        return "needs to run as root with a `postgres` user (the servers run as that user)"
    return None


def mariadb_missing() -> str | None:
    """Why a private MariaDB server cannot run here, or ``None``."""
    absent = [path for path in (MARIADBD, MARIADB_INSTALL_DB) if not Path(path).exists()]
    if absent:
        return f"needs MariaDB's server ({', '.join(absent)} missing)"
    if os.geteuid() != 0 or not _user_exists("mysql"):
        return "needs to run as root with a `mysql` user (the servers run as that user)"
    return None


def galera_missing() -> str | None:
    """Why a private Galera cluster cannot run here, or ``None``."""
    absent = [str(GALERA_PROVIDER)] if not GALERA_PROVIDER.exists() else []
    if not shutil.which("rsync") or not shutil.which("wsrep_sst_rsync"):
        absent.append("rsync and wsrep_sst_rsync")
    if absent:
        return f"needs MariaDB with Galera 4 ({', '.join(absent)} missing)"
    return mariadb_missing()


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick), never a shared server's."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} not ready within {timeout:g} s\n{tail}")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """One server process, the leader of its own process group; signals go to that group only."""

    def __init__(self, name: str, argv: list[str], *, user: str, log: Path, port: int) -> None:
        assert port not in SHARED_PORTS
        self.name = name
        self.argv = argv
        self.user = user
        self.log = log
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (its own session and process group)."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                user=self.user,
                group=pwd.getpwnam(self.user).pw_gid,
                extra_groups=[],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this server's process group and to every process it started.

        PostgreSQL's backends call ``setsid()``: they leave the postmaster's process
        group, so they are found as its descendants (``/proc``), never by name.
        """
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """``kill -9`` the whole process group (a crash), and reap it."""
        if self.process is None:
            return
        self.signal(signal.SIGKILL)
        self.signal(signal.SIGCONT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def hang(self) -> None:
        """SIGSTOP the process group: the server keeps its sockets but answers nothing."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 20, signum: int = 15) -> None:  # SIGTERM
        """Stop gracefully (``signum`` to the server process, then SIGKILL to the group after ``timeout``)."""
        if not self.running:
            self.kill()  # a stopped group: make sure nothing is left
            return
        assert self.process is not None
        self.signal(signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self.kill()


def _descendants(root: int) -> list[int]:
    """The processes ``root`` started, and theirs (read from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _run_as(user: str, argv: list[str], log: Path, timeout: float = 120) -> None:
    with open(log, "ab") as out:
        subprocess.run(
            argv,
            user=user,
            group=pwd.getpwnam(user).pw_gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=timeout,
            start_new_session=True,
            cwd="/",
        )


# -- PostgreSQL: one server; a primary and a synchronous standby ---------------------


def _initdb(data: Path, folder: Path, log: Path, settings: str = "") -> None:
    """An empty data directory ``data`` for a server on loopback (its socket in ``folder``), plus ``settings``."""
    _run_as(
        "postgres",
        [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        log,
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            "\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{folder}'\n"
            "shared_buffers = 16MB\nfsync = off\nmax_connections = 60\n" + settings
        )


def _postgres_sql(port: int, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True, connect_timeout=5
    ) as connection:
        cursor = connection.execute(statement)
        return list(cursor.fetchall()) if cursor.description else []


class PostgresServer:
    """One PostgreSQL 15 server on loopback (trust authentication: any password is accepted)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.data = folder / "data"
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        self.server = Server("postgres", argv, user="postgres", log=folder / "postgres.log", port=self.port)

    def url(self, database: str, password: str) -> str:
        return f"postgresql+psycopg://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _initdb(self.data, self.folder, self.folder / "setup.log")
        self.server.start()
        _wait(lambda: _accepts(self.port), 30, "PostgreSQL", self.server.log)

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        """Run one statement (autocommit), its rows."""
        return _postgres_sql(self.port, statement)

    def stop(self) -> None:
        self.server.stop(signum=signal.SIGINT)  # fast shutdown


class PostgresPair:
    """A PostgreSQL 15 primary and a synchronous standby (``pg_basebackup -R``) on loopback."""

    STANDBY_NAME = "standby1"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.primary_port = free_port()
        self.standby_port = free_port()
        self.primary_dir = folder / "primary"
        self.standby_dir = folder / "standby"
        self.primary = self._server("primary", self.primary_dir, self.primary_port)
        self.standby = self._server("standby", self.standby_dir, self.standby_port)

    def _server(self, name: str, data: Path, port: int) -> Server:
        argv = [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port)]
        return Server(name, argv, user="postgres", log=self.folder / f"{name}.log", port=port)

    def url(self, *ports: int, attrs: str = "read-write", database: str = "postgres") -> str:
        """A libpq multi-host URL over ``ports`` (primary, standby by default)."""
        ports = ports or (self.primary_port, self.standby_port)
        hosts = "&".join(f"host=127.0.0.1:{port}" for port in ports)
        return f"postgresql+psycopg://postgres@/{database}?{hosts}&target_session_attrs={attrs}"

    def comma_url(self, database: str = "postgres") -> str:
        """The other multi-host form: comma lists of hosts and ports."""
        ports = f"{self.primary_port},{self.standby_port}"
        return f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1,127.0.0.1&port={ports}&target_session_attrs=read-write"

    def single_url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    def start(self) -> None:
        log = self.folder / "setup.log"
        _initdb(
            self.primary_dir,
            self.folder,
            log,
            "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
            f"synchronous_standby_names = '{self.STANDBY_NAME}'\nwal_keep_size = 64MB\n",
        )
        self.primary.start()
        _wait(lambda: _accepts(self.primary_port), 30, "PostgreSQL primary", self.primary.log)
        _run_as(
            "postgres",
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary_port),
                "-U",
                "postgres",
                "-D",
                str(self.standby_dir),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
            log,
        )
        with open(self.standby_dir / "postgresql.auto.conf", "a") as conf:
            # Its own synchronous_standby_names blanked: once promoted, it must not wait for a standby it lacks.
            conf.write(
                f"\nprimary_conninfo = 'host=127.0.0.1 port={self.primary_port} user=postgres "
                f"application_name={self.STANDBY_NAME}'\nsynchronous_standby_names = ''\n"
            )
        self.standby.start()
        _wait(lambda: _accepts(self.standby_port), 30, "PostgreSQL standby", self.standby.log)
        _wait(self._standby_streaming, 30, "synchronous replication", self.standby.log)

    def sql(self, port: int, statement: str) -> list[tuple[object, ...]]:
        """Run one statement on the server at ``port`` (autocommit), its rows."""
        return _postgres_sql(port, statement)

    def _standby_streaming(self) -> bool:
        try:
            rows = self.sql(self.primary_port, "SELECT sync_state FROM pg_stat_replication")
        except Exception:
            return False
        return ("sync",) in rows

    def promote_standby(self) -> None:
        self.sql(self.standby_port, "SELECT pg_promote(true, 30)")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            server.stop(signum=signal.SIGINT)  # PostgreSQL's fast shutdown: clients are disconnected


# -- MariaDB: one server; Galera 4, three nodes on loopback ---------------------------


def _mariadb_server(folder: Path, name: str, port: int, settings: str = "") -> Server:
    """A server whose data is ``folder/name`` (config, socket, pid and log beside it), plus ``settings``."""
    conf = folder / f"{name}.cnf"
    conf.write_text(
        "[mariadbd]\n"
        f"datadir = {folder / name}\nsocket = {folder}/{name}.sock\nport = {port}\n"
        f"bind-address = 127.0.0.1\npid-file = {folder}/{name}.pid\n"
        "skip-name-resolve\nperformance_schema = OFF\ninnodb_buffer_pool_size = 24M\n"
        "innodb_log_file_size = 16M\ninnodb_flush_log_at_trx_commit = 0\nkey_buffer_size = 1M\n"
        "max_connections = 80\nmax_allowed_packet = 64M\nskip-log-bin\n"
        "default_storage_engine = InnoDB\n" + settings
    )
    argv = [MARIADBD, f"--defaults-file={conf}", "--user=mysql"]
    return Server(name, argv, user="mysql", log=folder / f"{name}.log", port=port)


def _mariadb_install(data: Path, log: Path) -> None:
    """The system tables in the (mysql-owned) data directory ``data``; root without a password."""
    install = [
        MARIADB_INSTALL_DB,
        f"--datadir={data}",
        "--user=mysql",
        "--skip-test-db",
        "--auth-root-authentication-method=normal",
        "--skip-name-resolve",
        "--no-defaults",
    ]
    with open(log, "ab") as out:
        subprocess.run(
            install,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=180,
            start_new_session=True,
        )


def _mariadb_sql(port: int, statement: str, timeout: float = 5) -> list[tuple[object, ...]]:
    import pymysql

    connection = pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password="",
        connect_timeout=timeout,
        read_timeout=timeout,
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        connection.close()


class MariaDBServer:
    """One MariaDB server on loopback, user ``starpod`` with any privilege."""

    PASSWORD = "mariadb-secret"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.data = folder / "data"
        self.server = _mariadb_server(folder, "data", self.port)

    def url(self, database: str) -> str:
        return f"mysql+pymysql://starpod:{self.PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.data.mkdir()
        _chown_tree(self.data, "mysql")
        _mariadb_install(self.data, self.folder / "setup.log")
        self.server.start()
        _wait(lambda: _accepts(self.port), 60, "MariaDB", self.server.log)
        _wait(lambda: self._answers(), 60, "MariaDB", self.server.log)
        self.sql(f"CREATE USER 'starpod'@'%' IDENTIFIED BY '{self.PASSWORD}'")
        self.sql("GRANT ALL ON *.* TO 'starpod'@'%'")

    def ensure_running(self) -> None:
        """Start the server again if it died (a crash), and wait until it answers."""
        if not self.server.running:
            self.server.start()
        _wait(lambda: self._answers(), 120, "MariaDB", self.server.log)

    def _answers(self) -> bool:
        try:
            self.sql("SELECT 1", timeout=2)
        except Exception:
            return False
        return True

    def sql(self, statement: str, *, timeout: float = 5) -> list[tuple[object, ...]]:
        """Run one statement as root (autocommit), its rows."""
        return _mariadb_sql(self.port, statement, timeout)

    def stop(self) -> None:
        self.server.stop()


class GaleraCluster:
    """Three MariaDB nodes in one Galera 4 cluster on loopback, rsync state transfer."""

    def __init__(self, folder: Path, nodes: int = 3) -> None:
        self.folder = folder
        self.ports = [free_port() for _ in range(nodes)]
        self.gcomm = [free_port() for _ in range(nodes)]
        self.ist = [free_port() for _ in range(nodes)]
        self.sst = [free_port() for _ in range(nodes)]
        self.nodes = [self._node(index) for index in range(nodes)]

    def _node(self, index: int) -> Server:
        members = ",".join(f"127.0.0.1:{port}" for port in self.gcomm)
        return _mariadb_server(
            self.folder,
            f"node{index}",
            self.ports[index],
            "binlog_format = ROW\ninnodb_autoinc_lock_mode = 2\n"
            "wsrep_on = ON\n"
            f"wsrep_provider = {GALERA_PROVIDER}\n"
            f"wsrep_cluster_address = gcomm://{members}\n"
            f"wsrep_cluster_name = starpod_faults\nwsrep_node_name = node{index}\n"
            f"wsrep_node_address = 127.0.0.1:{self.gcomm[index]}\n"
            f'wsrep_provider_options = "base_port={self.gcomm[index]}; ist.recv_addr=127.0.0.1:{self.ist[index]}; '
            'gcache.size=16M; pc.recovery=false"\n'
            f"wsrep_sst_method = rsync\nwsrep_sst_receive_address = 127.0.0.1:{self.sst[index]}\n"
            "wsrep_slave_threads = 2\n",
        )

    def url(self, index: int, database: str = "starpod") -> str:
        return f"mysql+pymysql://starpod:galera-secret@127.0.0.1:{self.ports[index]}/{database}"

    def start(self) -> None:
        log = self.folder / "setup.log"
        for index in range(len(self.nodes)):
            data = self.folder / f"node{index}"
            data.mkdir()
            _chown_tree(data, "mysql")
        _mariadb_install(self.folder / "node0", log)
        first = self.nodes[0]
        first.argv = [*first.argv, "--wsrep-new-cluster"]
        first.start()
        _wait(lambda: self._synced(0), 60, "Galera node0", first.log)
        self.sql(0, "CREATE USER 'starpod'@'%' IDENTIFIED BY 'galera-secret'")
        self.sql(0, "GRANT ALL ON *.* TO 'starpod'@'%'")
        self.sql(0, "CREATE DATABASE starpod")
        first.argv = first.argv[:-1]  # a restart joins the cluster
        for index, node in enumerate(self.nodes[1:], start=1):
            node.start()
            _wait(lambda index=index: self._synced(index), 120, f"Galera node{index}", node.log)

    def sql(self, index: int, statement: str, *, timeout: float = 5) -> list[tuple[object, ...]]:
        return _mariadb_sql(self.ports[index], statement, timeout)

    def _synced(self, index: int) -> bool:
        try:
            rows = self.sql(index, "SHOW STATUS LIKE 'wsrep_local_state_comment'", timeout=2)
        except Exception:
            return False
        return rows == [("wsrep_local_state_comment", "Synced")]

    def cluster_size(self, index: int) -> int:
        rows = self.sql(index, "SHOW STATUS LIKE 'wsrep_cluster_size'")
        return int(str(rows[0][1]))

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@contextlib.contextmanager
def private_folder(prefix: str, owner: str) -> Iterator[Path]:
    """A temporary folder ``owner`` owns, removed at the end whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=f"starpod-faults-{prefix}-"))
    try:
        os.chmod(folder, 0o755)
        _chown_tree(folder, owner)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Startable)


@contextlib.contextmanager
def running(kind: Callable[[Path], S], prefix: str, owner: str) -> Iterator[S]:
    """``kind(folder)`` started in a private folder ``owner`` owns; stopped and removed on every exit."""
    with private_folder(prefix, owner) as folder:
        server = kind(folder)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def postgres_pair() -> contextlib.AbstractContextManager[PostgresPair]:
    """A running :class:`PostgresPair`, stopped and removed on every exit."""
    return running(PostgresPair, "pg", "postgres")


@contextlib.contextmanager
def small_filesystem(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted at ``path`` (created), unmounted on every exit.

    Raises :class:`OSError` naming why when it cannot be mounted (not root, no ``mount``, a container
    without CAP_SYS_ADMIN).
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        raise OSError(f"cannot mount a tmpfs at {path}: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill_up(filesystem: Path, leave_megabytes: float) -> Path:
    """A file taking all of ``filesystem``'s free space but ``leave_megabytes``; deleting it frees the space."""
    stats = os.statvfs(filesystem)
    size = stats.f_bavail * stats.f_frsize - int(leave_megabytes * 2**20)
    filler = filesystem / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * 2**20
        while size > 0:
            out.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)
    return filler


def galera_cluster() -> contextlib.AbstractContextManager[GaleraCluster]:
    """A running 3-node :class:`GaleraCluster`, stopped and removed on every exit."""
    return running(GaleraCluster, "galera", "mysql")
