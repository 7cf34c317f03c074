"""Faults with a real server process and a real PostGIS of the test's own (never the shared
cluster): while the database is down every request answers 503 with Retry-After within 2 s, and
once it is back the server serves again by itself within 5 s, for the embedded cluster and for
an external PostGIS named by DATABASE_URL, with clients asking all along."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import serving

GEO = str(Path(sys.executable).with_name("geo-service"))
PATHS = ("/collections/regions/items?limit=1", "/collections", "/tiles/map/0/0/0.mvt",
         "/api/stats", "/export/map.png?preset=square", "/map")


def geo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([GEO, *args], capture_output=True, text=True, env=env, timeout=180,
                            cwd="/")
    assert result.returncode == 0, result.stderr
    return result


def get(url: str) -> tuple[int, dict[str, str], float]:
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                time.monotonic() - began
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, {k.lower(): v for k, v in error.headers.items()}, time.monotonic() - began


@contextmanager
def under_load(url: str, clients: int = 6) -> Iterator[list[tuple[int, float]]]:
    """Clients asking for features, tiles and stats in a loop until the block ends; the
    (status, seconds) of every answer."""
    seen: list[tuple[int, float]] = []
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            status, _, seconds = get(url + PATHS[i % 4])
            seen.append((status, seconds))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


# external: a long outage too (the pool's retries must not drift apart while it lasts)
@pytest.mark.parametrize(("mode", "down_s"), [("embedded", 0), ("external", 12)])
def test_a_database_restart_is_503_then_served_again_by_itself(tmp_path: Path, mode: str,
                                                                down_s: float) -> None:
    data_dir = tmp_path / "checkout" / ".data"
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEO_DATABASE_URL")}
    cluster_env = {**base, "GEO_DATA_DIR": str(data_dir)}
    geo(cluster_env, "db", "start")
    dsn = geo(cluster_env, "db", "url").stdout.strip()
    geo(cluster_env, "db", "upgrade")
    server_env = {**cluster_env, "GEO_TILES_DIR": str(tmp_path / "tiles")}
    if mode == "external":  # the server only knows the URL; it starts and stops nothing
        server_env |= {"DATABASE_URL": dsn, "GEO_DATA_DIR": str(tmp_path / "other" / ".data")}
    if down_s:  # a full pool: every connection is lost and retried, none is left to grow
        server_env |= {"GEO_DB_POOL_MIN": "4", "GEO_DB_POOL_MAX": "4"}
    log = tmp_path / "server.log"
    try:
        with serving(server_env, log) as url:
            for path in PATHS:  # an empty database: the tile is empty (204)
                assert get(url + path)[0] in (200, 204), path
            with under_load(url) as seen:
                restart(cluster_env, url, down_s, log)
            statuses = {status for status, _ in seen}
            assert statuses == {200, 204, 503}, statuses  # served, refused, served again: no 500
            assert max(seconds for _, seconds in seen) < 2.5, sorted(seen)[-5:]
            for path in PATHS:
                assert get(url + path)[0] in (200, 204), path
        assert "Traceback" not in log.read_text()
    finally:
        subprocess.run([GEO, "db", "stop"], env=cluster_env, capture_output=True, timeout=60)


def restart(cluster_env: dict[str, str], url: str, down_s: float, log: Path) -> None:
    """Stop the database, check the quick 503s for `down_s` seconds, start it, and wait until
    the server serves again by itself (within 5 s)."""
    geo(cluster_env, "db", "stop")
    for path in PATHS[:-1]:  # the map page answers 503 too (checked below via /map)
        status, headers, seconds = get(url + path)
        assert status == 503, (path, status, log.read_text()[-2000:])
        assert headers.get("retry-after") == "5", (path, headers)
        assert seconds < 2.0, (path, seconds)
    assert get(url + "/map")[0] == 503
    until = time.monotonic() + down_s
    while time.monotonic() < until:  # still down: still a quick 503
        status, _, seconds = get(url + PATHS[0])
        assert (status, seconds < 2.0) == (503, True), (status, seconds)
        time.sleep(1)
    geo(cluster_env, "db", "start")
    back = time.monotonic()
    while get(url + PATHS[0])[0] != 200:
        assert time.monotonic() - back < 5.0, log.read_text()[-2000:]
        time.sleep(0.1)


def test_a_lost_database_is_tried_every_second_not_ever_more_rarely(caplog) -> None:
    """While no database answers, the server's pool tries to reconnect about every second
    (psycopg_pool alone waits 1, 2, 4, 8, 16 s between tries), so a database back after a long
    outage is used again within about a second, not up to 16 s later."""
    import asyncio
    import logging
    import socket

    from geo_service.web.reads import Pool

    with socket.socket() as probe:  # a port where nothing listens: every attempt is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def attempts_in(seconds: float) -> int:
        pool = Pool(f"host=127.0.0.1 port={port} user=nobody dbname=none connect_timeout=1",
                    open=False, min_size=1, max_size=1, reconnect_timeout=60)
        await pool.open(wait=False)
        await asyncio.sleep(seconds)
        failed = pool.get_stats().get("connections_errors", 0)
        await pool.close()
        return failed

    with caplog.at_level(logging.WARNING, logger="psycopg.pool"):
        tries = asyncio.run(attempts_in(6.5))
    assert tries >= 6, tries  # doubling waits would allow 3 (at 0, 1 and 3 s)
    # and the log says so once, not once a try (one line per RETRIES_LOGGED_EVERY_S)
    logged = [r.getMessage() for r in caplog.records if "error connecting" in r.getMessage()]
    assert len(logged) == 1, logged


def test_failed_reconnections_are_logged_once_in_a_while_with_the_count_held_back() -> None:
    import logging

    from geo_service.web.reads import QuietRetries

    quiet = QuietRetries(every_s=0.3)

    def attempt(pool: str) -> logging.LogRecord:  # as psycopg_pool logs a failed connection
        return logging.LogRecord("psycopg.pool", logging.WARNING, __file__, 1,
                                 "error connecting in %r: %s", (pool, "connection refused"), None)

    first = attempt("pool-1")
    assert quiet.filter(first) and first.getMessage().startswith("error connecting in 'pool-1'")
    assert [quiet.filter(attempt("pool-1")) for _ in range(4)] == [False] * 4
    assert quiet.filter(attempt("pool-2"))  # another pool has its own pace
    other = logging.LogRecord("psycopg.pool", logging.WARNING, __file__, 1, "pool closed", None,
                              None)
    assert quiet.filter(other)  # other lines pass
    time.sleep(0.35)
    later = attempt("pool-1")
    assert quiet.filter(later)
    assert later.getMessage().endswith("(4 more failed attempts not logged)"), later.getMessage()


def test_the_servers_connections_cut_a_slow_statement(settings, sample) -> None:
    """Every pooled connection carries the statement timeout of the settings, so a runaway query
    ends there (QueryCanceled, which the API answers 503) and frees its connection."""
    import psycopg
    from fastapi.testclient import TestClient

    from geo_service.errors import http_status
    from geo_service.web.app import create_app

    app = create_app(settings.model_copy(update={"db_statement_timeout_ms": 700}))

    async def on_a_pooled_connection(query: str) -> str:
        async with app.state.pool.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
            return str(row[0]) if row else ""

    with TestClient(app) as client:
        assert client.portal.call(on_a_pooled_connection, "SHOW statement_timeout") == "700ms"
        began = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as cut:
            client.portal.call(on_a_pooled_connection, "SELECT pg_sleep(5)")
        assert time.monotonic() - began < 2.0
        assert http_status(cut.value)[0] == 503
        assert client.get("/collections/regions/items?limit=1").status_code == 200


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # gone meanwhile
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return found


def test_drawing_workers_leave_with_a_killed_server(settings, sample, tmp_path: Path) -> None:
    """kill -9 of the server leaves none of its map-image workers behind: they notice their
    server is gone and exit within seconds (before, two stayed for good after a test run)."""
    import signal

    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "GEO_TILES_DIR": str(settings.tiles_dir), "GEO_IMAGE_WORKERS": "2"}
    with serving(env, tmp_path / "server.log") as url:
        port = url.rsplit(":", 1)[1]
        assert get(url + "/export/map.png?preset=square")[0] == 200
        table = _processes()
        server = next(pid for pid, (_, command) in table.items()
                      if "geo_service serve" in command and f"--port {port}" in command)
        workers = [pid for pid, (parent, _) in table.items() if parent == server]  # and the
        # resource tracker, which leaves when its pipe closes
        assert workers, "the image was drawn in no worker process"
        os.kill(server, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(pid in _processes() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in workers if pid in _processes()]
        assert left == [], f"workers still running 10 s after their server was killed: {left}"

