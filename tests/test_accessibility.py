"""Accessibility: axe-core (the pinned npm package, served to the page from the same origin so
the pages' Content-Security-Policy stays on) runs in headless Chromium on every HTML page the
service serves. No serious or critical violation is allowed."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.test_map_pages import Visit, browser, wait_for_tiles  # noqa: F401 (fixture)

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__test__/axe.min.js"  # not a route of the app: the test answers it from the file


def first_member(dsn: str, bounded: bool) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT t.id FROM territories t WHERE t.commitment_kind <> 'engagement-only' AND "
            "(t.boundary_code IS NOT NULL) = %s ORDER BY t.id LIMIT 1", (bounded,)).fetchone()[0]


def violations(visit: Visit, server: str, path: str, ready: str | None) -> list[str]:
    """axe's serious and critical findings on `path`, once it is ready, as readable lines."""
    visit.context.route(f"{server}{AXE_PATH}", lambda r: r.fulfill(
        path=str(AXE), content_type="text/javascript"))
    page = visit.page
    page.goto(server + path, wait_until="networkidle")
    if ready:
        page.wait_for_function(ready, timeout=20000)
    page.add_script_tag(url=server + AXE_PATH)
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => `${v.id} (${v.impact}): ${v.help}: ` +
                 v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return found


MAP_READY = "() => window.HRMapReady === true && window.HRTilesLoaded === true"
MINI_READY = "() => document.documentElement.dataset.hrmap === 'ready'"


@pytest.mark.parametrize(("path", "ready"), [
    ("/map", MAP_READY), ("/map?lang=fr", MAP_READY), ("/embed", MAP_READY),
    ("/embed?lang=es", MAP_READY),
    ("/api.html", "() => document.querySelectorAll('.opblock').length > 15"),
    ("/territories", None), ("/territories?lang=fr&sort=-year", None), ("/about?lang=es", None),
    ("bounded", MINI_READY), ("point", MINI_READY),
    ("/?f=html&lang=fr", None), ("/collections?f=html", None),
    ("/collections/regions/items?f=html&region=FR&limit=20", MINI_READY),
    ("/collections/territories/items/at-municipality-graz?f=html&lang=es", MINI_READY),
])
def test_no_serious_or_critical_violations(browser, server: str, sample_dsn: str,  # noqa: F811
                                           path: str, ready: str | None) -> None:
    if path in ("bounded", "point"):
        path = f"/territories/{first_member(sample_dsn, path == 'bounded')}"
    visit = Visit(browser, (server,))
    try:
        found = violations(visit, server, path, ready)
        assert found == [], "\n".join(found)
        assert visit.offsite == []
    finally:
        visit.close()


def test_axe_finds_what_it_should(browser, server: str) -> None:  # noqa: F811
    """The check itself can fail: a page with an unlabelled control and no language fails it."""
    visit = Visit(browser, (server,))
    try:
        visit.context.route(f"{server}/__test__/bad.html", lambda r: r.fulfill(
            body="<!DOCTYPE html><html><head><title>x</title></head><body>"
                 "<input type=text><img src=/static/favicon.svg></body></html>",
            content_type="text/html"))
        found = violations(visit, server, "/__test__/bad.html", None)
        assert any(line.startswith("html-has-lang") for line in found), found
        assert any(line.startswith(("label", "image-alt")) for line in found), found
    finally:
        visit.close()
