"""The map as a static site (`geo-service publish`): published from the sample data, served by a
plain file server on loopback that answers HTTP Range requests (as nginx or a CDN does), under a
path prefix, and opened in headless Chromium; every request to another host is blocked and
counted. And the command's refusals."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from typer.testing import CliRunner

from geo_service.cli import app
from geo_service.render import publish
from geo_service.settings import Settings
from tests.test_map_pages import (  # noqa: F401 (fixtures)
    Visit,
    browser,
    drawn,
    shown_in_db,
    wait_for_tiles,
)

PREFIX = "/maps/hr"  # the site is served under a path prefix, as on a shared static host
HOUSING = ("EXISTS (SELECT 1 FROM initiatives i JOIN initiative_themes it ON it.initiative_id "
           "= i.id WHERE i.territory_id = t.id AND it.theme_slug = 'housing')")


class StaticFiles(SimpleHTTPRequestHandler):
    """A plain static file server, with single byte ranges (206, or 416 past the end) as
    static hosts answer them; `ranges = False` makes one that ignores Range (200, whole file)."""

    ranges = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        asked = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not self.ranges or not asked or not os.path.isfile(path):
            return super().send_head()
        found = re.fullmatch(r"bytes=(\d+)-(\d*)", asked.strip())
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = int(found[1]) if found else size
            end = min(int(found[2]) if found and found[2] else size - 1, size - 1)
            if start >= size or end < start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return BytesIO(body)


class WholeFiles(StaticFiles):
    ranges = False


class QuietServer(ThreadingHTTPServer):
    """A browser that has what it needs hangs up mid-answer (a whole archive asked for without
    ranges): a static host logs nothing for it, and nor does this one (socketserver printed a
    BrokenPipeError traceback into the test output)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def static_server(root: Path, handler: type[StaticFiles] = StaticFiles) -> Iterator[str]:
    """`root` served on a free loopback port until the block ends."""

    def make(*args: Any, **kwargs: Any) -> StaticFiles:
        return handler(*args, directory=str(root), **kwargs)

    httpd = QuietServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def site(settings: Settings, sample_dsn: str, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, publish.PublishResult]:
    """The site published from the sample data under root/maps/hr (the archives built if need
    be), and the publish's result."""
    root = tmp_path_factory.mktemp("static-host")
    target = root / PREFIX.strip("/")
    result = asyncio.run(publish.publish(sample_dsn, target, tiles_dir=settings.tiles_dir,
                                         node_modules=settings.node_modules))
    return root, result


@pytest.fixture(scope="module")
def host(site: tuple[Path, publish.PublishResult]) -> Iterator[str]:
    with static_server(site[0]) as url:
        yield url


@pytest.fixture()
def visit(browser: Browser, host: str) -> Iterator[Visit]:  # noqa: F811
    v = Visit(browser, (host,))
    yield v
    v.close()


def archive_reads(visit: Visit) -> list[tuple[str, int]]:
    return [(r.url.rsplit("/", 1)[1], r.status) for r in visit.responses if ".pmtiles" in r.url]


def test_the_site_holds_pages_assets_data_and_archives(site: tuple[Path, publish.PublishResult],
                                                       sample_dsn: str) -> None:
    root, result = site
    target = root / PREFIX.strip("/")
    expected = {"index.html", "embed.html", "fr/index.html", "fr/embed.html", "es/index.html",
                "es/embed.html"}
    assert set(result.pages) == expected
    for page in expected:
        text = (target / page).read_text()
        # every reference is relative: the site works under any prefix
        assert not re.search(r'(?:src|href)="/', text), page
        assert "/tiles/map/" not in text and "/export/" not in text
    members = json.loads((target / "data" / "members-en.geojson").read_text())
    assert members["type"] == "FeatureCollection"
    assert len(members["features"]) == shown_in_db(sample_dsn) == result.members
    first = members["features"][0]
    assert first["geometry"]["coordinates"] == [first["properties"]["lon"],
                                                first["properties"]["lat"]]
    for lang in ("en", "fr", "es"):
        assert (target / "tiles" / f"map-{lang}.pmtiles").read_bytes()[:7] == b"PMTiles"
    marker = json.loads((target / publish.MARKER).read_text())
    assert marker["generator"] == publish.GENERATOR and marker["members"] == result.members
    assert "Natural Earth" in (target / "data" / "sources.txt").read_text()
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "a staging folder is left"


@pytest.mark.parametrize("page", ["index.html", "embed.html"])
def test_the_published_map_draws_members_and_tiles_from_the_archive(
        visit: Visit, host: str, sample_dsn: str, page: str) -> None:
    opened = visit.open(f"{host}{PREFIX}/{page}")
    wait_for_tiles(opened)
    opened.wait_for_timeout(300)
    counts = drawn(opened)
    assert counts["markers"] + counts["clustered"] == shown_in_db(sample_dsn)
    assert counts["countries"] > 100, "the base is not drawn"
    reads = archive_reads(visit)
    assert reads and all(name == "map-en.pmtiles" and status == 206 for name, status in reads)
    assert visit.errors == [] and visit.offsite == []
    assert opened.locator(".hr-download").count() == 0  # map images need the app
    credit = opened.locator(".leaflet-control-attribution a", has_text="Sources")
    assert credit.get_attribute("href") == "data/sources.txt"


def test_the_published_map_over_zooms_past_the_archive(visit: Visit, host: str) -> None:
    opened = visit.open(f"{host}{PREFIX}/index.html#9/48.85/2.35")  # Paris at z9 > z6
    wait_for_tiles(opened)
    assert drawn(opened)["countries"] > 0
    assert visit.errors == [] and visit.offsite == []


def test_filters_and_languages_work_statically(visit: Visit, host: str, sample_dsn: str) -> None:
    opened = visit.open(f"{host}{PREFIX}/index.html?theme=housing")
    expected = shown_in_db(sample_dsn, HOUSING)
    assert 0 < expected < shown_in_db(sample_dsn)
    counts = drawn(opened)
    assert counts["markers"] + counts["clustered"] == expected
    opened.select_option("#hr-filter-kind", "municipality")
    both = shown_in_db(sample_dsn, HOUSING + " AND t.kind = 'municipality'")
    opened.wait_for_function(
        f"() => document.querySelector('.hr-shown').textContent === '{both} shown'")
    opened.locator(".hr-langs a[hreflang=fr]").click()
    opened.wait_for_function("() => window.HRMapReady === true && document.documentElement.lang"
                             " === 'fr'", timeout=15000)
    assert opened.url.startswith(f"{host}{PREFIX}/fr/index.html?")
    assert "theme=housing" in opened.url and "kind=municipality" in opened.url
    assert "sur 1000 d’ici 2030" in opened.locator(".hr-counter").inner_text()
    assert opened.locator(".hr-shown").inner_text() == f"{both} affichés"
    wait_for_tiles(opened)
    assert ("map-fr.pmtiles", 206) in archive_reads(visit)
    opened.locator(".hr-langs a[hreflang=en]").click()
    opened.wait_for_function("() => document.documentElement.lang === 'en'", timeout=15000)
    assert opened.url.startswith(f"{host}{PREFIX}/index.html?")
    assert visit.errors == [] and visit.offsite == []


def test_without_range_requests_the_members_still_show(
        browser: Browser, site: tuple, sample_dsn: str) -> None:  # noqa: F811
    """A host that answers Range with the whole file: no base (said once on the console), the
    members and filters still there."""
    with static_server(site[0], WholeFiles) as url:
        v = Visit(browser, (url,))
        try:
            opened = v.open(f"{url}{PREFIX}/index.html")
            wait_for_tiles(opened)
            counts = drawn(opened)
            assert counts["markers"] + counts["clustered"] == shown_in_db(sample_dsn)
            assert counts["countries"] == 0
            assert len(v.errors) == 1 and "Byte Serving" in v.errors[0], v.errors
        finally:
            v.close()


def test_a_missing_members_file_is_said_on_the_map(
        browser: Browser, site: tuple, tmp_path: Path) -> None:  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(site[0] / PREFIX.strip("/"), copy)
    (copy / "data" / "members-en.geojson").unlink()
    with static_server(tmp_path) as url:
        v = Visit(browser, (url,))
        try:
            v.page.goto(f"{url}/copy/index.html")
            v.page.wait_for_function("() => window.HRMapFailed === true", timeout=15000)
            alert = v.page.locator(".hr-unavailable[role=alert]")
            assert alert.inner_text().startswith("The members could not be loaded")
            assert any("members-en.geojson: HTTP 404" in e for e in v.errors)
        finally:
            v.close()


# ------------------------------------------------------------------------------ the command
def cli(*args: str) -> tuple[int, str]:
    """The command in-process, on a thread of its own: this thread runs Playwright's event loop
    (the browser fixture), and the command runs one with asyncio.run."""
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(CliRunner().invoke, app, ["publish", *args]).result()
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture()
def cli_env(sample_dsn: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sample_dsn)
    monkeypatch.setenv("GEO_TILES_DIR", str(settings.tiles_dir))


def test_publish_refuses_a_folder_it_did_not_write(cli_env: None, settings: Settings,
                                                   tmp_path: Path) -> None:
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, output = cli(str(foreign), "--lang", "en")
    assert code == 1 and "is not empty and is not a site" in output and "--force" in output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "plain").write_text("x")
    code, output = cli(str(tmp_path / "plain"))
    assert code == 1 and "is not a folder" in output
    code, output = cli(str(tmp_path / "x"), "--lang", "de")
    assert code == 1 and "unknown language de" in output
    code, output = cli(str(tmp_path / "x"), "--service-url", "ftp://example")
    assert code == 1 and "not an http(s) address" in output
    code, output = cli(str(settings.tiles_dir.parent), "--force")  # never over the archives
    assert code == 1 and "publish into a folder of its own" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "plain"]  # nothing written


def test_publish_replaces_a_previous_publish_whole(cli_env: None, tmp_path: Path) -> None:
    target = tmp_path / "site"
    code, output = cli(str(target), "--lang", "fr", "--lang", "en")
    assert code == 0 and "published" in output and "(fr, en)" in output, output
    assert "lang=\"fr\"" in (target / "index.html").read_text()
    (target / "stale.html").write_text("old")
    code, output = cli(str(target), "--lang", "en")
    assert code == 0, output
    assert not (target / "stale.html").exists() and not (target / "fr").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # nothing left beside it
    foreign = tmp_path / "site" / "publish.json"
    foreign.write_text("{}")  # no longer marked as a publish
    code, output = cli(str(target), "--lang", "en")
    assert code == 1
    code, output = cli(str(target), "--lang", "en", "--force")
    assert code == 0 and publish.is_published(target)


def test_publish_without_archives(cli_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                  ) -> None:
    empty = tmp_path / "no-tiles"
    empty.mkdir()
    monkeypatch.setenv("GEO_TILES_DIR", str(empty))
    code, output = cli(str(tmp_path / "site"), "--no-build", "--lang", "en")
    assert code == 1 and "no usable tile archive" in output and "geo-service tiles build" in output
    assert not (tmp_path / "site").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-tiles"]
    code, output = cli(str(tmp_path / "site"), "--lang", "en", "--max-zoom", "2")
    assert code == 0 and "tiles z0–z2 (built now)" in output, output
    assert (empty / "map-en.pmtiles").exists()
