"""Faults with a real server process and a real PostGIS of the test's own (never the shared
cluster): while the database is down every request answers 503 with Retry-After within 2 s, and
once it is back the server serves again by itself within 5 s, for the embedded cluster and for
an external PostGIS named by DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


@pytest.mark.parametrize("mode", ["embedded", "external"])
def test_a_database_restart_is_503_then_served_again_by_itself(tmp_path: Path, mode: str) -> None:
    data_dir = tmp_path / "checkout" / ".data"
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEO_DATABASE_URL")}
    cluster_env = {**base, "GEO_DATA_DIR": str(data_dir)}
    geo(cluster_env, "db", "start")
    dsn = geo(cluster_env, "db", "url").stdout.strip()
    geo(cluster_env, "db", "upgrade")
    server_env = {**cluster_env, "GEO_TILES_DIR": str(tmp_path / "tiles")}
    if mode == "external":  # the server only knows the URL; it starts and stops nothing
        server_env |= {"DATABASE_URL": dsn, "GEO_DATA_DIR": str(tmp_path / "other" / ".data")}
    log = tmp_path / "server.log"
    try:
        with serving(server_env, log) as url:
            for path in PATHS:  # an empty database: the tile is empty (204)
                assert get(url + path)[0] in (200, 204), path
            geo(cluster_env, "db", "stop")
            for path in PATHS[:-1]:  # the map page answers 503 too (checked below via /map)
                status, headers, seconds = get(url + path)
                assert status == 503, (path, status, log.read_text()[-2000:])
                assert headers.get("retry-after") == "5", (path, headers)
                assert seconds < 2.0, (path, seconds)
            assert get(url + "/map")[0] == 503
            geo(cluster_env, "db", "start")
            back = time.monotonic()
            while get(url + PATHS[0])[0] != 200:
                assert time.monotonic() - back < 5.0, log.read_text()[-2000:]
                time.sleep(0.1)
            for path in PATHS:
                assert get(url + path)[0] in (200, 204), path
        assert "Traceback" not in log.read_text()
    finally:
        subprocess.run([GEO, "db", "stop"], env=cluster_env, capture_output=True, timeout=60)
