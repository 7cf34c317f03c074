"""The API skeleton over a real PostGIS: /health and a boundaries collection built in SQL."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout

from geo_service.settings import Settings
from geo_service.web.app import create_app


def test_health_reports_counts_and_versions_only_when_allowed(client: TestClient,
                                                                settings: Settings) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert not {"postgis", "postgres", "service_version"} & set(body)  # hidden by default
    with TestClient(create_app(settings.model_copy(update={"health_versions": True}))) as shown:
        assert shown.get("/health").json()["postgis"].startswith("3.")
    from alembic.script import ScriptDirectory

    from geo_service.db import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head and body["schema_revision"] == head  # the latest migration is applied
    assert body["boundaries"]["region"] == 4596
    assert body["boundaries"]["country"] >= 200
    assert body["boundaries"]["municipality"] >= 250


def test_startup_fails_without_a_database() -> None:
    settings = Settings(database_url="postgresql://nobody:x@127.0.0.1:9/none",
                        db_connect_timeout_s=1)
    with pytest.raises(PoolTimeout), TestClient(create_app(settings)):
        pass  # the pool is checked at start-up: no database, no service


def test_regions_of_a_country_as_geojson(client: TestClient) -> None:
    response = client.get("/collections/regions/items", params={"country": "kr", "limit": 5})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = json.loads(response.text)
    assert body["type"] == "FeatureCollection"
    assert body["numberMatched"] == 17 and body["numberReturned"] == 5
    assert len(body["features"]) == 5
    first = body["features"][0]
    assert first["geometry"]["type"] == "MultiPolygon"
    lon, lat = first["geometry"]["coordinates"][0][0][0]
    assert 124 < lon < 132 and 33 < lat < 39
    assert set(first["properties"]) >= {"code", "name", "iso3166_2", "parent_code"}


def test_paging_reaches_the_end(client: TestClient) -> None:
    seen = []
    offset = 0
    while True:
        body = client.get("/collections/municipalities/items",
                          params={"country": "KR", "limit": 100, "offset": offset}).json()
        seen += [f["id"] for f in body["features"]]
        if body["numberReturned"] < 100:
            break
        offset += 100
    assert len(seen) == len(set(seen)) == body["numberMatched"] == 253


def test_pages_follow_the_order_of_one_long_page(client: TestClient) -> None:
    """Past the first page the page's keys are chosen first (deep offsets stay cheap): the pages
    put together are the long page, in its order, sorted or not."""
    for sortby in (None, "-name"):
        params = {"country": "SE"} | ({"sortby": sortby} if sortby else {})
        whole = client.get("/collections/municipalities/items",
                           params=params | {"limit": 300, "zoom": 2}).json()
        paged = []
        for offset in range(0, 300, 40):
            page = client.get("/collections/municipalities/items",
                              params=params | {"limit": 40, "offset": offset, "zoom": 2}).json()
            paged += [(f["id"], f["properties"]["name"]) for f in page["features"]]
        assert whole["numberMatched"] == 290
        assert paged == [(f["id"], f["properties"]["name"]) for f in whole["features"]]


def test_children_of_a_region(client: TestClient) -> None:
    regions = client.get("/collections/regions/items", params={"country": "KR", "limit": 17}).json()
    gwangju = next(f for f in regions["features"] if f["properties"]["iso3166_2"] == "KR-29")
    body = client.get("/collections/municipalities/items", params={"parent": gwangju["id"]}).json()
    assert sorted(f["properties"]["national_code"] for f in body["features"]) == [
        "29110", "29140", "29155", "29170", "29200"]


@pytest.mark.parametrize("url, status", [
    ("/collections/nowhere/items", 404),
    ("/collections/regions/items?limit=abc", 400),
    ("/collections/regions/items?limit=0", 400),
    ("/collections/regions/items?limit=10001", 400),
    ("/collections/regions/items?offset=-1", 400),
    ("/collections/regions/items?country=FRA", 400),
])
def test_client_errors_are_problem_details(client: TestClient, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


@pytest.mark.parametrize("collection, params, says", [
    ("regions", {"country": "UK"}, "'UK' is not an ISO 3166-1 alpha-2 code (GB is meant?)"),
    ("territories", {"country": "xx"}, "'xx' is not an ISO 3166-1 alpha-2 code"),
    ("territories", {"theme": "flying"}, "theme='flying' is not known: one of "),
    ("initiatives", {"theme": "Housing"}, "theme='Housing' is not known: one of "),
    ("territories", {"kind": "city"}, "kind='city' is not known: one of association, "
                                      "metropolitan-area, municipality, region"),
    ("territories", {"commitment_kind": "signed"}, "commitment_kind='signed' is not known"),
])
def test_a_filter_value_that_names_nothing_is_a_400_not_an_empty_page(
        client: TestClient, collection: str, params: dict[str, str], says: str) -> None:
    response = client.get(f"/collections/{collection}/items", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


def test_known_filter_values_select_as_before(client: TestClient) -> None:
    def matched(collection: str, **params: str) -> int:
        response = client.get(f"/collections/{collection}/items", params={**params, "limit": 1})
        assert response.status_code == 200, response.text
        return response.json()["numberMatched"]

    themes = client.get("/collections/territories/items", params={"limit": 1000}).json()
    housing = sum("housing" in f["properties"]["themes"] for f in themes["features"])
    assert housing > 0 and matched("territories", theme="housing") == housing
    assert matched("territories", kind="region") > 0
    assert matched("territories", commitment_kind="engagement-only") == 0  # hidden unless asked
    assert matched("territories", commitment_kind="engagement-only",
                   include_engagement="true") > 0
    assert matched("territories", country="aq") == 0  # a real code without members: empty
    matched("territories", country="XK")  # Kosovo's code, not ISO's, is taken: a 200


def test_a_filter_binds_and_before_or(client: TestClient) -> None:
    def matched(expression: str) -> int:
        response = client.get("/collections/territories/items",
                              params={"filter": expression, "limit": 1})
        assert response.status_code == 200, response.text
        return response.json()["numberMatched"]

    # the two sides of the OR select disjoint years, so the OR's count is their sum
    mixed = matched("year > 2018 OR year < 2016 AND kind = 'municipality'")
    assert mixed == matched("year > 2018") + matched("year < 2016 AND kind = 'municipality'")
    assert mixed != matched("(year > 2018 OR year < 2016) AND kind = 'municipality'")


def test_health_reports_each_caches_hits_and_misses(settings: Settings) -> None:
    """A page asked for twice is one miss then one hit of the response cache; a tile twice, of
    the tile cache; /health says so, with what each cache keeps and may keep."""
    with TestClient(create_app(settings)) as fresh:
        before = fresh.get("/health").json()["caches"]
        assert before["responses"] == {"hits": 0, "misses": 0, "hit_ratio": None, "entries": 0,
                                       "bytes": 0, "max_bytes": settings.response_cache_mb << 20}
        for _ in range(2):
            assert fresh.get("/collections/regions/items?limit=3").status_code == 200
            assert fresh.get("/tiles/regions/9/259/176.mvt").status_code == 200  # Paris
        caches = fresh.get("/health").json()["caches"]
    assert caches["responses"]["hits"] == 1 and caches["responses"]["misses"] == 1
    assert caches["responses"]["hit_ratio"] == 0.5 and caches["responses"]["entries"] == 1
    assert caches["tiles"]["hits"] == 1 and caches["tiles"]["misses"] == 1
    assert 0 < caches["responses"]["bytes"] <= caches["responses"]["max_bytes"]
    assert caches["archive_tiles_served"] == 0  # z9 is beyond any archive
