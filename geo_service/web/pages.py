"""The map pages (/map, /embed), the embed snippet (/embed/code), oEmbed (/oembed) and the static
files they load: our own and the pinned npm packages, all served from this app."""

from __future__ import annotations

import hashlib
import html
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from geo_service.errors import NotFound
from geo_service.query.pages import page_data
from geo_service.query.service import data_version
from geo_service.render import i18n, webmap
from geo_service.settings import Settings
from geo_service.web.http import ConnDep, base_url, one_of

STATIC = Path(__file__).resolve().parent.parent / "static"
VENDOR_DIRS = webmap.VENDOR_DIRS  # URL folder -> folder inside node_modules
EMBED_SIZE = (800, 600)
router = APIRouter(tags=["Map"])


class PageParams(BaseModel):
    """The map's language and filters. Other parameters (a partner's tracking tags, say) are
    let through: an embed must not break on them."""

    lang: i18n.Lang = Field("en", description="Language of the page and names")
    theme: str | None = Field(None, max_length=100, description="Rights theme slug")
    section: str | None = Field(None, max_length=100, description="UCLG section slug")
    kind: str | None = Field(None, max_length=100, description="Kind of government")
    commitment_kind: str | None = Field(None, max_length=100, description="Commitment kind")
    year: int | None = Field(None, ge=i18n.FIRST_YEAR, le=i18n.LAST_YEAR, description=(
        "The members who had joined by the end of this year (the timeline's position)"))
    download: bool | None = Field(None, description="/embed: show the Download control (on "
                                                    "/map it always is)")


class EmbedCodeParams(PageParams):
    height: int | None = Field(None, ge=200, le=4000, description="Fixed height in pixels "
                                                                  "(default: a 4:3 box)")
    f: Literal["html", "json"] = Field("html", description="html, or json for {html, src}")


class OembedParams(BaseModel):
    url: str = Field(max_length=2000, description="A /map or /embed link")
    maxwidth: int | None = Field(None, ge=100, le=10000)
    maxheight: int | None = Field(None, ge=100, le=10000)
    format: Literal["json"] = Field("json", description="json only")


class CachedStatic(StaticFiles):
    """Static files with Cache-Control: a year when the URL is versioned (?v=), an hour if not."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
                      ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        versioned = b"v=" in scope.get("query_string", b"")
        response.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if versioned
                                             else "public, max-age=3600")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_static(app: FastAPI, settings: Settings) -> None:
    for url, folder in VENDOR_DIRS.items():
        app.mount(f"/static/vendor/{url}",
                  CachedStatic(directory=settings.node_modules / folder, check_dir=False),
                  name=f"vendor-{url}")
    app.mount("/static", CachedStatic(directory=STATIC), name="static")


def asset_version() -> str:
    """Changes when our own scripts or styles change: their URLs carry it."""
    digest = hashlib.sha256()
    for name in ("map.js", "map.css", "page.css"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


def _filters(params: PageParams, data: dict[str, Any]) -> dict[str, str]:
    """theme, section, kind and commitment_kind; an unknown value is a 400."""
    known = {"theme": data["themes"], "section": data["sections"], "kind": i18n.KINDS,
             "commitment_kind": i18n.COMMITMENTS}
    chosen = {}
    for name, values in known.items():
        value = getattr(params, name)
        if value:
            chosen[name] = one_of(name, value, values)
    if params.year:
        chosen["year"] = str(params.year)
    return chosen


def csp(settings: Settings, nonce: str | None) -> str:
    img = "'self' data: blob:"
    if settings.basemap_url:
        parts = urlsplit(settings.basemap_url.replace("{s}", "a"))
        img += f" {parts.scheme}://{parts.netloc.split('{')[0]}" if parts.netloc else ""
    script = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    return ("default-src 'self'; "
            f"script-src {script}; style-src 'self' 'unsafe-inline'; img-src {img}; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            f"form-action 'self'; frame-ancestors {settings.frame_ancestors}")


async def cached_page_data(request: Request, conn: ConnDep, lang: str
                           ) -> tuple[dict[str, Any], str]:
    """The map pages' data in `lang` at the current data version, kept per version."""
    version = await data_version(conn)
    store: dict[tuple[str, str], dict[str, Any]] = request.app.state.page_data
    key = (version, lang)
    if key not in store:
        if len(store) > 12:
            store.clear()
        store[key] = await page_data(conn, lang)
    return store[key], version


async def _page(request: Request, conn: ConnDep, params: PageParams, embed: bool) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    lang = params.lang
    data, version = await cached_page_data(request, conn, lang)
    filters = _filters(params, data)
    nonce = secrets.token_urlsafe(18)
    basemap = ({"url": settings.basemap_url, "attribution": settings.basemap_attribution or ""}
               if settings.basemap_url else None)
    body = webmap.render_page(
        webmap.PageRequest(lang=lang, embed=embed, filters=filters,
                           download=not embed or bool(params.download)), data, version=version,
        base=base_url(request), nonce=nonce, asset_version=request.app.state.asset_version,
        basemap=basemap)
    return HTMLResponse(body, headers={
        "Content-Security-Policy": csp(settings, nonce), "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin"})


@router.get("/map", response_class=HTMLResponse, summary="The world map (full page)",
            description="Filters as query parameters (`theme`, `section`, `kind`, "
                        "`commitment_kind`), the view as `#zoom/lat/lon`, `lang` en/fr/es.")
@router.get("/embed", response_class=HTMLResponse, summary="The world map for iframes",
            description="As /map, compact, with wheel zoom off inside a host page (ctrl + wheel "
                        "or two fingers). Framing is allowed by `frame-ancestors` from settings.")
async def map_page(request: Request, conn: ConnDep, params: Annotated[PageParams, Query()]
                   ) -> HTMLResponse:
    return await _page(request, conn, params, embed=request.url.path.endswith("/embed"))


def snippet(src: str, title: str, height: int | None = None) -> str:
    """An iframe in a box that keeps a 4:3 shape as the host page's column narrows (our own
    responsive height helper: CSS only, no script to paste), or a fixed height if given."""
    box = ("position:relative;width:100%;max-width:100%;"
           + (f"height:{height}px" if height else "aspect-ratio:4/3;min-height:320px"))
    return (f'<div class="hr-map-embed" style="{box}">'
            f'<iframe src="{html.escape(src)}" title="{html.escape(title)}" loading="lazy" '
            'style="position:absolute;inset:0;width:100%;height:100%;border:0" '
            'allow="fullscreen" allowfullscreen referrerpolicy="strict-origin-when-cross-origin">'
            "</iframe></div>")


@router.get("/embed/code", summary="A ready iframe snippet for a partner page",
            description="HTML to paste into a page (or `f=json` for `{html, src}`); same filters "
                        "and `lang` as /embed.")
async def embed_code(request: Request, conn: ConnDep,
                     params: Annotated[EmbedCodeParams, Query()]) -> Response:
    lang = params.lang
    data, _ = await cached_page_data(request, conn, lang)
    query = {"lang": lang} | _filters(params, data) | ({"download": "true"} if params.download
                                                        else {})
    src = f"{base_url(request)}/embed?{urlencode(query)}"
    code = snippet(src, i18n.STRINGS["map_label"][lang], params.height)
    if params.f == "json":
        return JSONResponse({"html": code, "src": src})
    return Response(code, media_type="text/html; charset=utf-8")


@router.get("/oembed", summary="oEmbed (rich) for links to /map or /embed",
            description="Paste a link to the map into a CMS: it asks here for the iframe to show.")
async def oembed(request: Request, params: Annotated[OembedParams, Query()]) -> JSONResponse:
    base = base_url(request)
    url, maxwidth, maxheight = params.url, params.maxwidth, params.maxheight
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != base or parts.path not in ("/map", "/embed"):
        raise NotFound(f"{url!r} is not a map of this service ({base}/map or /embed)")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    lang = query.get("lang", "en") if query.get("lang") in i18n.LANGS else "en"
    width, height = EMBED_SIZE
    if maxwidth and maxwidth < width:
        width, height = maxwidth, maxwidth * 3 // 4
    if maxheight and maxheight < height:
        height, width = maxheight, maxheight * 4 // 3
    src = f"{base}/embed" + (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
    title = i18n.STRINGS["map_label"][lang]
    return JSONResponse({
        "version": "1.0", "type": "rich", "title": title,
        "provider_name": i18n.STRINGS["title"][lang], "provider_url": f"{base}/map",
        "width": width, "height": height,
        "html": (f'<iframe src="{html.escape(src)}" title="{html.escape(title)}" width="{width}" '
                 f'height="{height}" style="border:0" loading="lazy" allow="fullscreen" '
                 "allowfullscreen></iframe>"),
    })
