"""Territory pages, the list of territories and the sitemap: over HTTP on the sample data, and
in headless Chromium (the small map, the page's weight, nothing from another host)."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from PIL import Image

from geo_service.render import site
from tests.test_map_pages import (  # noqa: F401 (fixtures)
    Visit,
    browser,
    hostile_member,
    wait_for_tiles,
)

PAGE_BUDGET = 150_000  # bytes on the wire before tiles
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def member(dsn: str, bounded: bool) -> dict:
    """A shown member with (or without) a boundary, from the database itself."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT t.id, t.name, t.kind, b.source, b.name FROM territories t LEFT JOIN boundaries b "
            "ON b.level = t.boundary_level AND b.code = t.boundary_code "
            "WHERE t.commitment_kind <> 'engagement-only' AND (b.id IS NOT NULL) = %s "
            "AND EXISTS (SELECT 1 FROM initiatives i WHERE i.territory_id = t.id) "
            "ORDER BY t.id LIMIT 1", (bounded,)).fetchone()
    assert row, f"the sample has no shown member {'with' if bounded else 'without'} a boundary"
    return {"id": row[0], "name": row[1], "kind": row[2], "source": row[3], "boundary": row[4]}


class Head(HTMLParser):
    """The <meta>, <link> and JSON-LD of a page's head, and its <html lang>."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: list[dict[str, str]] = []
        self.json_ld: list[str] = []
        self.lang = ""
        self._in_ld = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = a.get("lang", "")
        elif tag == "meta" and ("property" in a or "name" in a):
            self.meta[a.get("property") or a["name"]] = a.get("content", "")
        elif tag == "link":
            self.links.append(a)
        elif tag == "script" and a.get("type") == "application/ld+json":
            self._in_ld = True

    def handle_endtag(self, tag: str) -> None:
        self._in_ld = False if tag == "script" else self._in_ld

    def handle_data(self, data: str) -> None:
        if self._in_ld:
            self.json_ld.append(data)


def head_of(text: str) -> Head:
    parsed = Head()
    parsed.feed(text)
    return parsed


def test_a_territory_page_holds_what_it_is_and_where_it_comes_from(client, sample_dsn) -> None:
    t = member(sample_dsn, bounded=True)
    response = client.get(f"/territories/{t['id']}", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "Accept" in response.headers["vary"].split(", ")
    text = response.text
    head = head_of(text)
    assert head.lang == "en"
    assert f"<h1>{t['name']}</h1>" in text
    assert t["boundary"] in text  # where the boundary comes from: its name and source
    with psycopg.connect(sample_dsn) as conn:
        sources, initiatives = conn.execute(
            "SELECT t.sources, array_agg(i.title) FROM territories t JOIN initiatives i "
            "ON i.territory_id = t.id WHERE t.id = %s GROUP BY t.sources", (t["id"],)).fetchone()
    for url in sources:
        assert f'href="{url}"' in text
    for title in initiatives:
        assert title.replace("&", "&amp;") in text
    # the GeoJSON alternate, Open Graph, Twitter and schema.org
    alternate = [link for link in head.links if link.get("type") == "application/geo+json"]
    assert alternate and alternate[0]["href"].endswith(f"/collections/territories/items/{t['id']}")
    assert head.meta["og:title"] == t["name"] and head.meta["twitter:card"] == "summary_large_image"
    assert head.meta["og:url"].endswith(f"/territories/{t['id']}")
    ld = json.loads(head.json_ld[0])
    assert ld["@type"] == ("City" if t["kind"] in site.CITY_KINDS else "AdministrativeArea")
    assert ld["name"] == t["name"] and ld["geo"]["@type"] == "GeoCoordinates"
    assert {c["url"] for c in ld["subjectOf"]} == set(sources)
    # the og:image is a map image of this territory, at the social card's size
    image_url = urlsplit(head.meta["og:image"])
    assert dict(parse_qsl(image_url.query))["territory"] == t["id"]
    image = client.get(f"{image_url.path}?{image_url.query}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == site.SOCIAL_IMAGE
    # the embed code frames the territory: a map centred inside its boundary's box
    code = re.search(r'<textarea id="hr-embed-code"[^>]*>(.*?)</textarea>', text, re.S).group(1)
    zoom, lat, lon = (float(v) for v in re.search(r"#(\d+)/(-?[\d.]+)/(-?[\d.]+)", code).groups())
    with psycopg.connect(sample_dsn) as conn:
        inside = conn.execute(
            "SELECT ST_Contains(ST_Envelope(b.geom), ST_Point(%s, %s, 4326)) FROM territories t "
            "JOIN boundaries b ON b.level = t.boundary_level AND b.code = t.boundary_code "
            "WHERE t.id = %s", (lon, lat, t["id"])).fetchone()[0]
    assert inside and 4 <= zoom <= 12
    assert "&lt;iframe" in code  # shown as text to copy, not as a frame


def test_a_member_without_boundary_says_so_in_each_language(client, sample_dsn) -> None:
    t = member(sample_dsn, bounded=False)
    english = client.get(f"/territories/{t['id']}").text
    assert "No boundary matched: shown by its point" in english
    french = client.get(f"/territories/{t['id']}", params={"lang": "fr"}).text
    assert head_of(french).lang == "fr" and "Aucun contour associé" in french
    assert head_of(french).meta["og:locale"] == "fr_FR"
    spanish = client.get(f"/territories/{t['id']}", params={"lang": "es"}).text
    assert "Ningún límite asociado" in spanish and "Iniciativas" in spanish
    hreflangs = {link.get("hreflang") for link in head_of(spanish).links}
    assert {"en", "fr", "es", "x-default"} <= hreflangs


def test_the_same_url_answers_geojson_when_asked(client, sample_dsn) -> None:
    t = member(sample_dsn, bounded=True)
    for headers, params in (({"Accept": "application/geo+json"}, {}),
                            ({"Accept": "application/geo+json;q=1, text/html;q=0.5"}, {}),
                            ({"Accept": BROWSER_ACCEPT}, {"f": "geojson"})):
        response = client.get(f"/territories/{t['id']}", headers=headers, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/geo+json"
        feature = response.json()
        assert feature["type"] == "Feature" and feature["id"] == t["id"]
    # a browser, or a client preferring HTML, gets the page
    for accept in (BROWSER_ACCEPT, "text/html;q=1, application/geo+json;q=0.5", "*/*", ""):
        response = client.get(f"/territories/{t['id']}", headers={"Accept": accept})
        assert response.headers["content-type"].startswith("text/html"), accept
    listed = client.get("/territories", params={"kind": "municipality"},
                        headers={"Accept": "application/geo+json"})
    assert listed.headers["content-type"] == "application/geo+json"
    kinds = {f["properties"]["kind"] for f in listed.json()["features"]}
    assert kinds == {"municipality"}


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/territories/no-such-place", 404, "no territory"),
    ("/territories?kind=castle", 400, "kind='castle' is not known"),
    ("/territories?sort=height", 400, "sort='height'"),
    ("/territories?lang=de", 400, "lang"),
    ("/territories?country=France", 400, "country"),
    ("/territories/x?colour=red", 400, "colour"),
    ("/export/map.png?territory=no-such-place", 400, "not a territory on the map"),
    ("/export/map.png?territory=x&region=FR", 400, "not both"),
])
def test_bad_requests_are_clear_client_errors(client, url: str, status: int, says: str) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


def rows_of(text: str) -> list[list[str]]:
    """The list's body rows as cell texts."""
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_the_list_sorts_filters_and_counts(client, sample_dsn) -> None:
    with psycopg.connect(sample_dsn) as conn:
        shown, municipalities = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE kind = 'municipality') FROM territories "
            "WHERE commitment_kind <> 'engagement-only'").fetchone()
    everything = client.get("/territories")
    assert everything.status_code == 200
    assert len(rows_of(everything.text)) == shown
    assert f"{shown} of {shown} territories" in everything.text
    by_year = client.get("/territories", params={"sort": "-year", "kind": "municipality"}).text
    rows = rows_of(by_year)
    assert len(rows) == municipalities
    years = [int(r[4]) for r in rows if r[4]]
    assert years == sorted(years, reverse=True) and years
    assert 'aria-sort="descending"' in by_year
    # the sorted column's link turns the order around; filters stay in it
    link = re.search(r'<th scope="col" aria-sort="descending"><a href="([^"]+)"', by_year).group(1)
    assert dict(parse_qsl(urlsplit(link.replace("&amp;", "&")).query)) == {
        "kind": "municipality", "sort": "year"}
    searched = rows_of(client.get("/territories", params={"q": "GRAZ"}).text)
    assert [r[0] for r in searched] == ["Graz"]
    french = client.get("/territories", params={"lang": "fr", "kind": "region"}).text
    assert head_of(french).lang == "fr" and "Région ou province" in french
    assert all(r[2] == "Région ou province" for r in rows_of(french))


def test_sitemap_lists_every_page_in_each_language(client, sample_dsn) -> None:
    response = client.get("/sitemap.xml")
    assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9",
          "x": "http://www.w3.org/1999/xhtml"}
    root = ET.fromstring(response.content)
    locations = [u.findtext("s:loc", namespaces=ns) for u in root.findall("s:url", ns)]
    with psycopg.connect(sample_dsn) as conn:
        ids = {r[0] for r in conn.execute(
            "SELECT id FROM territories WHERE commitment_kind <> 'engagement-only'")}
    listed = {urlsplit(u).path.removeprefix("/territories/") for u in locations
              if "/territories/" in u}
    assert listed == ids
    first = root.find("s:url", ns)
    assert {link.get("hreflang") for link in first.findall("x:link", ns)} == {"en", "fr", "es"}
    for url in locations[:3] + locations[-2:]:
        assert client.get(urlsplit(url).path).status_code == 200


def test_hostile_names_and_links_stay_text(client, hostile_member: str) -> None:  # noqa: F811
    text = client.get(f"/territories/{hostile_member}").text
    assert "<img src=x" not in text and "<script>alert(2)" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<b>x</b>" not in text and 'href="https://example.org/&lt;b&gt;x&lt;/b&gt;"' in text
    listed = client.get("/territories", params={"q": "onerror"}).text
    assert "<img src=x" not in listed and len(rows_of(listed)) == 1


@pytest.mark.parametrize("bounded", [True, False])
def test_the_page_in_chromium(browser, server: str, sample_dsn: str, bounded: bool) -> None:  # noqa: F811
    t = member(sample_dsn, bounded=bounded)
    visit = Visit(browser, (server,), width=1000, height=900)
    try:
        page = visit.page
        page.goto(f"{server}/territories/{t['id']}")
        page.wait_for_function("() => document.documentElement.dataset.hrmap === 'ready'",
                               timeout=15000)
        wait_for_tiles(page)
        page.wait_for_timeout(300)
        shapes = page.locator("#hr-mini path.hr-territory").count()
        assert (shapes >= 1) if bounded else (shapes == 0)
        assert page.locator("#hr-mini path.hr-country").count() >= 1
        assert page.locator("#hr-mini .leaflet-interactive, #hr-mini path").count() >= 1
        assert visit.errors == [] and visit.offsite == []
        wire = sum(r.request.sizes()["responseBodySize"] for r in visit.responses
                   if "/tiles/" not in r.url)
        assert 0 < wire <= PAGE_BUDGET, f"{wire} bytes before tiles"
        # the page works without a pointer: the skip link leads to the content
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "hr-skip"
    finally:
        visit.close()


def test_embed_view_fits_a_box_or_frames_a_point() -> None:
    assert site.embed_view(None, 47.07, 15.44) == (9, 47.07, 15.44)
    zoom, lat, lon = site.embed_view([126.64, 35.05, 127.02, 35.26], 35.16, 126.85)  # Gwangju
    assert zoom == 11 and 35.05 < lat < 35.26 and lon == 126.83
    assert site.embed_view([-10, 35, 30, 70], 50, 10)[0] == 3  # a large region: zoomed out


def test_about_names_every_source_with_its_licence(client, sample_dsn) -> None:
    with psycopg.connect(sample_dsn) as conn:
        sources = conn.execute(  # each source's latest load, unless that load removed it
            "SELECT licence, attribution FROM (SELECT DISTINCT ON (source, level) * "
            "FROM data_sources WHERE level IN ('country', 'region', 'municipality') "
            "ORDER BY source, level, id DESC) latest "
            "WHERE NOT details ? 'removed' AND features > 0").fetchall()
    page = client.get("/about")
    assert page.status_code == 200
    text = page.text.replace("&amp;", "&").replace("&#39;", "'").replace("&#34;", '"')
    for licence, attribution in sources:
        assert licence in text and attribution in text, attribution
    assert "leaflet 1.9.4 (BSD-2-Clause)" in text
    french = client.get("/about", params={"lang": "fr"}).text
    assert head_of(french).lang == "fr" and "Jeu de données" in french
