"""Real clients over HTTP: GDAL's OAPIF driver (via pyogrio) and OWSLib read every collection,
following `next` to the end; counts equal the database's."""

from __future__ import annotations

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
}


def count(dsn: str, collection: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(EXPECTED_COUNTS[collection]).fetchone()[0]


def test_gdal_lists_every_collection(server: str) -> None:
    layers = {name for name, _ in pyogrio.list_layers(f"OAPIF:{server}")}
    assert layers == set(COLLECTIONS)


@pytest.mark.parametrize("collection", ["territories", "regions", "municipalities", "initiatives"])
def test_gdal_reads_to_the_end(server: str, database_url: str, collection: str) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{server}", layer=collection)
    assert len(frame) == count(database_url, collection)
    assert frame.crs.to_string() == "OGC:CRS84"  # longitude, latitude
    assert frame.geometry.notna().all()


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
