"""The compose scale profile's replication scripts, for real, with the machine's PostgreSQL on
loopback (no Docker engine here): a throwaway primary with deploy/postgres/pg_hba.conf and
wal_level=replica, deploy/postgres/primary-replication.sql run on it as replication-setup runs
it, then deploy/postgres/replica-entrypoint.sh as the replica container runs it (past its
root-only first step): a base backup, a hot standby with feedback that streams the primary's
writes through its slot. A wrong replication password stops it with a clear error and leaves
its data folder empty, so the next start tries again."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.conftest import free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "postgres"
BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
PASSWORD = "replication0secret"

pytestmark = pytest.mark.skipif(not BINDIRS, reason="needs Debian's PostgreSQL (make test)")


class Cluster:
    """A folder of its own (owned by `nobody` when the tests run as root: PostgreSQL refuses
    root) holding data folders, sockets and logs; every server started here is stopped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = BINDIRS[-1]
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.own(root)

    def own(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700)
        self.own(path)
        return path

    def start(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        out = (self.root / log).open("wb")
        process = subprocess.Popen(
            command, env={"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", **env},
            stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None)
        self.processes.append(process)
        return process

    def run(self, command: list[str], env: dict[str, str] | None = None) -> None:
        process = self.start(command, env or {}, f"{Path(command[0]).name}.log")
        assert process.wait(timeout=120) == 0, self.log(f"{Path(command[0]).name}.log")

    def log(self, name: str) -> str:
        return (self.root / name).read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="geo-replica-"))
    made = Cluster(root)
    try:
        yield made
    finally:
        made.stop()
        shutil.rmtree(root, ignore_errors=True)


def dsn(cluster: Cluster, port: int) -> str:
    """The superuser over the folder's socket (`local all all trust`)."""
    return f"host={cluster.root} port={port} user=geo dbname=postgres connect_timeout=5"


def wait_for(cluster: Cluster, port: int, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with psycopg.connect(dsn(cluster, port)):
                return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, f"no server on {port}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def primary(cluster: Cluster) -> int:
    """db as compose runs it: wal_level=replica and the repository's pg_hba.conf, less the
    image's trust of the loopback: the replica connects as from another host (a container)."""
    data = cluster.folder("primary")
    hba = cluster.root / "pg_hba.conf"
    hba.write_text("".join(line for line in (DEPLOY / "pg_hba.conf").read_text().splitlines(True)
                           if "127.0.0.1/32" not in line and "::1/128" not in line))
    cluster.own(hba)
    cluster.run([str(cluster.bin / "initdb"), "-D", str(data), "-U", "geo", "--auth=trust"])
    port = free_port()
    cluster.start(["postgres", "-D", str(data), "-p", str(port), "-k", str(cluster.root),
                   "-c", "listen_addresses=127.0.0.1", "-c", "wal_level=replica",
                   "-c", f"hba_file={hba}"], {}, "primary.log")
    wait_for(cluster, port)
    setup = [str(cluster.bin / "psql"), f"--host={cluster.root}", f"--port={port}", "--username=geo",
             "--dbname=postgres", f"--file={DEPLOY / 'primary-replication.sql'}"]
    for password in ("first0password", PASSWORD):  # again at the next start: a new password
        result = subprocess.run(setup, env={"GEO_REPLICATION_PASSWORD": password,
                                            "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    return port


@contextmanager
def replica(cluster: Cluster, primary: int, name: str, password: str
            ) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """replica-entrypoint.sh with the environment compose gives it, and postgres' arguments."""
    data = cluster.folder(name)
    port = free_port()
    process = cluster.start(
        [str(DEPLOY / "replica-entrypoint.sh"), "-p", str(port), "-k", str(cluster.root),
         "-c", "listen_addresses=127.0.0.1", "-c", f"hba_file={cluster.root / 'pg_hba.conf'}"],
        {"GEO_REPLICATION_PASSWORD": password, "GEO_PRIMARY_HOST": "127.0.0.1",
         "GEO_PRIMARY_PORT": str(primary), "PGDATA": str(data)}, f"{name}.log")
    yield process, data, port


def test_replica_streams_the_primary_as_a_hot_standby(cluster: Cluster, primary: int) -> None:
    with replica(cluster, primary, "replica", PASSWORD) as (process, data, port):
        try:
            wait_for(cluster, port, 60)
        except AssertionError:
            pytest.fail(cluster.log("replica.log"))
        assert (data / "standby.signal").exists()  # written by pg_basebackup -R
        with psycopg.connect(dsn(cluster, port), autocommit=True) as standby:
            assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            assert standby.execute("SHOW hot_standby_feedback").fetchone() == ("on",)
            with psycopg.connect(dsn(cluster, primary), autocommit=True) as conn:
                conn.execute("CREATE TABLE written (n int)")
                conn.execute("INSERT INTO written VALUES (42)")
                # the replica streams through its slot (its WAL receiver may start a moment
                # after the standby accepts connections)
                deadline = time.monotonic() + 30
                while (slot := conn.execute("SELECT active FROM pg_replication_slots WHERE "
                                            "slot_name = 'geo_replica'").fetchone()) != (True,):
                    assert time.monotonic() < deadline, f"the slot is not streamed: {slot}"
                    time.sleep(0.1)
            deadline = time.monotonic() + 5
            while True:
                try:
                    assert standby.execute("SELECT n FROM written").fetchone() == (42,)
                    break
                except psycopg.errors.UndefinedTable:
                    assert time.monotonic() < deadline, "the write did not reach the replica"
                    time.sleep(0.1)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                standby.execute("INSERT INTO written VALUES (1)")
        assert process.poll() is None


def test_a_wrong_password_stops_the_replica_clearly_and_leaves_it_to_try_again(
        cluster: Cluster, primary: int) -> None:
    with replica(cluster, primary, "refused", "not0the0password") as (process, data, _):
        assert process.wait(timeout=60) != 0
    log = cluster.log("refused.log")
    assert "password authentication failed for user \"geo_replicator\"" in log
    assert list(data.iterdir()) == []  # no half copy: the next start makes a new base backup
