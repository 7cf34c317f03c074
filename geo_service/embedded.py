"""The embedded PostgreSQL + PostGIS cluster the project runs for itself when no DATABASE_URL is set.

The cluster lives in the project's data folder (ignored by git). It listens on a private Unix
socket and on a loopback port derived from the folder's path, so two checkouts on one machine get
two clusters that never collide. PostgreSQL refuses to run as root: when invoked as root, the
server runs as an unprivileged OS user (``postgres`` when it exists) that owns the cluster folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from geo_service import roles

SUPERUSER = "geo"
DATABASE = "geo_service"
FALLBACK_ROOT = Path("/var/lib/geo-service")
SERVICE_USER = "geo-service"


class EmbeddedError(RuntimeError):
    """The embedded cluster could not be set up, started or reached."""


@dataclass(frozen=True)
class ClusterStatus:
    """What `geo-service db status` reports."""

    initialised: bool
    running: bool
    pgdata: Path
    port: int | None
    socket_dir: Path
    pg_version: str | None


def find_pg_bindir() -> Path:
    """Return the bin folder of the newest installed PostgreSQL that has PostGIS available."""
    candidates: list[tuple[int, Path]] = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        version = bindir.parent.name
        if not version.isdigit() or not (bindir / "postgres").exists():
            continue
        if Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists():
            candidates.append((int(version), bindir))
    if candidates:
        return max(candidates)[1]
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise EmbeddedError(
        "no PostgreSQL server with PostGIS found; install them with "
        "`apt-get install postgresql-15 postgresql-15-postgis-3` (make run/test does this)"
    )


def _stable_port(key: str) -> int:
    """A loopback port derived from the cluster's path: 20000-39999."""
    digest = hashlib.sha256(key.encode()).digest()
    return 20000 + int.from_bytes(digest[:4], "big") % 20000


def _port_free(port: int) -> bool:
    """No other process listens on the loopback port. SO_REUSEADDR, as the server itself sets
    it: the sockets a stopped server leaves in TIME_WAIT do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _is_root() -> bool:
    return os.geteuid() == 0


def _service_user() -> pwd.struct_passwd:
    """The unprivileged OS user that runs the server when we are root (created if needed)."""
    for name in ("postgres", SERVICE_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
    )
    return pwd.getpwnam(SERVICE_USER)


def _user_can_traverse(user: pwd.struct_passwd, path: Path) -> bool:
    """True when `user` can reach `path` (every parent folder searchable)."""
    groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            break
        st = folder.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in groups:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


class EmbeddedCluster:
    """A PostgreSQL cluster owned by this project checkout."""

    def __init__(self, data_dir: Path, reader_timeout_ms: int = 5000) -> None:
        self.data_dir = data_dir.resolve()
        self.reader_timeout_ms = reader_timeout_ms
        self.key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:10]
        self.root = self._choose_root()
        self.pgdata = self.root / "data"
        self.state_dir = self.data_dir / "pg-state"
        self.password_file = self.state_dir / "password"
        self.roles_file = self.state_dir / "roles"  # what provisioning last set (see _provision)
        self.port_file = self.state_dir / "port"
        self.log_file = self.root / "server.log"
        self.socket_file = self.state_dir / "socket-dir"  # where a temp socket folder is kept

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's Unix socket: `run` in the cluster folder, or, when that
        path is too long for a socket (about 107 bytes), a private folder made by mkdtemp (an
        unpredictable name) in the temp folder, kept in the state folder while it stays ours."""
        preferred = self.root / "run"
        if len(str(preferred)) <= 80:
            return preferred
        candidates = []
        if self.socket_file.exists():
            candidates.append(self.socket_file.read_text().strip())
        with contextlib.suppress(OSError, IndexError):  # a running server says where (5th line)
            candidates.append((self.pgdata / "postmaster.pid").read_text().splitlines()[4])
        for candidate in candidates:
            if candidate and self._private(Path(candidate)):
                return Path(candidate)
        return preferred.parent / "no-socket-folder-yet"  # start() makes one

    def _private(self, path: Path) -> bool:
        """A real folder (no link), owned by the cluster's OS user, that no one else may enter."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        owner = self._owner()
        uid = owner.pw_uid if owner else os.getuid()
        return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077

    def _make_socket_dir(self) -> Path:
        preferred = self.root / "run"
        if len(str(preferred)) <= 80:  # inside the cluster's own folder, which is ours
            preferred.mkdir(parents=True, exist_ok=True)
            self._chown(preferred)
            os.chmod(preferred, 0o700)
            return preferred
        current = self.socket_dir
        if self._private(current):
            return current
        made = Path(tempfile.mkdtemp(prefix="geo-service-"))  # 0700 and ours from the start
        self._chown(made)
        self.socket_file.write_text(f"{made}\n")
        return made

    # ----------------------------------------------------------------- layout
    def _choose_root(self) -> Path:
        inside = self.data_dir / "pg"
        if not _is_root():
            return inside
        user = _service_user()
        if _user_can_traverse(user, self.data_dir.parent):
            return inside
        # The checkout sits where the service user cannot reach (e.g. under /root).
        return FALLBACK_ROOT / self.key

    def _owner(self) -> pwd.struct_passwd | None:
        return _service_user() if _is_root() else None

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the service user when we are root."""
        owner = self._owner()
        cmd = ["runuser", "-u", owner.pw_name, "--", *args] if owner else args
        result = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if check and result.returncode != 0:
            raise EmbeddedError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _chown(self, path: Path) -> None:
        owner = self._owner()
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise init/start/stop between processes of this checkout."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ----------------------------------------------------------------- state
    @property
    def initialised(self) -> bool:
        """A cluster exists (and so is never re-initialised or deleted by this class)."""
        return (self.pgdata / "PG_VERSION").exists()

    @property
    def port(self) -> int | None:
        if self.port_file.exists():
            return int(self.port_file.read_text().strip())
        return None

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        bindir = find_pg_bindir()
        return self._run([str(bindir / "pg_ctl"), "status", "-D", str(self.pgdata)], False).returncode == 0

    def status(self) -> ClusterStatus:
        version = None
        if (self.pgdata / "PG_VERSION").exists():
            version = (self.pgdata / "PG_VERSION").read_text().strip()
        return ClusterStatus(
            initialised=self.initialised,
            running=self.running(),
            pgdata=self.pgdata,
            port=self.port,
            socket_dir=self.socket_dir,
            pg_version=version,
        )

    def url(self, database: str = DATABASE, role: str | None = None) -> str:
        """A DSN usable by psql, GDAL and psycopg (password auth on the loopback port): as the
        superuser, or as the service's `owner` or `reader` role."""
        if not self.initialised or self.port is None or not self.password_file.exists():
            raise EmbeddedError("the embedded cluster is not initialised: run `geo-service db start`")
        admin = (f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@127.0.0.1:"
                 f"{self.port}/{database}")
        if role is None:
            return admin
        return roles.url_as(admin, self._role(role))

    def _role_file(self, role: str) -> Path:
        return self.state_dir / f"{role}-password"

    def _role(self, role: str) -> roles.Role:
        path = self._role_file(role)
        if not path.exists():
            raise EmbeddedError(f"{path} is missing: run `geo-service db start` to set it again")
        return roles.Role(roles.OWNER if role == "owner" else roles.READER,
                          path.read_text().strip())

    # ----------------------------------------------------------------- lifecycle
    def _init(self, bindir: Path) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.root.mkdir(parents=True, exist_ok=True)
        self._chown(self.root)
        if self.pgdata.exists():  # initdb was interrupted before it wrote PG_VERSION
            assert not (self.pgdata / "PG_VERSION").exists()
            shutil.rmtree(self.pgdata)
        password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pwfile:
            pwfile.write(password + "\n")
        self._chown(Path(pwfile.name))
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D", str(self.pgdata),
                    "-U", SUPERUSER,
                    f"--pwfile={pwfile.name}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            os.unlink(pwfile.name)
        self.password_file.write_text(password + "\n")
        os.chmod(self.password_file, 0o600)

    def _pick_port(self) -> int:
        """The cluster's port for life: chosen once (derived from its path, the next free one if
        taken), stored, and reused at every start, so running servers find it again after a
        restart. The stored port taken by another process is an error, never a silent move."""
        stored = self.port
        if stored is not None:
            if not _port_free(stored):
                raise EmbeddedError(
                    f"port {stored} of the embedded cluster (kept in {self.port_file}) is taken by "
                    "another process: stop that process, or delete the file to let the cluster "
                    "choose a new port (running servers must then be restarted)")
            return stored
        port = _stable_port(str(self.pgdata))
        while not _port_free(port):
            port = 20000 + (port - 20000 + 7) % 20000
        self.port_file.write_text(f"{port}\n")
        return port

    def _adopt_port(self) -> None:
        """Store the port a running server listens on (the fourth line of postmaster.pid)."""
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        self.port_file.write_text(f"{int(lines[3])}\n")

    def _reset_password(self, bindir: Path) -> None:
        """A new password for the superuser, set over the local socket (trusted), when the file
        that kept it was lost: the cluster and its data stay as they are."""
        password = secrets.token_urlsafe(24)
        os.chmod(self.state_dir, 0o700)
        self._psql(bindir, sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(SUPERUSER), sql.Literal(password)))
        self.password_file.write_text(password + "\n")
        os.chmod(self.password_file, 0o600)

    # the server's settings beyond its port and socket (a replica has its own)
    SETTINGS = ("-c shared_buffers=256MB -c max_connections=100 -c fsync=on -c max_wal_size=2GB "
                "-c work_mem=32MB -c maintenance_work_mem=256MB")

    def _serve(self, bindir: Path) -> None:
        """Start the server on its port, listening on the loopback and its private socket."""
        options = (f"-p {self._pick_port()} -k {self._make_socket_dir()} "
                   f"-c listen_addresses=127.0.0.1 {self.SETTINGS}")
        self._run([str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
                   "-l", str(self.log_file), "-o", options])

    def start(self) -> ClusterStatus:
        """Initialise on first use, then start the server if it is not running; idempotent."""
        bindir = find_pg_bindir()
        with self._lock():
            if not self.initialised:
                self._init(bindir)
            if not self.running():
                self._serve(bindir)
            elif self.port is None:  # the state file was lost while the server ran
                self._adopt_port()
            if not self.password_file.exists():
                self._reset_password(bindir)
            self._ensure_database(bindir)
            self._provision()
        return self.status()

    def _provision(self) -> None:
        """The owner and reader roles (roles.provision), set up when the database is new, a role
        password file was lost, or the reader's statement timeout changed; else nothing runs."""
        wanted = f"roles v1; reader statement_timeout {self.reader_timeout_ms} ms\n"
        files = [self._role_file(role) for role in ("owner", "reader")]
        if (self.roles_file.exists() and self.roles_file.read_text() == wanted
                and all(f.exists() for f in files)):
            return
        for path in files:
            if not path.exists():
                _write_private(path, secrets.token_urlsafe(24) + "\n")
        with psycopg.connect(self.url(), connect_timeout=10) as conn:
            roles.provision(conn, self._role("owner"), self._role("reader"),
                            self.reader_timeout_ms)
        _write_private(self.roles_file, wanted)

    def _psql(self, bindir: Path, statement: sql.Composable, database: str = "postgres") -> str:
        """Run one statement with psql as the superuser (the server may have no database yet)."""
        psql = bindir / "psql"
        if not psql.exists():
            psql = Path(shutil.which("psql") or "psql")
        args = [
            str(psql), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
            "-d", database, "-c", statement.as_string(),
        ]
        return self._run(args).stdout.strip()

    def _ensure_database(self, bindir: Path) -> None:
        exists = self._psql(bindir, sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}")
                            .format(sql.Literal(DATABASE)))
        if exists != "1":
            self._psql(bindir, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        self._psql(bindir, sql.SQL("CREATE EXTENSION IF NOT EXISTS postgis"), DATABASE)

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        if not self.running():
            return False
        bindir = find_pg_bindir()
        with self._lock():
            self._run([str(bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.pgdata)])
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def redact(url: str) -> str:
    """A DSN with its password hidden, for logs and status output."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, never readable by others even for a moment."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


REPLICATOR = "geo_replicator"
SLOT_WAL_KEEP = "2GB"  # WAL a stopped replica's slot may hold back on the primary, at most


@dataclass(frozen=True)
class ReplicaStatus:
    """What `geo-service db replica status` reports."""

    name: str
    initialised: bool
    running: bool
    pgdata: Path
    port: int | None
    in_recovery: bool | None  # None: not reachable
    behind_bytes: int | None  # WAL the replica has yet to replay (None: unknown)
    streaming: bool | None  # the primary sees it streaming
    slot: str | None  # its slot on the primary: reserved ... lost (then start clones afresh)


class EmbeddedReplica(EmbeddedCluster):
    """A streaming replica of the embedded cluster, on the same machine: a hot standby made by
    `pg_basebackup -R` into the cluster's folder (replicas/NAME), on its own loopback port. It
    holds the same roles and data, so the web server reads from it with the same reader role;
    the primary keeps a replication slot for it, so it catches up after a stop (the slot holds
    back at most SLOT_WAL_KEEP of WAL, beyond which it must be removed and started afresh)."""

    SETTINGS = ("-c hot_standby=on -c hot_standby_feedback=on -c shared_buffers=128MB "
                "-c max_connections=100 -c work_mem=32MB")

    def __init__(self, primary: EmbeddedCluster, name: str = "replica") -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name):
            raise EmbeddedError(f"replica name {name!r}: lower-case letters, digits and _, "
                                "starting with a letter")
        super().__init__(primary.data_dir, primary.reader_timeout_ms)
        self.primary = primary
        self.name = name
        self.slot = f"geo_{name}"
        self.root = primary.root / "replicas" / name
        self.pgdata = self.root / "data"
        self.port_file = self.state_dir / f"{name}-port"
        self.log_file = self.root / "server.log"
        self.socket_file = self.state_dir / f"{name}-socket-dir"
        self.replicator_file = self.state_dir / "replicator-password"
        self.recloned = False  # start() found it beyond catching up and cloned it again

    def _replicator(self) -> str:
        """The replication role on the primary (REPLICATION, nothing else), with its password:
        one for every replica of this cluster, kept in the state folder (set again each time, so
        a lost file is no harm, and the other replicas keep theirs)."""
        if not self.replicator_file.exists():
            _write_private(self.replicator_file, secrets.token_urlsafe(24) + "\n")
        password = self.replicator_file.read_text().strip()
        with psycopg.connect(self.primary.url(), connect_timeout=10, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATOR,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(
                    sql.Identifier(REPLICATOR)))
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB "
                                 "NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(REPLICATOR), sql.Literal(password)))
            # a stopped replica's slot may not fill the primary's disk
            conn.execute(sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(
                sql.Literal(SLOT_WAL_KEEP)))
            conn.execute("SELECT pg_reload_conf()")
            slot = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                (self.slot,)).fetchone()
            if slot is not None:  # left by a replica whose folder is gone
                conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        return password

    def _clone(self, bindir: Path) -> None:
        """pg_basebackup -R of the running primary into a new folder, renamed into place only
        once complete, so an interrupted clone never looks like a replica."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.root.parent, self.root):
            self._chown(folder)
        password = self._replicator()
        passfile = self.root / "pgpass"
        _write_private(passfile, f"127.0.0.1:{self.primary.port}:*:{REPLICATOR}:{password}\n")
        self._chown(passfile)
        partial = self.root / "data.partial"
        if partial.exists():
            shutil.rmtree(partial)
        conninfo = (f"host=127.0.0.1 port={self.primary.port} user={REPLICATOR} "
                    f"passfile={passfile} application_name={self.slot}")
        self._run([str(bindir / "pg_basebackup"), "-D", str(partial), "-d", conninfo, "-R",
                   "-X", "stream", "-C", "-S", self.slot, "--checkpoint=fast", "--no-sync"])
        partial.rename(self.pgdata)

    def start(self) -> ClusterStatus:
        """Clone the primary on first use (starting it), then start the replica if it is not
        running; idempotent. The primary may be down when an existing replica starts: it serves
        what it has and streams again when the primary is back."""
        bindir = find_pg_bindir()
        if not self.initialised:
            self.primary.start()
        elif self.primary.running() and self.slot_state() in ("lost", None):
            # the primary no longer keeps the WAL this replica needs (it fell more than
            # SLOT_WAL_KEEP behind, or its slot is gone): it holds nothing of its own, so clone it
            # afresh rather than leave a standby that can never catch up
            self.stop()
            with self._lock():
                shutil.rmtree(self.pgdata)
            self.recloned = True
        with self._lock():
            if not self.initialised:
                self._clone(bindir)
            if not self.running():
                self._serve(bindir)
            elif self.port is None:
                self._adopt_port()
        return self.status()

    def slot_state(self) -> str | None:
        """The primary's word on this replica's slot: reserved, extended, unreserved or lost
        (pg_replication_slots.wal_status), None when there is no slot, '?' when unknown."""
        row = _ask(self.primary.url, "SELECT coalesce((SELECT wal_status FROM "
                   "pg_replication_slots WHERE slot_name = %s), 'none')", (self.slot,))
        if row is None:
            return "?"
        return None if row[0] == "none" else str(row[0])

    def remove(self) -> bool:
        """Stop the replica, delete its folder and its slot on the primary; False when there
        was none. The primary's data is untouched."""
        found = self.initialised or self.root.exists()
        if self.running():
            self.stop()
        if self.primary.running():
            with psycopg.connect(self.primary.url(), connect_timeout=10, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                (self.slot,)).fetchone() is not None:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                    found = True
        with self._lock():
            if self.root.exists():
                shutil.rmtree(self.root)
            for path in (self.port_file, self.socket_file):
                path.unlink(missing_ok=True)
        return found

    def replication(self) -> ReplicaStatus:
        """Status, with whether it is a standby, how far behind the primary it is, and whether
        the primary sees it streaming (each None when it cannot be asked)."""
        base = self.status()
        in_recovery = behind = streaming = None
        mine = _ask(self.url, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
                    ()) if base.running else None
        replayed = mine[1] if mine else None
        theirs = _ask(self.primary.url,
                      "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = "
                      "%s AND state = 'streaming'), pg_wal_lsn_diff(pg_current_wal_lsn(), "
                      "%s::pg_lsn)::bigint", (self.slot, replayed or "0/0"))
        if mine:
            in_recovery = bool(mine[0])
        if theirs:
            streaming = bool(theirs[0])
            behind = int(theirs[1]) if replayed else None
        return ReplicaStatus(self.name, base.initialised, base.running, base.pgdata, base.port,
                             in_recovery, behind, streaming, self.slot_state())


def _ask(url: Callable[..., str], query: str, params: tuple[object, ...]) -> tuple | None:
    """One row from a cluster's `postgres` database as its superuser, or None when it cannot be
    reached (a status report goes on without it)."""
    try:
        with psycopg.connect(url(database="postgres"), connect_timeout=3) as conn:
            return conn.execute(query, params).fetchone()
    except (psycopg.Error, EmbeddedError):
        return None
