"""Bad input: each case gets a clear message naming file, feature and field, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from geo_service.cli import app
from geo_service.load import pipeline, store
from geo_service.load.pipeline import LoadOptions, Reporter, load_file, load_target
from geo_service.query.service import DATA_VERSION_SQL

from .conftest import counts

pytestmark = pytest.mark.usefixtures("default_data")

SEOUL = box(126.95, 37.52, 127.02, 37.58)  # central Seoul, lon/lat


def feature(code: str | None, name: str | None, coords: list) -> dict:
    props = {k: v for k, v in (("code", code), ("name", name)) if v is not None}
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "Polygon", "coordinates": [coords]}}


def geojson(path: Path, *features: dict) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


SQUARE = [[126.9, 37.5], [127.0, 37.5], [127.0, 37.6], [126.9, 37.6], [126.9, 37.5]]


def run_load(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["boundaries", "load", *args])
    return result.exit_code, result.output


def assert_refused(dsn: str, args: list[str], *expected: str) -> str:
    before = counts(dsn)
    code, output = run_load(*args)
    flat = " ".join(output.split())
    assert code == 2, output
    assert "nothing was changed" in flat
    for text in expected:
        assert text in flat, flat
    assert counts(dsn) == before
    return flat


def test_path_that_does_not_exist(env_db: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gpkg"
    assert_refused(env_db, [str(missing)], str(missing), "no such file")


def test_empty_file(env_db: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.geojson"
    empty.write_bytes(b"")
    assert_refused(env_db, [str(empty)], str(empty), "the file is empty")
    no_features = geojson(tmp_path / "nofeatures.geojson")
    assert_refused(env_db, [str(no_features)], str(no_features), "no features")


def test_corrupt_file(env_db: str, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gpkg"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x17garbage" * 100)
    assert_refused(env_db, [str(corrupt)], str(corrupt), "cannot read as a vector dataset")
    truncated = tmp_path / "truncated.geojson"
    truncated.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    assert_refused(env_db, [str(truncated)], str(truncated), "cannot read")


def test_missing_code_or_name_field(env_db: str, tmp_path: Path) -> None:
    path = geojson(tmp_path / "fields.geojson", feature("A", "Alpha", SQUARE))
    assert_refused(env_db, [str(path), "--code-field", "insee"], str(path),
                   "field insee", "code field 'insee' not found; fields are: code, name")
    assert_refused(env_db, [str(path), "--name-field", "nom"], "name field 'nom' not found")
    nameless = geojson(tmp_path / "nameless.geojson", feature("A", "Alpha", SQUARE),
                       feature("B", None, SQUARE))
    assert_refused(env_db, [str(nameless), "--country", "KR"], "feature 2, field name",
                   "name is empty")


def test_duplicate_codes(env_db: str, tmp_path: Path) -> None:
    path = geojson(tmp_path / "dups.geojson", feature("A", "Alpha", SQUARE),
                   feature("B", "Beta", SQUARE), feature("A", "Alpha again", SQUARE))
    assert_refused(env_db, [str(path)], str(path), "field code", "duplicate code 'A'",
                   "features 1, 3")


def test_non_utf8_attributes(env_db: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.geojson"
    text = json.dumps({"type": "FeatureCollection",
                       "features": [feature("A", "Cafe", SQUARE)]}).replace("Cafe", "Caf\xe9")
    path.write_bytes(text.encode("latin-1"))
    assert_refused(env_db, [str(path)], str(path), "feature 1, field name", "is not UTF-8",
                   "--encoding")


def test_self_intersecting_ring_repaired_or_rejected_with_strict(env_db: str,
                                                                 tmp_path: Path) -> None:
    bowtie = [[126.9, 37.5], [127.0, 37.6], [127.0, 37.5], [126.9, 37.6], [126.9, 37.5]]
    path = geojson(tmp_path / "bowtie.geojson", feature("A", "Alpha", SQUARE),
                   feature("B", "Bowtie", bowtie))
    assert_refused(env_db, [str(path), "--country", "KR", "--level", "municipality", "--strict"],
                   str(path), "feature 2, field geometry", "invalid: Self-intersection")
    code, output = run_load(str(path), "--country", "KR", "--level", "municipality",
                            "--source", "bowtie-test")
    try:
        assert code == 0, output
        assert "feature 2: repaired invalid geometry (Self-intersection" in " ".join(output.split())
        with psycopg.connect(env_db) as conn:
            valid, parts = conn.execute(
                "SELECT bool_and(ST_IsValid(geom)), max(ST_NumGeometries(geom)) FROM boundaries "
                "WHERE source = 'bowtie-test'").fetchone()
        assert valid and parts == 2  # the bowtie became its two triangles
    finally:
        _drop_source(env_db, "bowtie-test")


def test_unclosed_ring_closed_or_rejected_with_strict(env_db: str, tmp_path: Path) -> None:
    path = geojson(tmp_path / "unclosed.geojson", feature("A", "Open", SQUARE[:-1]))
    assert_refused(env_db, [str(path), "--country", "KR", "--level", "municipality", "--strict"],
                   "feature 1, field geometry", "ring not closed")
    code, output = run_load(str(path), "--country", "KR", "--level", "municipality",
                            "--source", "unclosed-test")
    try:
        assert code == 0, output
        assert "feature 1: ring not closed: closed it" in " ".join(output.split())
    finally:
        _drop_source(env_db, "unclosed-test")


def test_file_in_web_mercator_lands_in_the_right_place(env_db: str, tmp_path: Path) -> None:
    path = tmp_path / "seoul_3857.gpkg"
    gpd.GeoDataFrame({"code": ["SEOUL-TEST"], "name": ["Seoul centre"]}, geometry=[SEOUL],
                     crs=4326).to_crs(3857).to_file(path, driver="GPKG")
    code, output = run_load(str(path), "--level", "municipality", "--country", "KR",
                            "--source", "mercator-test")
    try:
        assert code == 0, output
        assert "reprojected from EPSG:3857" in output
        with psycopg.connect(env_db) as conn:
            row = conn.execute(
                "SELECT m.parent_code, r.iso3166_2, ST_XMin(m.geom), ST_YMax(m.geom) "
                "FROM boundaries m JOIN boundaries r ON r.level='region' AND r.code=m.parent_code "
                "WHERE m.source='mercator-test'").fetchone()
        assert row[1] == "KR-11"  # inside Seoul
        assert row[2] == pytest.approx(126.95, abs=1e-6)
        assert row[3] == pytest.approx(37.58, abs=1e-6)
    finally:
        _drop_source(env_db, "mercator-test")


def test_mercator_coordinates_without_crs_are_rejected(env_db: str, tmp_path: Path) -> None:
    metres = [[14130000.0, 4510000.0], [14140000.0, 4510000.0], [14140000.0, 4520000.0],
              [14130000.0, 4510000.0]]
    path = geojson(tmp_path / "nocrs.geojson", feature("A", "Metres", metres))
    # GeoJSON is lon/lat by definition: numbers in metres are out of range
    assert_refused(env_db, [str(path)], "feature 1, field geometry",
                   "out of longitude/latitude range")


def test_code_owned_by_another_source(env_db: str, tmp_path: Path) -> None:
    path = geojson(tmp_path / "clash.geojson", feature("KOR-2500", "Fake Gwangju", SQUARE))
    assert_refused(env_db, [str(path), "--source", "clash"],
                   "code 'KOR-2500' already belongs to source 'natural-earth-admin1'")


def test_failure_during_swap_leaves_previous_data(env_db: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted load (here: Ctrl-C once staging is written) rolls back completely."""
    path = geojson(tmp_path / "ok.geojson", feature("A", "Alpha", SQUARE))
    before = counts(env_db)
    original = store._ensure_tiers

    def interrupted(conn: psycopg.Connection) -> None:
        original(conn)
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_ensure_tiers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_file(env_db, path, LoadOptions(country="KR", level="municipality",
                                            source="interrupted"), Reporter())
    assert counts(env_db) == before




def _drop_source(dsn: str, source: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM boundaries WHERE source = %s", (source,))


def test_regions_and_their_countries_change_together_or_not_at_all(
        settings, env_db: str, default_data, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reloading the regions rebuilds the countries derived from them in the same transaction:
    a load interrupted between the two (here: while the countries are named) leaves the regions
    and countries that were there, not new regions beside old countries."""
    before = counts(env_db)
    with psycopg.connect(env_db) as conn:
        version = conn.execute(DATA_VERSION_SQL).fetchone()[0]

    def interrupted(iso: str, fallback: str | None) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_country_names", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_target(settings, env_db, "natural-earth-admin1", LoadOptions(force=True), Reporter())
    assert counts(env_db) == before
    with psycopg.connect(env_db) as conn:
        assert conn.execute(DATA_VERSION_SQL).fetchone()[0] == version


def test_only_the_allowed_formats_are_read_never_a_vrt_or_a_virtual_path(env_db: str,
                                                                          tmp_path: Path) -> None:
    """A VRT can make GDAL read any local file or fetch an address: it is refused whatever its
    name, as are /vsi paths, URLs, zip archives and folders. Nothing is written."""
    vrt = ('<OGRVRTDataSource><OGRVRTLayer name="passwd"><SrcDataSource>/etc/passwd'
           '</SrcDataSource></OGRVRTLayer></OGRVRTDataSource>')
    for name in ("passwd.vrt", "passwd.geojson", "passwd.gpkg"):
        path = tmp_path / name
        path.write_text(vrt)
        assert_refused(env_db, [str(path)], str(path), "not a GeoPackage, Shapefile, GeoJSON")
    archive = tmp_path / "layer.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert_refused(env_db, [str(archive)], "zip archives included, are not read")
    for virtual in ("/vsicurl/https://example.org/a.gpkg", f"/vsizip/{archive}/a.shp",
                    "https://example.org/a.geojson"):
        assert_refused(env_db, [virtual], "virtual file systems and URLs are not read")
    assert_refused(env_db, [str(tmp_path)], "not a file")


def test_commands_on_a_database_without_the_schema_say_to_upgrade_it() -> None:
    """A database nobody migrated (a fresh DATABASE_URL): the commands that read or write the
    service's tables stop with one line naming the fix, not a traceback, and create nothing."""
    import os
    import secrets
    import subprocess
    import sys

    from psycopg import sql

    from .conftest import _with_database, admin_dsn

    name = f"geo_bare_{os.getpid()}_{secrets.token_hex(3)}"
    admin = admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    bare = _with_database(admin, name)
    geo = str(Path(sys.executable).with_name("geo-service"))
    try:
        for command in (["stats"], ["members", "list"], ["boundaries", "load-defaults"]):
            done = subprocess.run([geo, *command], capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "DATABASE_URL": bare})
            output = done.stdout + done.stderr
            assert done.returncode == 1, (command, output)
            assert "run `geo-service db upgrade` first" in output, (command, output)
            assert "Traceback" not in output, (command, output)
        with psycopg.connect(bare) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                                ).fetchone() == (0,)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
