"""OGC API – Features routes: thin adapters from HTTP to geo_service.query.features. Each route's
parameters are one model, used for validation and OpenAPI alike."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg import AsyncConnection
from pydantic import Field
from starlette.routing import Route

from geo_service.domain import ENGAGEMENT_ONLY, NOT_ISO3166_1, tier_for_zoom, valid_country
from geo_service.errors import ClientError
from geo_service.query import features, filters, regions, service
from geo_service.query.collections import COLLECTIONS, Collection
from geo_service.query.features import CRS84, ItemsQuery
from geo_service.query.pages import credits
from geo_service.query.service import data_version
from geo_service.render import apihtml, export, i18n
from geo_service.render.site import Site
from geo_service.web import cache
from geo_service.web.http import (
    CACHE,
    JSON,
    ConnDep,
    FormatQuery,
    Params,
    base_url,
    cached,
    compact_json,
    conditional,
    one_of,
    query_model,
    wants_html,
)

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
]
GEOJSON = "application/geo+json"
HTML_TIER = 3  # the generalized shapes an HTML page's small map draws
CSV = "text/csv; charset=utf-8"
GPKG = "application/geopackage+sqlite3"

router = APIRouter(tags=["OGC API – Features"])
CollectionId = Annotated[str, Path(description="Collection id, see /collections",
                                   examples=["regions"])]


class FeatureParams(Params):
    """What shapes one feature: shared by items and a single item."""

    precision: int | None = Field(None, ge=0, le=features.MAX_PRECISION, description=(
        f"Decimal places of coordinates (default {features.DEFAULT_PRECISION}, ~10 m)"))
    zoom: int | None = Field(None, ge=0, le=features.MAX_ZOOM, description=(
        "Web-map zoom: use the pre-generalized geometry tier made for it"))
    geometry: Literal["boundary", "point", "none"] | None = Field(
        None, description="territories and sections: boundary, point or none")
    properties: str | None = Field(None, description="Comma-separated properties to return")
    crs: str | None = Field(None, description=f"Output CRS: only {CRS84}")


class ItemParams(FeatureParams):
    f: Literal["json", "geojson", "html"] | None = Field(
        None, description="json or geojson; html for a browser (as `Accept: text/html` asks)")
    lang: i18n.Lang = Field("en", description="Language of the HTML page")


class ItemsParams(FeatureParams):
    limit: int = Field(features.DEFAULT_LIMIT, ge=1, le=features.MAX_LIMIT, description="Page size")
    offset: int = Field(0, ge=0, le=features.MAX_OFFSET, description="Features to skip")
    bbox: str | None = Field(None, description="minLon,minLat,maxLon,maxLat (CRS84)")
    bbox_crs: str | None = Field(None, alias="bbox-crs", description=f"Only {CRS84}")
    datetime: str | None = Field(None, description=(
        "Instant or interval (RFC 3339, `..` open): joining/declaration date or year an "
        "initiative started"))
    region: str | None = Field(None, description="UCLG section slug, ISO 3166-1 or 3166-2")
    sortby: str | None = Field(None, description="e.g. `name,-year`")
    kind: str | None = Field(None, description=(
        f"territories/initiatives: the territory's kind ({', '.join(i18n.KINDS)})"))
    commitment_kind: str | None = Field(None, description=(
        f"territories/initiatives: {', '.join(i18n.COMMITMENTS)} or {ENGAGEMENT_ONLY} (with "
        "include_engagement)"))
    theme: str | None = Field(None, description="Rights theme slug (an unknown one is a 400 "
                                                "listing them)")
    country: str | None = Field(None, pattern="^[A-Za-z]{2}$",
                                description="ISO 3166-1 alpha-2 (XK: Kosovo)")
    parent: str | None = Field(None, description="boundaries: parent's code")
    include_engagement: bool | None = Field(
        None, description="territories/initiatives: include engagement-only rows")
    filter: str | None = Field(None, description=(
        "CQL2 expression on the queryables, e.g. `year >= 2020 AND kind = 'region'` or "
        "`S_INTERSECTS(geometry, BBOX(-18, 4, 16, 28))`"))
    filter_lang: Literal["cql2-text", "cql2-json"] | None = Field(
        None, alias="filter-lang", description="cql2-text (default) or cql2-json")
    filter_crs: str | None = Field(None, alias="filter-crs", description=f"Only {CRS84}")
    f: Literal["json", "geojson", "csv", "gpkg", "html"] | None = Field(
        None, description="geojson (default), csv (id, properties, lon/lat, WKT), gpkg "
                          "(GeoPackage) or html (a page with a table, a map and paging); or "
                          "send Accept: text/csv, application/geopackage+sqlite3 or text/html")
    lang: i18n.Lang = Field("en", description="Language of the HTML page")


# query parameters that only some collections take: the collection's filters and extra_params
_PER_COLLECTION = ("geometry", "include_engagement", "kind", "commitment_kind", "theme",
                   "country", "parent")


def _given(params: Params) -> dict[str, Any]:
    return params.model_dump(exclude_unset=True, by_alias=True)


def _check_crs(given: dict[str, Any]) -> None:
    for name in ("bbox-crs", "crs", "filter-crs"):
        if name in given and given[name] not in (CRS84, f"[{CRS84}]"):
            raise ClientError(f"{name}: only {CRS84} (longitude, latitude)")


def _shape(c: Collection, p: FeatureParams, q: ItemsQuery) -> ItemsQuery:
    _check_crs(_given(p))
    if p.precision is not None:
        q.precision = p.precision
    if p.zoom is not None:
        q.tier = tier_for_zoom(p.zoom)
    if p.geometry is not None:
        if "geometry" not in c.extra_params:
            takes = [k for k, other in COLLECTIONS.items() if "geometry" in other.extra_params]
            raise ClientError(f"unknown query parameter(s): geometry; only {', '.join(takes)} "
                              "take it")
        if p.geometry not in c.geometries:
            raise ClientError(f"geometry must be one of {', '.join(c.geometries)}")
        q.geometry = p.geometry
    if p.properties is not None:
        q.properties = features.parse_properties(c, p.properties)
    return q


async def items_query(conn: AsyncConnection, c: Collection, p: ItemsParams, version: str
                      ) -> ItemsQuery:
    """The validated model, checked against what the collection takes, as an ItemsQuery."""
    given = _given(p)
    takes = set(c.filters) | set(c.extra_params)
    refused = sorted(n for n in _PER_COLLECTION if n in given and n not in takes)
    if refused:
        allowed = sorted(set(ItemsParams.model_fields) - set(_PER_COLLECTION) | takes)
        names = [ItemsParams.model_fields[n].alias or n for n in allowed]
        raise ClientError(f"unknown query parameter(s): {', '.join(refused)}; this collection "
                          f"takes {', '.join(sorted(names))}")
    q = _shape(c, p, ItemsQuery(limit=p.limit, offset=p.offset))
    if p.bbox is not None:
        q.bbox = features.parse_bbox(p.bbox)
    if p.datetime is not None:
        if c.datetime_sql is None:
            raise ClientError(f"collection {c.id} has no time dimension")
        q.datetime = features.parse_datetime(p.datetime)
    if p.region is not None:
        q.region = regions.resolve(p.region, await regions.known_regions(conn, version))
    if p.sortby is not None:
        q.sortby = features.parse_sortby(c, p.sortby)
    q.include_engagement = bool(p.include_engagement)
    if p.filter is not None:
        q.filter = filters.parse(p.filter, p.filter_lang)
    elif p.filter_lang is not None:
        raise ClientError("filter-lang without filter")
    for name in c.filters:
        value = given.get(name)
        if value is not None:
            q.equals[name] = await _known_value(conn, version, name, value)
    return q


async def _known_value(conn: AsyncConnection, version: str, name: str, value: str) -> str:
    """A filter's value as stored, or a 400 when it names nothing that could match (a typo
    would otherwise be an empty page that looks like an answer). Any value of `parent`."""
    if name == "country":
        code = value.upper()
        if not valid_country(code):
            meant = f" ({NOT_ISO3166_1[code]} is meant?)" if code in NOT_ISO3166_1 else ""
            raise ClientError(f"country={value!r} is not an ISO 3166-1 alpha-2 code{meant}")
        return code
    if name == "theme":
        return one_of(name, value, (await regions.known_regions(conn, version)).themes)
    return one_of(name, value, _VOCABULARIES[name]) if name in _VOCABULARIES else value


# the filters whose values are fixed words (themes are data: read per data version)
_VOCABULARIES = {"kind": frozenset(i18n.KINDS),
                 "commitment_kind": frozenset(i18n.COMMITMENTS) | {ENGAGEMENT_ONLY}}


def _collection(collection_id: str) -> Collection:
    return features.collection(collection_id)


def _negotiate(request: Request, f: str | None) -> str:
    """f= wins; else the Accept header; else GeoJSON."""
    if f:
        return {"json": "geojson", "geojson": "geojson", "csv": "csv", "gpkg": "gpkg"}[f]
    accept = request.headers.get("accept", "")
    if "text/csv" in accept:
        return "csv"
    if "geopackage" in accept:
        return "gpkg"
    return "geojson"


def _validators(request: Request, version: str, media_type: str,
                extra: dict[str, str] | None = None) -> tuple[dict[str, str], Response | None]:
    """Headers with an ETag from the data version, the request and the format, and the 304 to
    send at once when the client has this version."""
    key = f"{version}|{base_url(request)}|{request.url.path}|{request.url.query}|{media_type}"
    headers = {"Cache-Control": CACHE, "Vary": "Accept", **(extra or {})}
    if media_type == GEOJSON:
        headers["Content-Crs"] = f"<{CRS84}>"
    return conditional(request, key, headers)


def _here(request: Request, lang: str) -> Site:
    return Site(lang, base_url(request), request.app.state.asset_version)


def _html(body: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, headers={"Vary": "Accept", **(headers or {})})


@router.get("/", summary="Landing page", response_class=JSONResponse,
            responses={200: {"content": {JSON: {}, "text/html": {}}}})
async def landing(request: Request, params: FormatQuery) -> Response:
    base = base_url(request)
    if wants_html(request, params.f):
        return _html(apihtml.landing(_here(request, params.lang), request.app.title,
                                     request.app.description))
    return JSONResponse({
        "title": request.app.title,
        "description": request.app.description,
        "links": [
            {"href": f"{base}/", "rel": "self", "type": JSON, "title": "This document"},
            {"href": f"{base}/?f=html", "rel": "alternate", "type": "text/html",
             "title": "This document as HTML"},
            {"href": f"{base}/api", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "OpenAPI 3"},
            {"href": f"{base}/api.html", "rel": "service-doc", "type": "text/html",
             "title": "API documentation"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": JSON,
             "title": "Conformance classes"},
            {"href": f"{base}/collections", "rel": "data", "type": JSON, "title": "Collections"},
            {"href": f"{base}/api/stats", "rel": "related", "type": JSON,
             "title": "Campaign progress"},
            {"href": f"{base}/map", "rel": "related", "type": "text/html", "title": "World map"},
            {"href": f"{base}/tiles", "rel": "related", "type": JSON, "title": "Vector tiles"},
        ],
    })


@router.get("/conformance", summary="Conformance classes", response_class=JSONResponse,
            responses={200: {"content": {JSON: {}, "text/html": {}}}})
async def conformance(request: Request, params: FormatQuery) -> Response:
    if wants_html(request, params.f):
        return _html(apihtml.conformance(_here(request, params.lang), CONFORMANCE))
    return JSONResponse({"conformsTo": CONFORMANCE}, headers={"Vary": "Accept"})


async def _describe(request: Request, conn: AsyncConnection, collection: Collection,
                    version: str) -> dict[str, Any]:
    url = f"{base_url(request)}/collections/{collection.id}"
    bbox = await features.extent(conn, collection, version)
    described: dict[str, Any] = {
        "id": collection.id, "title": collection.title, "description": collection.description,
        "itemType": "feature", "crs": [CRS84], "storageCrs": CRS84,
        "links": [
            {"href": url, "rel": "self", "type": JSON, "title": collection.title},
            {"href": f"{url}?f=html", "rel": "alternate", "type": "text/html",
             "title": f"{collection.title} (HTML)"},
            {"href": f"{url}/items", "rel": "items", "type": GEOJSON, "title": "Features"},
            {"href": f"{url}/items?f=html", "rel": "items", "type": "text/html",
             "title": "Features (HTML)"},
            {"href": f"{url}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables"},
        ],
    }
    if bbox:
        described["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84}}
    return described


@router.get("/collections", summary="The collections",
            responses={200: {"content": {JSON: {}, "text/html": {}}}})
async def collections(request: Request, conn: ConnDep, params: FormatQuery) -> Response:
    version = await data_version(conn)
    html = wants_html(request, params.f)
    headers, unchanged = _validators(request, version, "text/html" if html else JSON)
    if unchanged:
        return unchanged
    base = base_url(request)
    if html:
        described = [await _describe(request, conn, c, version) for c in COLLECTIONS.values()]
        return _html(apihtml.collections(_here(request, params.lang), described), headers)
    body = {
        "links": [{"href": f"{base}/collections", "rel": "self", "type": JSON,
                   "title": "Collections"},
                  {"href": f"{base}/collections?f=html", "rel": "alternate", "type": "text/html",
                   "title": "Collections (HTML)"}],
        "collections": [await _describe(request, conn, c, version) for c in COLLECTIONS.values()],
    }
    return Response(compact_json(body), media_type=JSON, headers=headers)


@router.get("/collections/{collection_id}", summary="One collection's metadata")
async def collection(request: Request, conn: ConnDep, collection_id: CollectionId,
                     params: FormatQuery) -> Response:
    described = _collection(collection_id)
    version = await data_version(conn)
    html = wants_html(request, params.f)
    headers, unchanged = _validators(request, version, "text/html" if html else JSON)
    if unchanged:
        return unchanged
    if html:
        return _html(apihtml.collection(_here(request, params.lang),
                                        await _describe(request, conn, described, version)),
                     headers)
    return Response(compact_json(await _describe(request, conn, described, version)),
                    media_type=JSON, headers=headers)


@router.get("/collections/{collection_id}/queryables",
            summary="Properties usable in filters and sortby")
async def queryables(request: Request, collection_id: CollectionId, params: FormatQuery
                     ) -> JSONResponse:
    c = _collection(collection_id)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base_url(request)}/collections/{c.id}/queryables",
        "type": "object", "title": c.title,
        "properties": {name: {"title": name, "type": c.types.get(name, "string")}
                       for name in c.properties},
        "additionalProperties": False,
    }
    return JSONResponse(schema, media_type="application/schema+json")


def _page_link(request: Request, rel: str, offset: int) -> dict[str, str]:
    params = dict(request.query_params)
    params["offset"] = str(offset)
    return {"href": f"{base_url(request)}{request.url.path}?{urlencode(params)}", "rel": rel,
            "type": GEOJSON, "title": f"{rel} page"}


async def _items_route(request: Request) -> Response:
    """GET items, its parameters read by query_model rather than FastAPI (the same model and
    errors; the documented route below describes it in the OpenAPI document)."""
    params = query_model(ItemsParams, request)
    async with request.app.state.pool.connection() as conn:
        return await items(request, conn, request.path_params["collection_id"], params)


# before the documented route, so it is the one that answers
router.routes.append(Route("/collections/{collection_id}/items", _items_route, methods=["GET"],
                           include_in_schema=False))


@router.get(
    "/collections/{collection_id}/items",
    summary="Features of a collection",
    description="GeoJSON FeatureCollection built in PostGIS. `region` takes a UCLG section slug "
                "(`europe`), an ISO 3166-1 code (`FR`) or an ISO 3166-2 code (`KR-29`). Follow "
                "`rel=next` links to read to the end.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, 400: {"description": "Bad parameter"},
               404: {"description": "Unknown collection"}},
)
async def items(request: Request, conn: ConnDep, collection_id: CollectionId,
                params: Annotated[ItemsParams, Query()]) -> Response:
    c = _collection(collection_id)
    if wants_html(request, params.f):
        return await _items_html(request, conn, c, params)
    chosen = _negotiate(request, params.f)
    if chosen == "geojson" and _version_with_page(request):
        answer = await _items_read_with_version(request, conn, c, params)
        if answer is not None:
            return answer
    media_type = {"csv": CSV, "gpkg": GPKG}.get(chosen, GEOJSON)
    download = {"Content-Disposition": f'attachment; filename="{c.id}.{chosen}"'}
    version = await data_version(conn)
    q = await items_query(conn, c, params, version)
    headers, unchanged = _validators(request, version, media_type,
                                     download if chosen != "geojson" else None)
    if unchanged:
        return unchanged
    if chosen != "geojson" and headers["ETag"] not in request.app.state.body_cache:
        await features.check_budget(conn, c, q)  # about to build it (GeoJSON checks in its query)

    async def make() -> bytes:
        if chosen == "csv":
            names, found = await features.rows(conn, c, q, as_wkt=True)
            text = await asyncio.to_thread(export.to_csv, names, found, q.precision)
            return text.encode()
        if chosen == "gpkg":
            names, found = await features.rows(conn, c, q)
            return await asyncio.to_thread(export.to_geopackage, c.id.replace("-", "_"), names, found)
        return _feature_collection(request, c, q, await features.items(conn, c, q, version))

    return await cached(request, request.app.state.body_cache, headers["ETag"], headers,
                        media_type, make)


def _version_with_page(request: Request) -> bool:
    """Whether an items page may be read together with its data version: when neither a 304
    (the client sends If-None-Match) nor a kept body (the response cache is on) could spare the
    page's query, the version is needed only for the ETag, and a round trip for it first is
    wasted."""
    return (request.app.state.body_cache.max_bytes <= 0
            and "if-none-match" not in request.headers)


async def _items_read_with_version(request: Request, conn: AsyncConnection, c: Collection,
                                   p: ItemsParams) -> Response | None:
    """The GeoJSON page and the data version it was read at, from one statement, so its ETag
    carries the version of the rows it holds. None (the caller reads the version first) before
    this database has answered any version, when a region's codes are not at hand for it, or
    when the database has moved on to another version since."""
    expected = service.seen_version(conn)
    if expected is None or (p.region is not None and not regions.knows(expected)):
        return None
    q = await items_query(conn, c, p, expected)
    found = await features.items_read(conn, c, q, expected)
    if found is None:
        return None
    version, page = found
    headers, _ = _validators(request, version, GEOJSON)
    # the response cache is off (_version_with_page): sent once, as `cached` would send it
    return await cache.send_once(request, _feature_collection(request, c, q, page), GEOJSON,
                                 headers)


def _feature_collection(request: Request, c: Collection, q: ItemsQuery, page: dict[str, Any]
                        ) -> bytes:
    """An items page as a GeoJSON FeatureCollection, around the features PostGIS made."""
    links = [{"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "This page"},
             {"href": f"{base_url(request)}/collections/{c.id}", "rel": "collection", "type": JSON,
              "title": c.title}]
    if q.offset + q.limit < page["matched"]:
        links.append(_page_link(request, "next", q.offset + q.limit))
    if q.offset > 0:
        links.append(_page_link(request, "prev", max(0, q.offset - q.limit)))
    return (b'{"type":"FeatureCollection","features":' + page["features"] +
            f',"numberMatched":{page["matched"]},"numberReturned":{page["returned"]},'
            f'"links":{compact_json(links)}}}'.encode())


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature",
            response_class=Response,
            responses={200: {"content": {GEOJSON: {}}}, 404: {"description": "Unknown id"}})
async def item(request: Request, conn: ConnDep, collection_id: CollectionId,
               feature_id: Annotated[str, Path(description="Feature id")],
               params: Annotated[ItemParams, Query()]) -> Response:
    c = _collection(collection_id)
    q = _shape(c, params, ItemsQuery())
    html = wants_html(request, params.f)
    version = await data_version(conn)
    headers, unchanged = _validators(request, version, "text/html" if html else GEOJSON)
    if unchanged:
        return unchanged
    if html:
        if params.zoom is None:
            q.tier = HTML_TIER
        feature = json.loads(await features.item(conn, c, feature_id, q))
        here = _here(request, params.lang)
        return _html(apihtml.item(here, c, feature, apihtml.map_config(
            here, version, await credits(conn))), headers)

    async def make() -> bytes:
        feature = await features.item(conn, c, feature_id, q)
        base = base_url(request)
        links = compact_json([
            {"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "This feature"},
            {"href": f"{base}/collections/{c.id}", "rel": "collection", "type": JSON,
             "title": c.title},
        ])
        return (feature[:-1] + f',"links":{links}}}').encode()

    return await cached(request, request.app.state.body_cache, headers["ETag"], headers, GEOJSON,
                        make)


async def _items_html(request: Request, conn: AsyncConnection, c: Collection, p: ItemsParams
                      ) -> Response:
    """An items page as HTML: the same query as the JSON, its shapes from a generalized tier
    unless `zoom` says otherwise (the map is small)."""
    version = await data_version(conn)
    q = await items_query(conn, c, p, version)
    if p.zoom is None:
        q.tier = HTML_TIER
    headers, unchanged = _validators(request, version, "text/html")
    if unchanged:
        return unchanged
    page = await features.items(conn, c, q, version)
    parsed = {"features": json.loads(page["features"]), "numberMatched": page["matched"]}
    here = _here(request, p.lang)
    given = {k: v for k, v in request.query_params.items() if k not in ("f", "lang")}
    body = apihtml.items(here, c, parsed, given, q.offset, q.limit,
                         apihtml.map_config(here, version, await credits(conn)))
    return _html(body, headers)
