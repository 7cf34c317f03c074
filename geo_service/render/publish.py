"""The visitors' map as a static site (`geo-service publish DIR`): /map and /embed in each
language, their scripts and styles, the members as GeoJSON and the base as PMTiles archives that
the page reads with HTTP range requests, so any static host or CDN serves the map with no app
behind it.

Layout of DIR (every URL inside is relative, so the site works under any path prefix):

    index.html, embed.html            the first language's /map and /embed
    fr/index.html, fr/embed.html      each other language in its own folder
    static/                           map.js, map.css, favicon and the pinned npm packages' files
    data/members-{lang}.geojson       the members shown (the pages read them)
    data/sources.txt                  the full attributions of the sources
    tiles/map-{lang}.pmtiles          the base, as `geo-service tiles build` writes it
    publish.json                      what was published (written last: marks a whole site)

What needs the app is left out: no Download control (map images are drawn by the server), no
territory pages (popups already carry each member's facts and sources), and the credit's link
goes to data/sources.txt, or to the service's /about when its address is given.

The site is written into a folder beside DIR, then moved in place: a reader sees the old site or
the new one, never a half of either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from geo_service.query.pages import page_data
from geo_service.query.service import data_version, database_identity
from geo_service.render import credits, i18n, tiles, webmap

MARKER = "publish.json"
GENERATOR = "geo-service publish"
STATIC = Path(__file__).resolve().parent.parent / "static"
_REFERENCE = re.compile(r'(?:src|href)="((?:\.\./)?static/[^"?#]+)')
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")?#]+)")


class PublishError(Exception):
    """The site cannot be written as asked; the message says why and what to do."""


@dataclass
class PublishResult:
    directory: Path
    version: str
    langs: tuple[str, ...]
    members: int
    max_zoom: int
    files: int
    bytes: int
    archive_bytes: dict[str, int]
    seconds: float
    tiles_built: bool  # the archives were (re)built for this publish
    pages: list[str] = field(default_factory=list)


def check_target(target: Path, force: bool, keep_out: Iterable[Path] = ()) -> None:
    """DIR must be absent, empty, a previous publish, or replaced on purpose (`force`); never a
    folder holding the project or the archives."""
    resolved = target.resolve()
    for inside in (Path.cwd(), *keep_out):
        if inside.resolve().is_relative_to(resolved):
            raise PublishError(f"{target} holds {inside}: publish into a folder of its own")
    if not target.exists():
        return
    if not target.is_dir():
        raise PublishError(f"{target} exists and is not a folder")
    if force or not any(target.iterdir()) or is_published(target):
        return
    raise PublishError(f"{target} is not empty and is not a site `geo-service publish` wrote: "
                       "choose another folder, empty it, or pass --force to replace it whole")


def is_published(target: Path) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("generator") == GENERATOR


def _page_path(lang: str, first: str, embed: bool) -> str:
    name = "embed.html" if embed else "index.html"
    return name if lang == first else f"{lang}/{name}"


def _up(lang: str, first: str) -> str:
    return "" if lang == first else "../"


def _members_geojson(territories: list[dict[str, Any]]) -> dict[str, Any]:
    """The members as points, each with every fact the page shows as its properties."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": t["id"],
         "geometry": {"type": "Point", "coordinates": [t["lon"], t["lat"]]}, "properties": t}
        for t in territories]}


def policy(nonce: str) -> str:
    """The pages' Content-Security-Policy: nothing from another host; blob: for the tiles read
    from the archive."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self' blob:; font-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'")


def asset_version() -> str:
    digest = hashlib.sha256()
    for name in ("map.js", "map.css"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


def render_pages(langs: tuple[str, ...], data: dict[str, dict[str, Any]], version: str,
                 max_zoom: int, service_url: str | None) -> dict[str, str]:
    """Every page's path in the site -> its HTML."""
    first = langs[0]
    nonce = secrets.token_urlsafe(18)
    assets = asset_version()
    out: dict[str, str] = {}
    for lang in langs:
        up = _up(lang, first)
        about = (f"{service_url.rstrip('/')}/about?lang={lang}" if service_url
                 else f"{up}data/sources.txt")
        for embed in (False, True):
            pages = {other: up + _page_path(other, first, embed) for other in langs}
            overrides = {
                "tiles": None, "tilesArchive": f"{up}tiles/map-{lang}.pmtiles",
                "tileMaxZoom": max_zoom, "territories": None, "total": None,
                "membersUrl": f"{up}data/members-{lang}.geojson", "download": False,
                "pages": pages, "langs": list(langs),
                "attribution": credits.corner(data[lang]["credits"], lang, about),
            }
            published = webmap.Published(
                root=f"{up}static", overrides=overrides, csp=policy(nonce),
                scripts=(("pmtiles", f"{up}static/vendor/pmtiles/pmtiles.js"
                                     f"?v={webmap.ASSET_VERSIONS['pmtiles']}"),))
            out[_page_path(lang, first, embed)] = webmap.render_page(
                webmap.PageRequest(lang=lang, embed=embed, filters={}, download=False),
                data[lang], version=version, base="", nonce=nonce, asset_version=assets,
                basemap=None, published=published)
    return out


def _source_of(reference: str, node_modules: Path) -> Path:
    """The file behind a page's static/... reference: ours, or a pinned npm package's."""
    path = reference.split("static/", 1)[1]
    if path.startswith("vendor/"):
        folder, rest = path.removeprefix("vendor/").split("/", 1)
        return node_modules / webmap.VENDOR_DIRS[folder] / rest
    return STATIC / path


def copy_assets(pages: Iterable[str], node_modules: Path, site: Path) -> None:
    """Every static file the pages reference, and the files their styles reference, copied to
    the same path under site/static/."""
    wanted = {m.removeprefix("../") for html in pages for m in _REFERENCE.findall(html)}
    done: set[str] = set()
    while wanted:
        reference = wanted.pop()
        done.add(reference)
        source = _source_of(reference, node_modules)
        if not source.is_file():
            raise PublishError(f"{source} is missing (the page loads {reference}): run `make "
                               "setup` to install the pinned npm packages")
        target = site / reference
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if source.suffix == ".css":
            folder = reference.rsplit("/", 1)[0]
            for url in _CSS_URL.findall(source.read_text()):
                if "://" not in url and not url.startswith(("data:", "/")):
                    found = os.path.normpath(f"{folder}/{url}")
                    if found not in done:
                        wanted.add(found)


def _place(source: Path, target: Path) -> None:
    """A hard link when the archive is on the same file system (the build replaces archives
    with new files, never rewrites them), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _archives(tiles_dir: Path, langs: tuple[str, ...], version: str, database: str
              ) -> dict[str, tiles.Archive]:
    """The archives of `langs`, which must hold this database's current data version."""
    found = {}
    for lang in langs:
        path = tiles.archive_path(tiles_dir, lang)
        try:
            archive = tiles.Archive.open(path)
        except (OSError, ValueError, KeyError) as exc:
            raise PublishError(f"no usable tile archive {path} ({exc}): run `geo-service tiles "
                               "build`, or publish without --no-build") from None
        if archive.version != version or archive.database != database:
            raise PublishError(f"{path} holds data version {archive.version}, the database is at "
                               f"{version}: run `geo-service tiles build`, or publish without "
                               "--no-build")
        found[lang] = archive
    return found


async def publish(dsn: str, target: Path, *, tiles_dir: Path, node_modules: Path,
                  langs: tuple[str, ...] = i18n.LANGS, max_zoom: int = tiles.DEFAULT_ARCHIVE_ZOOM,
                  build: bool = True, force: bool = False, service_url: str | None = None,
                  workers: int = 3, progress: Callable[[int, int], None] | None = None
                  ) -> PublishResult:
    """Write the static site into `target` (see the module's docstring)."""
    began = time.perf_counter()
    unknown = [lang for lang in langs if lang not in i18n.LANGS]
    if not langs or unknown:
        raise PublishError(f"unknown language {', '.join(unknown)!s}: choose among "
                           f"{', '.join(i18n.LANGS)}")
    langs = tuple(dict.fromkeys(langs))
    check_target(target, force, (tiles_dir,))
    built = False
    if build:
        result = await tiles.build(dsn, tiles_dir, max_zoom=max_zoom, workers=workers,
                                   progress=progress)
        built = not result.skipped
    async with await AsyncConnection.connect(dsn) as conn:
        version = await data_version(conn)
        database = await database_identity(conn)
        data = {lang: await page_data(conn, lang) for lang in langs}
    archives = _archives(tiles_dir, langs, version, database)
    zoom = min(archive.max_zoom for archive in archives.values())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.publishing-", dir=target.parent))
    try:
        pages = render_pages(langs, data, version, zoom, service_url)
        for path, text in pages.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text, encoding="utf-8")
        copy_assets(pages.values(), node_modules, staging)
        (staging / "data").mkdir()
        for lang in langs:
            (staging / "data" / f"members-{lang}.geojson").write_text(json.dumps(
                _members_geojson(data[lang]["territories"]), ensure_ascii=False,
                separators=(",", ":")), encoding="utf-8")
            _place(archives[lang].path, staging / "tiles" / archives[lang].path.name)
        (staging / "data" / "sources.txt").write_text(
            credits.full(data[langs[0]]["credits"]) + "\n", encoding="utf-8")
        files = [p for p in staging.rglob("*") if p.is_file()]
        marker = {"generator": GENERATOR, "data_version": version, "languages": list(langs),
                  "tiles_max_zoom": zoom, "members": len(data[langs[0]]["territories"]),
                  "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "pages": sorted(pages)}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; a web server reads it
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PublishResult(
        target, version, langs, len(data[langs[0]]["territories"]), zoom, len(files) + 1,
        sum(p.stat().st_size for p in target.rglob("*") if p.is_file()),
        {lang: archives[lang].path.stat().st_size for lang in langs},
        time.perf_counter() - began, built, sorted(pages))


def _swap(staging: Path, target: Path) -> None:
    """Put the new site at `target`; the old one (if any) is moved aside, then removed."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
