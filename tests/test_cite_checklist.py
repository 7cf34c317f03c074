"""A checklist of the OGC CITE ets-ogcapi-features10 core assertions, run on every collection."""

from __future__ import annotations

import pytest
import shapely.geometry
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV30SpecValidator

from geo_service.query.collections import COLLECTIONS

CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
GEOJSON = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
OAS30 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30"


def local(href: str) -> str:
    return href.replace("http://testserver", "")


def test_landing_page(client) -> None:  # /conf/core/root-op, root-success
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    links = {link["rel"]: link for link in response.json()["links"]}
    assert {"service-desc", "conformance", "data"} <= set(links)
    for link in links.values():
        assert link["href"].startswith("http") and "type" in link
    api = client.get(local(links["service-desc"]["href"]))  # /conf/oas30/oas-definition-1
    assert api.status_code == 200 and api.json()["openapi"].startswith("3.0")
    validate(api.json(), cls=OpenAPIV30SpecValidator)  # a valid OpenAPI 3.0 document


def test_conformance(client) -> None:  # /conf/core/conformance-op, conformance-success
    classes = client.get("/conformance").json()["conformsTo"]
    assert {CORE, GEOJSON, OAS30} <= set(classes)


def test_collections_metadata(client) -> None:  # /conf/core/fc-md-op .. fc-md-extent
    body = client.get("/collections").json()
    assert any(link["rel"] == "self" for link in body["links"])
    listed = {c["id"]: c for c in body["collections"]}
    assert set(listed) == set(COLLECTIONS)
    for cid, collection in listed.items():
        items = [link for link in collection["links"] if link["rel"] == "items"]
        assert items and items[0]["type"] == "application/geo+json"
        minx, miny, maxx, maxy = collection["extent"]["spatial"]["bbox"][0]
        assert -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90
        assert collection["extent"]["spatial"]["crs"].endswith("CRS84")
        single = client.get(f"/collections/{cid}").json()  # /conf/core/sfc-md-success
        assert single["id"] == cid and single["extent"] == collection["extent"]


@pytest.mark.parametrize("cid", list(COLLECTIONS))
def test_items_limit_paging_and_counts(client, cid: str) -> None:  # /conf/core/fc-*-response
    first = client.get(f"/collections/{cid}/items", params={"limit": 2})
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/geo+json"
    body = first.json()
    assert body["type"] == "FeatureCollection"
    assert body["numberReturned"] == len(body["features"]) <= 2
    assert body["numberMatched"] >= body["numberReturned"]
    assert any(link["rel"] == "self" for link in body["links"])
    assert "crs" not in body  # RFC 7946
    if body["numberMatched"] > 2:
        following = next(link for link in body["links"] if link["rel"] == "next")
        second = client.get(local(following["href"])).json()
        assert {f["id"] for f in second["features"]}.isdisjoint(f["id"] for f in body["features"])
    for feature in body["features"]:  # /conf/core/f-op, f-success
        one = client.get(f"/collections/{cid}/items/{feature['id']}")
        assert one.status_code == 200
        assert one.json()["type"] == "Feature" and one.json()["id"] == feature["id"]
        assert {link["rel"] for link in one.json()["links"]} >= {"self", "collection"}


@pytest.mark.parametrize("cid", ["countries", "regions", "territories", "initiatives"])
def test_bbox_is_crs84_and_respected(client, cid: str) -> None:  # /conf/core/fc-bbox-*
    bbox = (-18.0, 4.0, 16.0, 28.0)  # West Africa, lon/lat
    body = client.get(f"/collections/{cid}/items",
                      params={"bbox": ",".join(map(str, bbox)), "limit": 1000}).json()
    assert body["numberReturned"] > 0
    box = shapely.geometry.box(*bbox)
    for feature in body["features"]:
        assert shapely.geometry.shape(feature["geometry"]).buffer(0.01).intersects(box)
    swapped = client.get(f"/collections/{cid}/items", params={"bbox": "4,-18,28,16"}).json()
    assert swapped["numberMatched"] != body["numberMatched"]  # axis order is lon, lat


def test_unknown_parameter_and_limits(client) -> None:  # /conf/core/query-param-invalid
    for query in ("unknown=1", "limit=0", "limit=-5", "limit=abc", "bbox=1,2,3"):
        response = client.get(f"/collections/territories/items?{query}")
        assert response.status_code == 400, query
    assert client.get("/collections/territories/items/does-not-exist").status_code == 404
