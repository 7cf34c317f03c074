"""Vector tiles, decoded with mapbox-vector-tile and checked against the database: layers, counts,
attributes, the archive against live rendering, data changes, shared edges and every limit."""

from __future__ import annotations

import asyncio
import gzip
import math

import mapbox_vector_tile
import psycopg
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape

from geo_service.campaign.members import set_override
from geo_service.domain import tier_for_zoom
from geo_service.query import tiles
from geo_service.render import tiles as tilestore
from geo_service.web.app import create_app

ARCHIVE_ZOOM = 3


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def fetch(client: TestClient, tileset: str, z: int, x: int, y: int, lang: str = "en",
          **headers: str) -> bytes:
    response = client.get(f"/tiles/{tileset}/{z}/{x}/{y}.mvt", params={"lang": lang},
                          headers=headers)
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        assert response.content == b""
    return response.content


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data) if data else {}


def tile_box(z: int, x: int, y: int, margin: float = tiles.BUFFER / tiles.EXTENT
             ) -> tuple[float, float, float, float]:
    """The tile and its buffer in lon/lat (west, south, east, north), from the slippy-map
    formulas."""
    n = 1 << z

    def lon(tx: float) -> float:
        return tx / n * 360 - 180

    def lat(ty: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / n))))

    return lon(x - margin), lat(y + 1 + margin), lon(x + 1 + margin), lat(y - margin)


def in_tile(dsn: str, query: str, z: int, x: int, y: int) -> set[str]:
    """Codes whose geometry (given as `geom` in the query) meets the tile and its buffer."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT code FROM ({query}) q WHERE ST_Intersects(q.geom, "
            "ST_MakeEnvelope(%s, %s, %s, %s, 4326))", tile_box(z, x, y)).fetchall()
    return {r[0] for r in rows}


def test_tilejson_for_every_tileset(client) -> None:
    version = client.get("/health").json().get("data_version")
    for name, layers in tiles.TILESETS.items():
        body = client.get(f"/tiles/{name}.json", params={"lang": "fr"}).json()
        assert body["tilejson"] == "3.0.0" and body["scheme"] == "xyz"
        assert [layer["id"] for layer in body["vector_layers"]] == list(layers)
        url = body["tiles"][0]
        assert url.startswith(f"http://testserver/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt?v=")
        assert "lang=fr" in url and (version is None or f"v={version}" in url)
        assert body["minzoom"] == min(tiles.LAYERS[n].minzoom for n in layers)
    assert {t["id"] for t in client.get("/tiles").json()["tilesets"]} == set(tiles.TILESETS)


def test_territories_layer_matches_the_database(client, database_url) -> None:
    """At z0 every shown territory is drawn (a point where its boundary is too small), with its
    attributes; in French the boundary's French name is used where there is one."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT t.id, t.name, coalesce(b.name_fr, t.name), t.kind, t.commitment_kind, t.year, "
            "(SELECT coalesce(string_agg(DISTINCT it.theme_slug, ',' ORDER BY it.theme_slug), '') "
            " FROM initiatives i JOIN initiative_themes it ON it.initiative_id = i.id "
            " WHERE i.territory_id = t.id) FROM territories t LEFT JOIN boundaries b ON "
            "b.level = t.boundary_level AND b.code = t.boundary_code "
            "WHERE t.commitment_kind <> 'engagement-only'").fetchall()
    expected = {r[0]: r for r in rows}
    for lang, name_index in (("en", 1), ("fr", 2)):
        layer = decode(fetch(client, "territories", 0, 0, 0, lang))["territories"]
        found = {f["properties"]["id"]: f["properties"] for f in layer["features"]}
        assert set(found) == set(expected)
        for tid, props in found.items():
            row = expected[tid]
            assert props["name"] == row[name_index]
            assert (props["kind"], props["commitment_kind"]) == (row[3], row[4])
            assert props.get("year") == row[5]
            assert props.get("themes", "") == row[6]
    seoul = decode(fetch(client, "territories", 0, 0, 0, "fr"))["territories"]["features"]
    assert any(f["properties"]["name"] == "Séoul" for f in seoul)
    # a matched boundary is drawn as a polygon once it is big enough
    x, y = tile_xy(126.98, 37.56, 8)
    kinds = {f["properties"]["id"]: f["geometry"]["type"] for f in
             decode(fetch(client, "territories", 8, x, y))["territories"]["features"]}
    assert kinds["kr-metropolitan-area-seoul"] in ("Polygon", "MultiPolygon")


@pytest.mark.parametrize("z", [3, 6, 9])
def test_boundary_layers_match_the_database(client, database_url, z: int) -> None:
    """Over Korea, the regions and municipalities in a tile are those whose shape (at the tier
    the zoom reads) meets the tile; nothing else."""
    x, y = tile_xy(127.0, 37.5, z)
    tier = tier_for_zoom(z)
    geom = f"(SELECT geom FROM boundary_tiers WHERE boundary_id = b.id AND tier = {tier})" \
        if tier else "b.geom"
    decoded = decode(fetch(client, "map", z, x, y))
    for layer in ("regions", "municipalities"):
        level = {"regions": "region", "municipalities": "municipality"}[layer]
        drawn = {f["properties"]["code"] for f in decoded.get(layer, {"features": []})["features"]}
        if z < tiles.LAYERS[layer].minzoom:
            assert not drawn
            continue
        meeting = in_tile(database_url, f"SELECT b.code, {geom} AS geom FROM boundaries b "
                                        f"WHERE b.level = '{level}'", z, x, y)
        assert drawn and drawn <= meeting
        # a shape may only be missing when it merely grazes the buffer or collapses at this zoom
        assert len(meeting - drawn) <= max(2, len(meeting) // 10), sorted(meeting - drawn)
    countries = {f["properties"]["code"] for f in decoded["countries"]["features"]}
    assert "KR" in countries


def test_tiles_at_the_grid_edges_hold_their_land(client) -> None:
    """The first and last columns (their buffer passes ±180°) draw what lies in them."""
    for z, lon, lat, country in ((2, -100.0, 40.0, "US"), (2, 100.0, 35.0, "CN"),
                                 (1, -60.0, -10.0, "BR"), (3, 170.0, -42.0, "NZ"),
                                 (4, -170.0, 64.0, "US")):
        x, y = tile_xy(lon, lat, z)
        codes = {f["properties"]["code"] for f in
                 decode(fetch(client, "countries", z, x, y))["countries"]["features"]}
        assert country in codes, (z, x, y, sorted(codes))


def test_a_layer_of_the_map_tile_is_that_layers_tile(client) -> None:
    x, y = tile_xy(2.35, 48.85, 5)
    whole = fetch(client, "map", 5, x, y)
    assert set(decode(whole)) == {"countries", "regions", "territories"}
    for name in ("countries", "regions", "territories", "municipalities"):
        assert tilestore.layer_of(whole, name) == fetch(client, name, 5, x, y)


def test_adjacent_regions_share_edges_at_low_zoom(client, database_url) -> None:
    """French regions in a z4 tile: every pair of neighbours that shares an edge in the stored
    tier still shares it, at about its length, once quantised to the tile grid (no gap opens),
    and no two regions overlap."""
    z = 4
    x, y = tile_xy(2.35, 46.5, z)
    features = decode(fetch(client, "regions", z, x, y))["regions"]["features"]
    france = {f["properties"]["code"]: shape(f["geometry"]) for f in features
              if f["properties"]["country"] == "FR" and f["geometry"]["type"].endswith("Polygon")}
    assert len(france) >= 12
    with psycopg.connect(database_url) as conn:
        pairs = conn.execute(
            f"WITH box AS (SELECT ST_TileEnvelope({z}, {x}, {y}) AS merc), r AS ("
            "SELECT b.code, ST_Intersection(ST_Transform(bt.geom, 3857), box.merc) AS g "
            "FROM box, boundary_tiers bt JOIN boundaries b ON b.id = bt.boundary_id "
            f"WHERE bt.tier = {tier_for_zoom(z)} AND b.level = 'region' AND b.iso3166_1 = 'FR') "
            "SELECT a.code, c.code, ST_Length(ST_Intersection(a.g, c.g)) * 4096 / "
            "(ST_XMax(box.merc) - ST_XMin(box.merc)) FROM box, r a JOIN r c ON a.code < c.code "
            "AND ST_Intersects(a.g, c.g)").fetchall()
    shared = [(a, c, length) for a, c, length in pairs if length > 20]
    assert len(shared) >= len(france) - 1
    for a, c, length in shared:
        meet = france[a].intersection(france[c])
        assert meet.area < 1.0, f"{a} and {c} overlap"
        assert meet.length >= 0.8 * length, f"{a}/{c}: edge {meet.length:.0f} of {length:.0f} units"


def test_archive_equals_live_and_is_served_until_the_data_changes(client, settings, database_url
                                                                   ) -> None:
    result = asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=ARCHIVE_ZOOM))
    assert not result.skipped and result.largest <= tiles.MAX_TILE_BYTES
    again = asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=ARCHIVE_ZOOM))
    assert again.skipped  # idempotent: same data version, nothing to do
    archive = tilestore.Archive.open(tilestore.archive_path(settings.tiles_dir, "fr"))
    assert archive.version == client.get("/health").json()["data_version"]
    for z in range(ARCHIVE_ZOOM + 1):
        for x in range(1 << z):
            for y in range(1 << z):
                packed = archive.get(z, x, y)
                live = asyncio.run(_live(database_url, z, x, y))
                assert (gzip.decompress(packed) if packed else b"") == live, (z, x, y)
    # served as stored: the very bytes of the archive, gzip as it is
    x, y = tile_xy(35.85, 32.56, 3)  # Irbid, Jordan
    served = client.get(f"/tiles/map/3/{x}/{y}.mvt?lang=fr", headers={"Accept-Encoding": "gzip"})
    assert served.status_code == 200 and gzip.decompress(archive.get(3, x, y)) == served.content
    tag = served.headers["etag"]
    before = _geometry_of(served.content, "jo-municipality-irbid")
    assert before == "Point"
    set_override(database_url, "jo-municipality-irbid", "JO-IR")
    try:  # the archive is stale now: live tiles with the new shape, a new ETag, no restart
        changed = client.get(f"/tiles/map/3/{x}/{y}.mvt?lang=fr", headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag
        assert changed.content != served.content
        # the governorate is under tiles.SMALL_PX pixels at z3 (drawn as its point), above at z4
        x4, y4 = tile_xy(35.85, 32.56, 4)
        assert _geometry_of(client.get(f"/tiles/map/4/{x4}/{y4}.mvt?lang=fr").content,
                            "jo-municipality-irbid") in ("Polygon", "MultiPolygon")
        territories = client.get(f"/tiles/territories/4/{x4}/{y4}.mvt")
        assert _geometry_of(territories.content, "jo-municipality-irbid") != "Point"
    finally:
        set_override(database_url, "jo-municipality-irbid", None)
    assert _geometry_of(client.get(f"/tiles/map/3/{x}/{y}.mvt").content,
                        "jo-municipality-irbid") == "Point"


async def _live(dsn: str, z: int, x: int, y: int, lang: str = "fr") -> bytes:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await tilestore.render(conn, "map", lang, z, x, y)


def _geometry_of(data: bytes, territory: str) -> str | None:
    for feature in decode(data).get("territories", {"features": []})["features"]:
        if feature["properties"]["id"] == territory:
            return feature["geometry"]["type"]
    return None


def test_etag_cache_headers_and_empty_tiles(client) -> None:
    body = client.get("/tiles/map.json").json()
    version = body["tiles"][0].split("v=")[1].split("&")[0]
    first = client.get(f"/tiles/map/2/2/1.mvt?v={version}", headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
    assert first.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert "immutable" in first.headers["cache-control"]
    assert "immutable" not in client.get("/tiles/map/2/2/1.mvt").headers["cache-control"]
    again = client.get("/tiles/map/2/2/1.mvt", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    ocean = client.get("/tiles/map/8/0/100.mvt")  # mid-Pacific
    assert ocean.status_code == 204 and ocean.content == b"" and "etag" in ocean.headers
    assert client.get("/tiles/regions/0/0/0.mvt").status_code == 204  # below its minzoom


@pytest.mark.parametrize("url, status", [
    ("/tiles/map/23/0/0.mvt", 400), ("/tiles/map/-1/0/0.mvt", 400), ("/tiles/map/2/4/0.mvt", 400),
    ("/tiles/map/2/0/4.mvt", 400), ("/tiles/map/2/-1/0.mvt", 400), ("/tiles/map/a/0/0.mvt", 400),
    ("/tiles/map/1/0/1.5.mvt", 400), ("/tiles/map/99999999999999999999/0/0.mvt", 400),
    ("/tiles/nowhere/0/0/0.mvt", 404), ("/tiles/nowhere.json", 404),
    ("/tiles/map/0/0/0.mvt?lang=de", 400), ("/tiles/map/0/0/0.mvt?zoom=1", 400),
    ("/tiles/map.json?lang=xx", 400),
])
def test_bad_tile_requests_are_problem_details(client, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_tiles_stay_under_the_size_limit(client) -> None:
    """The densest tiles we know (all regions at z2, municipalities where they are smallest:
    Rhineland-Palatinate, Lombardy, Los Angeles County, Seoul, at the first zoom that draws
    them) stay under 500 KB; and trimming keeps whole layers, territories first, when a tile
    would not."""
    first = tiles.LAYERS["municipalities"].minzoom
    for z, (lon, lat) in ((2, (10.0, 45.0)), (2, (100.0, 30.0)), (5, (127.5, 36.5)),
                          (first, (7.6, 49.9)), (first, (9.5, 45.6)), (first, (-118.2, 34.0)),
                          (first, (127.0, 37.5))):
        x, y = tile_xy(lon, lat, z)
        assert len(fetch(client, "map", z, x, y, "es")) <= tiles.MAX_TILE_BYTES
    x, y = tile_xy(10.0, 45.0, 2)
    whole = fetch(client, "map", 2, x, y)
    territories = tilestore.layer_of(whole, "territories")
    countries = tilestore.layer_of(whole, "countries")
    kept = tilestore.trim(whole, limit=len(territories) + len(countries) + 10)
    assert set(decode(kept)) == {"territories", "countries"}
    assert tilestore.trim(whole, limit=len(territories)) == territories


def test_ogc_api_tiles_routes_serve_the_same_tiles(client) -> None:
    """/collections/{id}/tiles/WebMercatorQuad/{z}/{row}/{col}: row is y, col is x."""
    x, y = tile_xy(2.35, 48.85, 4)
    ogc = client.get(f"/collections/regions/tiles/WebMercatorQuad/4/{y}/{x}")
    assert ogc.status_code == 200 and ogc.content == fetch(client, "regions", 4, x, y)
    listing = client.get("/collections/territories/tiles").json()["tilesets"][0]
    item = next(link for link in listing["links"] if link["rel"] == "item")
    assert item["href"].endswith("/collections/territories/tiles/WebMercatorQuad/"
                                 "{tileMatrix}/{tileRow}/{tileCol}") and item["templated"]
    assert client.get("/collections/uclg-sections/tiles").status_code == 404


def test_an_archive_from_another_renderer_is_neither_served_nor_kept(settings, database_url,
                                                                     client, monkeypatch) -> None:
    asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=1))
    version = client.get("/health").json()["data_version"]
    identity = client.app.state.archives.database
    assert tilestore.Archives(settings.tiles_dir, identity).current("en", version) is not None
    monkeypatch.setattr(tiles, "RENDERER_VERSION", tiles.RENDERER_VERSION + 1)
    assert tilestore.Archives(settings.tiles_dir, identity).current("en", version) is None
    rebuilt = asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=1))
    assert not rebuilt.skipped
    assert tilestore.Archives(settings.tiles_dir, identity).current("en", version) is not None


def test_with_no_cache_and_no_archive_a_tile_reads_its_version_in_its_own_statement(
        settings, database_url, tmp_path, monkeypatch) -> None:
    """With the tile cache off and no archive file, a request without If-None-Match reads its
    tile and data version in one statement (the separate version query is never called), and
    answers what the usual path answers: the same bytes, ETag and headers, 204 when empty, a new
    ETag after a write."""
    from geo_service.web import tiles as web_tiles

    uncached = settings.model_copy(update={"tile_cache_mb": 0, "tiles_dir": tmp_path})
    x, y = tile_xy(35.85, 32.56, 6)  # Irbid, Jordan
    url = f"/tiles/map/6/{x}/{y}.mvt"
    ocean = "/tiles/map/6/{}/{}.mvt".format(*tile_xy(-140.0, -40.0, 6))
    kept = ("etag", "cache-control", "vary", "content-encoding")

    async def no_version(conn) -> str:
        raise AssertionError("the data version was read in a statement of its own")

    with TestClient(create_app(uncached)) as client:
        fast = {}
        with monkeypatch.context() as patch:
            patch.setattr(web_tiles, "data_version", no_version)
            for encoding in ("gzip", "identity"):
                fast[encoding] = client.get(url, headers={"Accept-Encoding": encoding})
                assert fast[encoding].status_code == 200, fast[encoding].text
            assert client.get(ocean).status_code == 204
        for encoding, answer in fast.items():  # the usual path: the version first
            usual = client.get(url, headers={"Accept-Encoding": encoding, "If-None-Match": '"x"'})
            assert usual.content == answer.content
            assert [usual.headers.get(k) for k in kept] == [answer.headers.get(k) for k in kept]
        assert fast["gzip"].headers["content-encoding"] == "gzip"
        tag = fast["gzip"].headers["etag"]
        assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
        set_override(database_url, "jo-municipality-irbid", "JO-IR")
        try:
            with monkeypatch.context() as patch:
                patch.setattr(web_tiles, "data_version", no_version)
                changed = client.get(url)
            assert changed.headers["etag"] != tag and changed.content != fast["gzip"].content
            assert changed.content == asyncio.run(_live(database_url, 6, x, y, "en"))
        finally:
            set_override(database_url, "jo-municipality-irbid", None)


@pytest.mark.parametrize("damage", ["junk", "truncated", "empty"])
def test_an_unreadable_archive_file_is_neither_served_nor_kept(settings, database_url, caplog,
                                                                damage: str) -> None:
    """A map archive that is junk, cut short or empty (a copy interrupted, a disk fault) is
    logged and passed over: tiles are drawn live, never a 500, and the next build writes it
    anew in full."""
    asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=1))
    path = tilestore.archive_path(settings.tiles_dir, "en")
    whole = path.read_bytes()
    path.write_bytes({"junk": b"not a pmtiles archive " * 20, "truncated": whole[:len(whole) // 2],
                      "empty": b""}[damage])
    x, y = tile_xy(2.35, 48.85, 1)
    live = asyncio.run(_live(database_url, 1, x, y, "en"))
    with TestClient(create_app(settings)) as fresh:  # a server that opens the damaged file
        served = fresh.get(f"/tiles/map/1/{x}/{y}.mvt?lang=en")
        assert served.status_code == 200, served.text
        assert served.content == live
        assert fresh.app.state.archive_tiles_served == 0
        other = fresh.get(f"/tiles/map/1/{x}/{y}.mvt?lang=fr")  # its sound sibling still serves
        assert other.status_code == 200 and fresh.app.state.archive_tiles_served == 1
    assert any(str(path) in r.getMessage() and "tiles build" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    rebuilt = asyncio.run(tilestore.build(database_url, settings.tiles_dir, max_zoom=1))
    assert not rebuilt.skipped and rebuilt.full_because == "no readable archive for en"
    archive = tilestore.Archive.open(path)
    assert len(archive) == rebuilt.tiles and gzip.decompress(archive.get(1, x, y)) == live


@pytest.mark.parametrize("layer, level", [("countries", "country"), ("regions", "region")])
def test_tiers_stored_in_web_mercator_draw_the_shapes_projected_per_request(
        client, database_url, layer: str, level: str) -> None:
    """Tiles read the generalized tiers as stored in EPSG:3857 (`geom_3857`); inside the tile
    they draw what projecting the stored EPSG:4326 tier per request drew (the features and, to
    a fraction of a tile unit, their shapes): only clipping in the buffer may differ."""
    from shapely import wkb
    from shapely.geometry import box

    extent = box(0, 0, tiles.EXTENT, tiles.EXTENT)
    compared = 0
    for z, lon, lat in ((2, 2.35, 48.85), (5, 2.35, 48.85), (6, 126.98, 37.56), (7, -99.13, 19.43)):
        x, y = tile_xy(lon, lat, z)
        tier = tier_for_zoom(z)
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "WITH box AS (SELECT ST_TileEnvelope(%s, %s, %s) AS merc, "
                "ST_MakeEnvelope(%s, %s, %s, %s, 4326) AS geo) "
                "SELECT b.code, ST_AsBinary(ST_AsMVTGeom(ST_Transform(ST_ClipByBox2D(bt.geom, "
                "box.geo), 3857), box.merc, %s, %s, true)) FROM box, boundaries b JOIN "
                "boundary_tiers bt ON bt.boundary_id = b.id AND bt.tier = %s "
                "WHERE b.level = %s AND bt.geom && box.geo",
                (z, x, y, *tile_box(z, x, y), tiles.EXTENT, tiles.BUFFER, tier, level)).fetchall()
        expected = {code: wkb.loads(bytes(g)) for code, g in rows if g is not None}
        features = mapbox_vector_tile.decode(fetch(client, layer, z, x, y),
                                             default_options={"y_coord_down": True})
        drawn = {f["properties"]["code"]: shape(f["geometry"]) for f in
                 features.get(layer, {"features": []})["features"]}
        assert drawn and set(drawn) == set(expected), (z, set(drawn) ^ set(expected))
        for code, found in drawn.items():
            inside, wanted = (g.buffer(0).intersection(extent) for g in (found, expected[code]))
            # quantised to the same grid: at most a few units of area move along the clip edges
            assert inside.symmetric_difference(wanted).area <= 2 + 0.001 * wanted.area, (z, code)
            compared += 1
    assert compared > 50


def test_members_under_a_few_pixels_are_drawn_as_their_points(client, database_url) -> None:
    """In the tile that holds its point, a member whose box is under tiles.SMALL_PX pixels at
    that zoom is a Point (its shape is not read), and a larger one holding its point is its
    shape: both kinds occur at z5."""
    z = 5
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT t.id, ST_X(t.location), ST_Y(t.location), ST_XMax(t.bbox) - ST_XMin(t.bbox), "
            "ST_YMax(t.bbox) - ST_YMin(t.bbox), (ST_YMax(t.bbox) + ST_YMin(t.bbox)) / 2, "
            "ST_Contains(b.geom, t.location) FROM territories t JOIN boundaries b ON b.level = "
            "t.boundary_level AND b.code = t.boundary_code "
            "WHERE t.commitment_kind <> 'engagement-only'").fetchall()
    pixel = 360 / 2 ** z / 256
    kinds: dict[str, int] = {"small": 0, "large": 0}
    tiles_seen: dict[tuple[int, int], bytes] = {}
    for tid, lon, lat, width, height, middle, holds_point in rows:
        size = max(width, height / math.cos(math.radians(min(abs(middle), 85))))
        small = size < tiles.SMALL_PX * pixel
        if not small and not holds_point:
            continue  # its point may lie in a tile its clipped shape misses
        x, y = tile_xy(lon, lat, z)
        data = tiles_seen.setdefault((x, y), fetch(client, "territories", z, x, y))
        geometry = _geometry_of(data, tid)
        assert geometry == "Point" if small else geometry in ("Polygon", "MultiPolygon"), (tid, size)
        kinds["small" if small else "large"] += 1
    assert kinds["small"] >= 5 and kinds["large"] >= 5, kinds
