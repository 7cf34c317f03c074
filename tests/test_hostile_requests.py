"""Hostile requests, one by one: each gets a 4xx problem details saying what is wrong (never a
5xx), and text that looks like markup is drawn as written."""

from __future__ import annotations

import pytest

REFUSED = [  # (request, status, words of the detail)
    ("/collections/territories/items/a%00", 400, "control character (U+0000)"),
    ("/collections/territories/items?kind=%00", 400, "parameter kind"),
    ("/export/map.png?region=%00", 400, "control character"),
    ("/collections/%00/items", 400, "the path holds"),
    ("/tiles/map/0/0/0.mvt?lang=en%1B", 400, "U+001B"),
    ("/map?theme=%7F", 400, "U+007F"),
    ("/collections/territories/items?f%00=1", 400, "parameter name"),
    ("/collections/territories/items/%FF", 400, "not UTF-8"),
    ("/collections/territories/items?sortby=%FF%FE", 400, "not UTF-8"),
    ("/collections/territories/items?datetime=2020-13", 400, "month must be in 1..12"),
    ("/collections/territories/items?datetime=2020-02-30", 400, "day is out of range"),
    ("/collections/territories/items?datetime=2021-02-29/..", 400, "2021-02-29"),
    ("/collections/territories/items?datetime=2020-01-01T24:61:00Z", 400, "not a real date"),
    ("/collections/territories/items?datetime=0000", 400, "not a real date"),
    ("/collections/territories/items?filter=name%20LIKE%20%27%25%5C%27", 400,
     "must not end with escape"),
    ("/collections/territories/items?filter=year%20%3D%20%27abc%27", 400, "is a number"),
    ("/collections/territories/items?bbox=1e400,0,1,1", 400, "bbox"),
    ("/collections/territories/items?limit=99999999999999999999", 400, "limit"),
    ("/tiles/map/1/" + "9" * 5000 + "/0.mvt", 400, "exceeded maximum size"),
    ("/tiles/map/" + "9" * 5000 + "/0/0.mvt", 400, "exceeded maximum size"),
    ("/tiles/map/99999999/0/0.mvt", 400, "outside 0–22"),
]


@pytest.mark.parametrize(("url", "status", "words"), REFUSED)
def test_hostile_request_is_refused_with_what_is_wrong(client, url: str, status: int,
                                                       words: str) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"], response.json()


@pytest.mark.parametrize("url", [
    "/export/map.svg?preset=square&title=%24%5Cfoo%24&subtitle=%24x%5E2%24",
    "/export/map.svg?preset=square&title=A%0Atwo-line%09title",
])
def test_text_that_looks_like_math_is_drawn_as_written(client, url: str) -> None:
    """matplotlib would read `$\\foo$` as math markup and fail on it: text is never parsed."""
    response = client.get(url)
    assert response.status_code == 200, response.text
    svg = response.text
    if "foo" in url:
        assert "$\\foo$" in svg and "$x^2$" in svg  # as written, not typeset
    else:
        assert "two-line" in svg


def test_a_database_data_error_is_a_400_with_its_primary_message_only(client) -> None:
    """An error PostgreSQL raises over a value (here a LIKE pattern) is the client's: its first
    line is the detail, without the statement it came from."""
    response = client.get("/collections/territories/items?filter=name%20LIKE%20%27%25%5C%27")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "SELECT" not in detail and "LINE" not in detail


def test_every_response_says_nosniff_and_svg_runs_no_script(client) -> None:
    for url in ("/collections", "/collections/territories/items?limit=1", "/map",
                "/collections/nothing", "/tiles/map/0/0/0.mvt", "/static/map.js"):
        assert client.get(url).headers["x-content-type-options"] == "nosniff", url
    svg = client.get("/export/map.svg?preset=square")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    policy = svg.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy and "script" not in policy


def test_links_use_the_public_url_not_the_host_header(settings) -> None:
    """Absolute links, embed code and oEmbed trust the configured public URL; a forged Host
    header changes nothing."""
    from fastapi.testclient import TestClient

    from geo_service.web.app import create_app

    public = "https://map.example.org"
    forged = {"Host": "evil.example"}
    with TestClient(create_app(settings.model_copy(update={"public_url": public}))) as client:
        links = client.get("/collections", headers=forged).json()["links"]
        assert links and all(link["href"].startswith(public) for link in links)
        assert f'src="{public}/embed' in client.get("/embed/code", headers=forged).text
        ours = client.get("/oembed", params={"url": f"{public}/map"}, headers=forged)
        assert ours.status_code == 200 and public in ours.json()["html"]
        theirs = client.get("/oembed", params={"url": "http://evil.example/map"}, headers=forged)
        assert theirs.status_code == 404
    with TestClient(create_app(settings)) as client:  # without it: as the client reached us
        assert client.get("/collections").json()["links"][0]["href"].startswith("http://testserver")


def test_custom_titles_on_credited_images_follow_the_setting(settings) -> None:
    from fastapi.testclient import TestClient

    from geo_service.web.app import create_app

    closed = settings.model_copy(update={"image_custom_text": False})
    with TestClient(create_app(closed)) as client:
        refused = client.get("/export/map.svg?preset=square&title=Not%20ours")
        assert refused.status_code == 400 and "GEO_IMAGE_CUSTOM_TEXT" in refused.json()["detail"]
        assert client.get("/export/map.svg?preset=square").status_code == 200


def _not_chain(depth: int) -> str:
    """CQL2-JSON NOT(NOT(... name = 'x')), written as text (json.dumps would recurse)."""
    return ('{"op":"not","args":[' * depth + '{"op":"=","args":[{"property":"name"},"x"]}'
            + "]}" * depth)


@pytest.mark.parametrize(("params", "words"), [
    ({"filter": " AND ".join(["name = 'x'"] * 900)}, "nested too deeply (at most 100 levels)"),
    ({"filter": _not_chain(900), "filter-lang": "cql2-json"}, "nested too deeply"),
    ({"filter": "[" * 5000 + "]" * 5000, "filter-lang": "cql2-json"}, "filter"),
    ({"filter": "name IN (" + ",".join(f"'n{i}'" for i in range(1200)) + ")"},
     "too long (at most 1000"),
])
def test_filters_past_the_depth_and_size_limits_are_a_400(client, params: dict,
                                                          words: str) -> None:
    """Deep or long filters would recurse through the translator and PostgreSQL's planner
    (a 500 before the limits): refused up front."""
    response = client.get("/collections/territories/items", params=params)
    assert response.status_code == 400, response.text[:300]
    assert words in response.json()["detail"], response.json()


def test_a_long_but_reasonable_filter_still_answers(client) -> None:
    chain = " OR ".join(f"name = 'n{i}'" for i in range(90)) + " OR name = 'Graz'"
    response = client.get("/collections/territories/items", params={"filter": chain})
    assert response.status_code == 200, response.text[:300]
    assert [f["properties"]["name"] for f in response.json()["features"]] == ["Graz"]
