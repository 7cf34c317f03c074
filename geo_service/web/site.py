"""Territory pages (/territories/{id}), the list of territories (/territories) and sitemap.xml.

A page and its data share one URL: a browser gets HTML, a client that asks for
`application/geo+json` (or `f=geojson`) gets the same territory, or the list's territories, as
GeoJSON: the OGC API items of the `territories` collection."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from geo_service.errors import ClientError, NotFound
from geo_service.query.features import MAX_LIMIT
from geo_service.query.pages import credits, territory_detail
from geo_service.query.service import data_version
from geo_service.render import i18n, site
from geo_service.settings import Settings
from geo_service.web import ogc, pages
from geo_service.web.http import (
    HTML_TYPES,
    ConnDep,
    NoParams,
    Params,
    base_url,
    conditional,
    one_of,
    prefers,
)

router = APIRouter(tags=["Territory pages"])
GEOJSON = "application/geo+json"
SORTS = [*site.COLUMNS, *(f"-{c}" for c in site.COLUMNS)]


class TerritoryParams(Params):
    lang: i18n.Lang = Field("en", description="Language of the page and names")
    f: Literal["html", "geojson", "json"] | None = Field(
        None, description="html, or geojson (as `Accept: application/geo+json` asks)")


class AboutParams(Params):
    lang: i18n.Lang = Field("en", description="Language of the page")


class ListParams(TerritoryParams):
    q: str | None = Field(None, max_length=100, description="Part of a name (or local name)")
    country: str | None = Field(None, pattern="^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")
    kind: str | None = Field(None, max_length=100, description=", ".join(i18n.KINDS))
    commitment_kind: str | None = Field(None, max_length=100,
                                        description=", ".join(i18n.COMMITMENTS))
    section: str | None = Field(None, max_length=100, description="UCLG section slug")
    theme: str | None = Field(None, max_length=100, description="Rights theme slug")
    sort: str | None = Field(None, max_length=20, description=(
        f"Column to sort by: {', '.join(site.COLUMNS)}; `-` first for descending"))


def wants_geojson(accept: str, f: str | None) -> bool:
    """f= wins; else GeoJSON when the Accept header prefers it to HTML (by q-value, then by
    order). A browser's Accept names text/html first: it gets the page."""
    if f:
        return f in ("geojson", "json")
    return prefers(accept, ("application/geo+json",), HTML_TYPES)


def _headers(request: Request, settings_key: str) -> tuple[dict[str, str], Response | None]:
    settings = request.app.state.settings
    return conditional(request, settings_key, {
        "Content-Security-Policy": pages.csp(settings, None), "Cache-Control": "no-cache",
        "Vary": "Accept", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin"})


@router.get("/territories", response_class=HTMLResponse,
            summary="The list of territories (HTML table, or GeoJSON)",
            description="A sortable, filterable table of the shown territories, each linking to "
                        "its page. `Accept: application/geo+json` or `f=geojson` answers the "
                        "same territories as GeoJSON (the `territories` collection's items).",
            responses={200: {"content": {"text/html": {}, GEOJSON: {}}}})
async def territory_list(request: Request, conn: ConnDep,
                         params: Annotated[ListParams, Query()]) -> Response:
    data, version = await pages.cached_page_data(request, conn, params.lang)
    chosen = _list_filters(params, data)
    if params.sort is not None and params.sort not in SORTS:
        raise ClientError(f"sort={params.sort!r}: one of {', '.join(SORTS)}")
    if wants_geojson(request.headers.get("accept", ""), params.f):
        given = {"limit": MAX_LIMIT, "f": "geojson"} | {k: v for k, v in chosen if k != "section"}
        if "section" in dict(chosen):
            given["region"] = dict(chosen)["section"]
        if params.q:
            raise ClientError("q (search by name) is for the HTML list: filter GeoJSON with "
                              "/collections/territories/items?filter=name LIKE '%…%'")
        return await ogc.items(request, conn, "territories",
                               ogc.ItemsParams.model_validate(given))
    headers, unchanged = _headers(request, f"territories|{version}|{request.url}")
    if unchanged:
        return unchanged
    query = site.ListQuery(q=params.q or "", filters=tuple(chosen), sort=params.sort or "name")
    here = site.Site(params.lang, base_url(request), request.app.state.asset_version)
    rows = site.list_rows(data["territories"], data, params.lang, query, here)
    body = site.territories_page(here, rows, len(data["territories"]), data, query)
    return HTMLResponse(body, headers=headers)


def _list_filters(params: ListParams, data: dict[str, Any]) -> list[tuple[str, str]]:
    """The filters given, each checked against what exists (an unknown value is a 400)."""
    known: dict[str, Collection[str]] = {
        "kind": i18n.KINDS, "commitment_kind": i18n.COMMITMENTS, "section": data["sections"],
        "theme": data["themes"]}
    chosen = []
    for name in site.LIST_FILTERS:
        value = getattr(params, name)
        if not value:
            continue
        chosen.append((name, value.upper() if name == "country" else one_of(name, value, known[name])))
    return chosen


@router.get("/territories/{territory_id}", response_class=HTMLResponse,
            summary="A territory's page (HTML, or GeoJSON)",
            description="Its boundary on a small map, names, kind, section, commitment with "
                        "sources, initiatives, where its boundary comes from, embed code, Open "
                        "Graph and schema.org data. `Accept: application/geo+json` or "
                        "`f=geojson` answers the territory as a GeoJSON feature.",
            responses={200: {"content": {"text/html": {}, GEOJSON: {}}},
                       404: {"description": "No shown territory has this id"}})
async def territory_page(request: Request, conn: ConnDep,
                         territory_id: Annotated[str, Path(max_length=200)],
                         params: Annotated[TerritoryParams, Query()]) -> Response:
    if wants_geojson(request.headers.get("accept", ""), params.f):
        return await ogc.item(request, conn, "territories", territory_id,
                              ogc.ItemParams.model_validate({"f": "geojson"}))
    data, version = await pages.cached_page_data(request, conn, params.lang)
    headers, unchanged = _headers(request, f"territory|{version}|{request.url}")
    if unchanged:
        return unchanged
    found = next((t for t in data["territories"] if t["id"] == territory_id), None)
    detail = await territory_detail(conn, territory_id, params.lang) if found else None
    if found is None or detail is None:
        raise NotFound(f"no territory {territory_id!r}: see /territories")
    here = site.Site(params.lang, base_url(request), request.app.state.asset_version)
    zoom, lat, lon = site.embed_view(detail["boundary"]["bbox"] if detail["boundary"] else None,
                                     found["lat"], found["lon"])
    src = f"{here.base}/embed?lang={params.lang}#{zoom}/{lat}/{lon}"
    code = pages.snippet(src, i18n.STRINGS["map_of"][params.lang].format(name=found["name"]))
    body = site.territory_page(here, found, detail, data, version, code, src)
    return HTMLResponse(body, headers=headers)


@router.get("/about", response_class=HTMLResponse,
            summary="Sources and licences: every boundary dataset's full attribution")
async def about(request: Request, conn: ConnDep, params: Annotated[AboutParams, Query()]
                ) -> Response:
    version = await data_version(conn)
    headers, unchanged = _headers(request, f"about|{version}|{request.url}")
    if unchanged:
        return unchanged
    here = site.Site(params.lang, base_url(request), request.app.state.asset_version)
    body = site.about_page(here, await credits(conn), _software(request.app.state.settings))
    return HTMLResponse(body, headers=headers)


def _software(settings: Settings) -> list[tuple[str, str, str]]:
    """The pinned front-end packages the pages load: name, version, licence (from each
    package's own package.json)."""
    found = []
    for folder in pages.VENDOR_DIRS.values():
        package = folder.split("/", 1)[0]
        try:
            meta = json.loads((settings.node_modules / package / "package.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((package, str(meta.get("version", "")), str(meta.get("license", ""))))
    return found


@router.get("/sitemap.xml", summary="The sitemap: the map, the list and every territory's page",
            response_class=Response, responses={200: {"content": {"application/xml": {}}}})
async def sitemap(request: Request, conn: ConnDep, params: Annotated[NoParams, Query()]
                  ) -> Response:
    data, version = await pages.cached_page_data(request, conn, "en")
    headers, unchanged = conditional(request, f"sitemap|{version}|{base_url(request)}",
                                     {"Cache-Control": "public, max-age=3600"})
    if unchanged:
        return unchanged
    row = await (await conn.execute("SELECT changed_at::date FROM data_version")).fetchone()
    body = site.sitemap(base_url(request), [t["id"] for t in data["territories"]],
                        row[0].isoformat() if row and row[0] else None)
    return Response(body, media_type="application/xml", headers=headers)
