"""Real clients over HTTP: GDAL's OAPIF driver (via pyogrio) and OWSLib read every collection,
following `next` to the end; counts equal the database's. QGIS (Debian's, offscreen) declares each
collection's geometry type and draws the members' boundaries."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pyogrio
import pytest
from owslib.ogcapi.features import Features

from geo_service.query.collections import COLLECTIONS

EXPECTED_COUNTS = {
    "countries": "SELECT count(*) FROM boundaries WHERE level = 'country'",
    "regions": "SELECT count(*) FROM boundaries WHERE level = 'region'",
    "municipalities": "SELECT count(*) FROM boundaries WHERE level = 'municipality'",
    "territories": "SELECT count(*) FROM territories WHERE commitment_kind <> 'engagement-only'",
    "initiatives": "SELECT count(*) FROM initiatives i JOIN territories t ON t.id = i.territory_id "
                   "WHERE t.commitment_kind <> 'engagement-only'",
    "uclg-sections": "SELECT count(*) FROM uclg_sections",
    "territory-boundaries": "SELECT count(*) FROM territories WHERE commitment_kind <> "
                            "'engagement-only' AND boundary_code IS NOT NULL",
}


def count(dsn: str, collection: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(EXPECTED_COUNTS[collection]).fetchone()[0]


def test_gdal_lists_every_collection(server: str) -> None:
    layers = {name for name, _ in pyogrio.list_layers(f"OAPIF:{server}")}
    assert layers == set(COLLECTIONS)


# Spain with the Canaries: its municipalities lie wholly inside, and no other country's are near
SPAIN = (-19.0, 27.0, 5.0, 44.5)


@pytest.mark.parametrize("collection", ["territories", "territory-boundaries", "regions",
                                        "municipalities", "initiatives"])
def test_gdal_reads_to_the_end(server: str, database_url: str, collection: str) -> None:
    if collection == "municipalities":  # Spain's 8,119 over 9 pages (all 63k would take a minute)
        frame = pyogrio.read_dataframe(f"OAPIF:{server}", layer=collection, bbox=SPAIN)
        with psycopg.connect(database_url) as conn:
            spain = conn.execute("SELECT count(*) FROM boundaries WHERE level = 'municipality' "
                                 "AND iso3166_1 = 'ES'").fetchone()[0]
        assert len(frame) == spain > 8000 and set(frame["iso3166_1"]) == {"ES"}
    else:
        frame = pyogrio.read_dataframe(f"OAPIF:{server}", layer=collection)
        assert len(frame) == count(database_url, collection)
    assert frame.crs.to_string() == "OGC:CRS84"  # longitude, latitude
    assert frame.geometry.notna().all()
    # one geometry type per layer, as GDAL and QGIS declare it
    types = set(frame.geom_type)
    assert types == {"Point"} or types <= {"Polygon", "MultiPolygon"}, types


def test_gdal_opens_one_collection_with_a_filter(server: str) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{server}/collections/territories",
                                   where="country = 'KR'")
    assert sorted(frame["name"]) == ["Busan", "Gwangju", "Seoul"]
    bbox = pyogrio.read_dataframe(f"OAPIF:{server}/collections/regions",
                                  bbox=(126.7, 35.0, 127.0, 35.3))
    assert "KR-29" in set(bbox["iso3166_2"])


def test_owslib_lists_collections_and_pages_with_next(server: str, database_url: str) -> None:
    api = Features(server)
    assert {c["id"] for c in api.collections()["collections"]} == set(COLLECTIONS)
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in \
        api.conformance()["conformsTo"]
    for collection in ("territories", "regions"):
        seen: list[str] = []
        params = {"limit": 500}
        pages = 0
        while True:
            page = api.collection_items(collection, **params)
            pages += 1
            seen += [f["id"] for f in page["features"]]
            following = [link for link in page["links"] if link["rel"] == "next"]
            if not following:
                break
            query = parse_qs(urlsplit(following[0]["href"]).query)
            params = {k: v[0] for k, v in query.items()}
        assert len(seen) == len(set(seen)) == count(database_url, collection)
        assert page["numberMatched"] == len(seen)
        assert pages == -(-len(seen) // 500)


QGIS_PROBE = Path(__file__).parent / "clients" / "qgis_probe.py"


def test_qgis_declares_one_geometry_type_per_layer_and_draws_the_boundaries(
        server: str, database_url: str) -> None:
    """QGIS 3.22 declares an OAPIF layer's geometry type from its features. `territories` is a
    point layer of points only; `territory-boundaries` a polygon layer that QGIS draws (a polygon
    inside a point layer draws nothing: what desktop users saw before)."""
    gwangju = "id=kr-metropolitan-area-gwangju"
    run = subprocess.run(
        ["/usr/bin/python3", str(QGIS_PROBE), server, gwangju, "territories",
         "territory-boundaries"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-2000:]
    layers = json.loads(run.stdout.strip().splitlines()[-1])
    points, shapes = layers["territories"], layers["territory-boundaries"]
    assert points["valid"] and shapes["valid"]
    assert points["declared"] == "Point"
    assert points["features"] == {"Point": count(database_url, "territories")}
    assert shapes["declared"] == "MultiPolygon"
    assert shapes["features"] == {"MultiPolygon": count(database_url, "territory-boundaries")}
    # Gwangju's 498 km² fill a good part of a 300×300 image of its bounding box; its point
    # marker in the point layer only a few
    assert shapes["pixels"] > 10_000
    assert 0 < points["pixels"] < 2_000


@pytest.mark.parametrize("path", [
    "/", "/collections", "/collections/regions/items?limit=1", "/tiles/map/0/0/0.mvt",
    "/api/stats", "/map", "/territories", "/nope", "/collections/regions/items?limit=x"])
def test_head_answers_as_get_without_the_body(server: str, path: str) -> None:
    """Link checkers, uptime monitors and `curl -I` ask with HEAD: the status and headers GET
    gives (ETag, type, encoding, length), no body; and 304 for an ETag the client holds."""
    import http.client

    host = urlsplit(server).netloc

    def ask(method: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(host, timeout=30)
        try:
            conn.request(method, path, headers={"Accept-Encoding": "gzip", **headers})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, \
                response.read()
        finally:
            conn.close()

    status, got, body = ask("GET")
    head_status, head, head_body = ask("HEAD")
    assert (head_status, head_body) == (status, b""), path
    assert body or status == 204
    same = ("content-type", "content-encoding", "etag", "cache-control")
    assert {k: head.get(k) for k in same} == {k: got.get(k) for k in same}, path
    if path != "/map":  # the map page carries a fresh nonce each time: its gzipped length varies
        assert head.get("content-length") == got.get("content-length"), path
    if "etag" in got:
        assert ask("HEAD", **{"If-None-Match": got["etag"]})[0] == 304, path
