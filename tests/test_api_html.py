"""The browsable API: the OGC API – Features resources answer HTML to browsers (Accept or
f=html) and JSON to everything else, with links to every format, paging, the same filters as
the JSON and a small map; checked over HTTP and in headless Chromium."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.test_map_pages import Visit, browser, wait_for_tiles  # noqa: F401 (fixture)
from tests.test_territory_pages import BROWSER_ACCEPT, head_of, hostile_member, rows_of  # noqa: F401

HTML_CLASS = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html"
RESOURCES = ["/", "/conformance", "/collections", "/collections/territories",
             "/collections/municipalities/items", "/collections/territories/items/at-municipality-graz"]


@pytest.mark.parametrize("path", RESOURCES)
def test_browsers_get_html_and_clients_json(client, path: str) -> None:
    page = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "Accept" in page.headers["vary"]
    assert head_of(page.text).lang == "en"
    assert client.get(path, params={"f": "html"}).headers["content-type"].startswith("text/html")
    for accept in ("application/json", "application/geo+json", "*/*", ""):
        answer = client.get(path, headers={"Accept": accept})
        assert answer.headers["content-type"].startswith(("application/json",
                                                          "application/geo+json")), accept
    # f= wins over Accept
    forced = client.get(path, params={"f": "json"}, headers={"Accept": BROWSER_ACCEPT})
    assert forced.headers["content-type"].startswith(("application/json", "application/geo+json"))


def test_the_html_conformance_class_and_alternate_links(client) -> None:
    assert HTML_CLASS in client.get("/conformance").json()["conformsTo"]
    landing = client.get("/").json()["links"]
    assert any(link["rel"] == "alternate" and link["type"] == "text/html" for link in landing)
    collection = client.get("/collections/regions").json()["links"]
    assert {"href": "http://testserver/collections/regions/items?f=html", "rel": "items",
            "type": "text/html", "title": "Features (HTML)"} in collection


def hrefs(text: str) -> dict[str, str]:
    """Link texts to their targets (entities in hrefs undone)."""
    return {re.sub(r"<[^>]+>", "", label).strip(): href.replace("&amp;", "&")
            for href, label in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', text, re.S)}


def test_an_items_page_is_the_json_page_as_a_table(client) -> None:
    query = {"country": "ES", "limit": "7", "sortby": "name"}
    data = client.get("/collections/municipalities/items", params=query).json()
    page = client.get("/collections/municipalities/items", params={**query, "f": "html"}).text
    rows = rows_of(page)
    assert [r[0] for r in rows] == [f["id"] for f in data["features"]]
    assert f"Features 1–7 of {data['numberMatched']}" in page
    links = hrefs(page)
    # paging keeps the filters
    following = dict(parse_qsl(urlsplit(links["Next page"]).query))
    assert following == {"country": "ES", "limit": "7", "sortby": "name", "offset": "7",
                         "f": "html"}
    second = client.get(urlsplit(links["Next page"]).path, params=following)
    assert rows_of(second.text)[0][0] == client.get(
        "/collections/municipalities/items", params={**query, "offset": "7"}).json()[
            "features"][0]["id"]
    assert "Previous page" in hrefs(second.text)
    # every format of the same page, and the queryables
    for label, media in (("GeoJSON", "application/geo+json"), ("CSV", "text/csv"),
                         ("GeoPackage", "application/geopackage+sqlite3")):
        target = urlsplit(links[label])
        answer = client.get(target.path, params=dict(parse_qsl(target.query)))
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)
        assert dict(parse_qsl(target.query))["country"] == "ES"
    queryables = [href for text, href in links.items() if text.startswith("Queryables")]
    assert client.get(urlsplit(queryables[0]).path).json()["type"] == "object"
    # the form holds the filters as given
    assert re.search(r'name="country" value="ES"', page)
    # the small map's data: this page's features, generalized
    config = page.split('id="hr-features-config">', 1)[1].split("</script>", 1)[0]
    assert config.count('"type":"Feature"') == 7


def test_the_filter_form_may_send_empty_fields(client) -> None:
    """A browser submits every field of the form; the empty ones are as if not given."""
    page = client.get("/collections/territories/items?f=html&bbox=&region=&datetime=&filter="
                      "&sortby=&limit=&kind=region&lang=fr")
    assert page.status_code == 200, page.text
    assert head_of(page.text).lang == "fr" and "Entités" in page.text
    expected = client.get("/collections/territories/items", params={"kind": "region"}).json()
    assert len(rows_of(page.text)) == expected["numberReturned"]
    # the same parameters without f=html are the JSON's, checked as always
    assert client.get("/collections/territories/items?bbox=&kind=region").status_code == 400


def test_html_pages_keep_hostile_text_as_text(client, hostile_member: str) -> None:  # noqa: F811
    page = client.get(f"/collections/territories/items/{hostile_member}", params={"f": "html"})
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "<script>alert(2)" not in page.text
    listed = client.get("/collections/territories/items",
                        params={"f": "html", "filter": "name LIKE '%onerror%'"}).text
    assert "<img src=x" not in listed and len(rows_of(listed)) == 1


def test_bad_parameters_on_html_pages_are_client_errors(client) -> None:
    for url in ("/collections/nowhere?f=html", "/collections/territories/items?f=html&limit=0",
                "/collections/territories/items/nobody?f=html", "/collections?f=xml"):
        answer = client.get(url, headers={"Accept": BROWSER_ACCEPT})
        assert 400 <= answer.status_code < 500, url
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_items_page_in_chromium(browser, server: str) -> None:  # noqa: F811
    visit = Visit(browser, (server,))
    try:
        page = visit.page
        page.goto(f"{server}/collections/regions/items?f=html&region=FR&limit=20")
        page.wait_for_function("() => document.documentElement.dataset.hrmap === 'ready'",
                               timeout=15000)
        wait_for_tiles(page)
        assert page.locator("#hr-features path.leaflet-interactive, #hr-features path").count() > 20
        assert page.locator("table.hr-table tbody tr").count() == 20
        assert visit.errors == [] and visit.offsite == []
        # the filters are open when the page was asked with some
        assert page.locator("details.hr-api-filters").get_attribute("open") is not None
        page.locator("#q-limit").fill("5")
        page.locator(".hr-api-filters button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("table.hr-table tbody tr").count() == 5
        assert "region=FR" in page.url and visit.errors == []
    finally:
        visit.close()
