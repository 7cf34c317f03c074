"""The embedded PostGIS: initialised on first use, started on demand, stopped; two checkouts
never collide; works as root (server as an unprivileged user) and as a normal user."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from geo_service.embedded import EmbeddedCluster

GEO = str(Path(sys.executable).with_name("geo-service"))


PROJECT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = next(Path(sys.prefix).glob("lib/python3*/site-packages"))


def _as_user(user: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *args], capture_output=True, text=True,
                          timeout=60, cwd="/")


def _interpreter_for(user: str) -> str | None:
    """A Python the user can run with this checkout's packages: the venv's own, or the system
    Python of the same version when the venv's base lives under /root (pyenv)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}"):
        if _as_user(user, [candidate, "-c", "import sys"]).returncode == 0:
            return candidate
    return None


def geo(data_dir: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEO_DATABASE_URL")}
    env["GEO_DATA_DIR"] = str(data_dir)
    cmd = [GEO, *args]
    if user:
        python = _interpreter_for(user)
        assert python, f"no Python that {user} can run"
        cmd = ["runuser", "-u", user, "--", "env", f"GEO_DATA_DIR={data_dir}", "HOME=/tmp",
               f"PYTHONPATH={PROJECT}:{SITE_PACKAGES}", python, "-m", "geo_service", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, cwd="/")


def test_two_checkouts_run_side_by_side(tmp_path: Path) -> None:
    first, second = tmp_path / "checkout-a" / ".data", tmp_path / "checkout-b" / ".data"
    try:
        for folder in (first, second):
            started = geo(folder, "db", "start")
            assert started.returncode == 0, started.stderr
        urls = [geo(folder, "db", "url").stdout.strip() for folder in (first, second)]
        assert urls[0] != urls[1]
        for url in urls:
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT postgis_lib_version()").fetchone()[0].startswith("3.")
        # the web server's role reads only; the socket folder is private to the cluster's user
        reader = geo(first, "db", "url", "--role", "reader").stdout.strip()
        with psycopg.connect(reader) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables").fetchone()[0] > 0
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE nope (n int)")
        for folder in (first, second):
            cluster = EmbeddedCluster(folder)
            assert cluster._private(cluster.socket_dir), cluster.socket_dir
            assert cluster.key not in cluster.socket_dir.name  # no predictable temp name
        status = geo(first, "db", "status", "--json")
        assert status.returncode == 0 and '"running": true' in status.stdout
        assert EmbeddedCluster(first).port != EmbeddedCluster(second).port
        if os.geteuid() == 0:  # the server never runs as root
            pgdata = EmbeddedCluster(first).pgdata
            assert pgdata.stat().st_uid != 0
    finally:
        for folder in (first, second):
            geo(folder, "db", "stop")
    stopped = geo(first, "db", "status")
    assert stopped.returncode == 3 and "running: False" in stopped.stdout
    # started again on demand by any command that needs it, with its data kept
    again = geo(first, "db", "url")
    try:
        assert again.returncode == 0
        with psycopg.connect(again.stdout.strip()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        geo(first, "db", "stop")


@pytest.mark.skipif(os.geteuid() != 0, reason="as a normal user this whole suite is that case")
def test_runs_as_a_normal_user(tmp_path: Path) -> None:
    """Root can try the unprivileged path too: `nobody` gets its own cluster in a folder it owns."""
    user = pwd.getpwnam("nobody")
    if _interpreter_for("nobody") is None or _as_user("nobody", ["test", "-r", str(
            PROJECT / "geo_service" / "cli.py")]).returncode != 0:
        pytest.skip("this checkout or its Python is not readable by an unprivileged user")
    folder = Path("/tmp") / f"geo-normal-user-{os.getpid()}"
    folder.mkdir(mode=0o755)
    os.chown(folder, user.pw_uid, user.pw_gid)
    data_dir = folder / ".data"
    try:
        started = geo(data_dir, "db", "start", user="nobody")
        assert started.returncode == 0, started.stderr
        url = geo(data_dir, "db", "url", user="nobody").stdout.strip()
        with psycopg.connect(url) as conn:
            owner = conn.execute("SELECT usename FROM pg_stat_activity WHERE pid = "
                                 "pg_backend_pid()").fetchone()[0]
            assert owner == "geo_owner"  # the CLI's role, not the superuser
        pid_file = data_dir / "pg" / "data" / "postmaster.pid"
        assert pid_file.stat().st_uid == user.pw_uid
    finally:
        geo(data_dir, "db", "stop", user="nobody")
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_external_database_url_starts_nothing(tmp_path: Path, database_url: str) -> None:
    env_dir = tmp_path / "unused" / ".data"
    env = {**os.environ, "DATABASE_URL": database_url, "GEO_DATA_DIR": str(env_dir)}
    result = subprocess.run([GEO, "db", "start"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0 and "nothing to start" in result.stdout
    url = subprocess.run([GEO, "db", "url"], capture_output=True, text=True, env=env, timeout=60)
    assert url.stdout.strip() == database_url
    assert not env_dir.exists()


def _listening_elsewhere_would_fail(port: int) -> bool:
    """True when a plain bind (no SO_REUSEADDR) is refused: sockets of the stopped server still
    linger on the port (the probe of old counted them as taken and moved the cluster)."""
    import socket

    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_the_port_is_kept_for_life_and_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    folder = tmp_path / "checkout" / ".data"
    try:
        assert geo(folder, "db", "start").returncode == 0
        port = EmbeddedCluster(folder).port
        url = geo(folder, "db", "url").stdout.strip()
        for _ in range(2):  # restart with connections open: the server closes them first
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT 1")
                stopped = geo(folder, "db", "stop")
                assert stopped.returncode == 0, stopped.stderr
            lingering = _listening_elsewhere_would_fail(port)
            started = geo(folder, "db", "start")
            assert started.returncode == 0, started.stderr
            assert EmbeddedCluster(folder).port == port, (lingering, started.stdout)
            with psycopg.connect(url) as conn:  # the URL a running server holds still works
                assert conn.execute("SELECT 1").fetchone() == (1,)
        geo(folder, "db", "stop")
        with socket.socket() as squatter:  # another program takes the port meanwhile
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            refused = geo(folder, "db", "start")
            assert refused.returncode != 0
            assert f"port {port}" in refused.stderr and "taken by another process" in refused.stderr
        assert geo(folder, "db", "start").returncode == 0
        assert EmbeddedCluster(folder).port == port
    finally:
        geo(folder, "db", "stop")


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_a_lost_state_folder_never_wipes_the_cluster(tmp_path: Path, running: bool) -> None:
    """`git clean -xdf` removes the state files (password, port); the cluster and its data stay,
    and a new password is set over the local socket."""
    import shutil

    folder = tmp_path / "checkout" / ".data"
    try:
        assert geo(folder, "db", "start").returncode == 0
        with psycopg.connect(geo(folder, "db", "url").stdout.strip(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        cluster = EmbeddedCluster(folder)
        port, pgdata = cluster.port, cluster.pgdata
        created = (pgdata / "PG_VERSION").stat().st_mtime_ns
        if not running:
            geo(folder, "db", "stop")
        shutil.rmtree(cluster.state_dir)
        again = geo(folder, "db", "url")
        assert again.returncode == 0, again.stderr
        with psycopg.connect(again.stdout.strip()) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
        assert (pgdata / "PG_VERSION").stat().st_mtime_ns == created  # not initialised again
        assert EmbeddedCluster(folder).port == port
        reader = geo(folder, "db", "url", "--role", "reader")  # role passwords set anew too
        with psycopg.connect(reader.stdout.strip()) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
    finally:
        geo(folder, "db", "stop")
