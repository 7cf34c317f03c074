"""OGC API – Features routes: thin adapters from HTTP to geo_service.features."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection

from geo_service import cache, export, features
from geo_service.features import COLLECTIONS, Collection, ItemsQuery

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOJSON = "application/geo+json"
CSV = "text/csv; charset=utf-8"
GPKG = "application/geopackage+sqlite3"
JSON = "application/json"
CACHE = "public, max-age=60"

router = APIRouter()


async def _connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.pool.connection() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(_connection)]
CollectionId = Annotated[str, Path(description="Collection id, see /collections",
                                   examples=["regions"])]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _collection(collection_id: str) -> Collection:
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise features.NotFound(f"no collection {collection_id!r}; known: "
                                f"{', '.join(COLLECTIONS)}") from None


def _check_format(request: Request) -> None:
    f = request.query_params.get("f")
    if f is not None and f not in ("json", "geojson"):
        raise features.ClientError(f"f={f!r}: this resource is available as f=json")


def _check_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise features.ClientError(f"unknown query parameter(s): {', '.join(unknown)}")


def _negotiate(request: Request) -> str:
    """f= wins; else the Accept header; else GeoJSON."""
    f = request.query_params.get("f")
    if f:
        return {"json": "geojson", "geojson": "geojson", "csv": "csv", "gpkg": "gpkg"}[f]
    accept = request.headers.get("accept", "")
    if "text/csv" in accept:
        return "csv"
    if "geopackage" in accept:
        return "gpkg"
    return "geojson"


async def _validators(request: Request, conn: AsyncConnection, media_type: str,
                      extra: dict[str, str] | None = None
                      ) -> tuple[dict[str, str], Response | None, str]:
    """Response headers with an ETag from the data version, the request and the format; the
    304 to send at once, before any query runs, when the client already has this version; and
    the version itself."""
    version = await features.data_version(conn)
    key = f"{version}|{_base(request)}|{request.url.path}|{request.url.query}|{media_type}"
    tag = '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": CACHE, "Vary": "Accept", **(extra or {})}
    if media_type == GEOJSON:
        headers["Content-Crs"] = f"<{CRS84}>"
    if request.headers.get("if-none-match") in (tag, f"W/{tag}"):
        return headers, Response(status_code=304, headers=headers), version
    return headers, None, version


async def _cached(request: Request, headers: dict[str, str], media_type: str,
                  make: Callable[[], Awaitable[bytes]]) -> Response:
    """The body for this ETag from the response cache, or made now and kept there."""
    store: cache.BodyCache = request.app.state.body_cache
    key = headers["ETag"]
    entry = store.get(key)
    if entry is None:
        body = await make()
        if not store.keeps(len(body)):  # GZipMiddleware compresses it, at a quicker level
            return Response(body, media_type=media_type, headers=headers)
        entry = await cache.entry_for(body, media_type)
        store.put(key, entry)
    return cache.respond(request, entry, headers)


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@router.get("/", tags=["OGC API – Features"], summary="Landing page")
async def landing(request: Request) -> JSONResponse:
    _check_format(request)
    _check_params(request, {"f"})
    base = _base(request)
    return JSONResponse({
        "title": request.app.title,
        "description": request.app.description,
        "links": [
            {"href": f"{base}/", "rel": "self", "type": JSON, "title": "This document"},
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


@router.get("/conformance", tags=["OGC API – Features"], summary="Conformance classes")
async def conformance(request: Request) -> JSONResponse:
    _check_format(request)
    _check_params(request, {"f"})
    return JSONResponse({"conformsTo": CONFORMANCE})


async def _describe(request: Request, conn: AsyncConnection, collection: Collection,
                    version: str) -> dict[str, Any]:
    base = _base(request)
    url = f"{base}/collections/{collection.id}"
    bbox = await features.extent(conn, collection, version)
    described: dict[str, Any] = {
        "id": collection.id, "title": collection.title, "description": collection.description,
        "itemType": "feature", "crs": [CRS84], "storageCrs": CRS84,
        "links": [
            {"href": url, "rel": "self", "type": JSON, "title": collection.title},
            {"href": f"{url}/items", "rel": "items", "type": GEOJSON, "title": "Features"},
            {"href": f"{url}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables"},
        ],
    }
    if bbox:
        described["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84}}
    return described


@router.get("/collections", tags=["OGC API – Features"], summary="The collections")
async def collections(request: Request, conn: ConnDep) -> Response:
    _check_format(request)
    _check_params(request, {"f"})
    headers, unchanged, version = await _validators(request, conn, JSON)
    if unchanged:
        return unchanged
    base = _base(request)
    body = {
        "links": [{"href": f"{base}/collections", "rel": "self", "type": JSON,
                   "title": "Collections"}],
        "collections": [await _describe(request, conn, c, version) for c in COLLECTIONS.values()],
    }
    return Response(_json(body), media_type=JSON, headers=headers)


@router.get("/collections/{collection_id}", tags=["OGC API – Features"],
            summary="One collection's metadata")
async def collection(request: Request, conn: ConnDep, collection_id: CollectionId) -> Response:
    _check_format(request)
    _check_params(request, {"f"})
    described = _collection(collection_id)
    headers, unchanged, version = await _validators(request, conn, JSON)
    if unchanged:
        return unchanged
    return Response(_json(await _describe(request, conn, described, version)), media_type=JSON,
                    headers=headers)


@router.get("/collections/{collection_id}/queryables", tags=["OGC API – Features"],
            summary="Properties usable in filters and sortby")
async def queryables(request: Request, collection_id: CollectionId) -> JSONResponse:
    _check_format(request)
    _check_params(request, {"f"})
    c = _collection(collection_id)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_base(request)}/collections/{c.id}/queryables",
        "type": "object", "title": c.title,
        "properties": {name: {"title": name, "type": c.types.get(name, "string")}
                       for name in c.properties},
        "additionalProperties": False,
    }
    return JSONResponse(schema, media_type="application/schema+json")


def _page_link(request: Request, rel: str, offset: int) -> dict[str, str]:
    params = dict(request.query_params)
    params["offset"] = str(offset)
    return {"href": f"{_base(request)}{request.url.path}?{urlencode(params)}", "rel": rel,
            "type": GEOJSON, "title": f"{rel} page"}


@router.get(
    "/collections/{collection_id}/items", tags=["OGC API – Features"],
    summary="Features of a collection",
    description="GeoJSON FeatureCollection built in PostGIS. `region` takes a UCLG section slug "
                "(`europe`), an ISO 3166-1 code (`FR`) or an ISO 3166-2 code (`KR-29`). Follow "
                "`rel=next` links to read to the end.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, 400: {"description": "Bad parameter"},
               404: {"description": "Unknown collection"}},
)
async def items(
    request: Request, conn: ConnDep, collection_id: CollectionId,
    limit: Annotated[int, Query(ge=1, le=features.MAX_LIMIT, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, description="Features to skip")] = 0,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84)")] = None,
    datetime: Annotated[str | None, Query(
        description="Instant or interval (RFC 3339, `..` open): joining/declaration date or "
                    "year an initiative started")] = None,
    region: Annotated[str | None, Query(description="UCLG section slug, ISO 3166-1 or 3166-2")
                      ] = None,
    properties: Annotated[str | None, Query(description="Comma-separated properties to return")
                          ] = None,
    sortby: Annotated[str | None, Query(description="e.g. `name,-year`")] = None,
    precision: Annotated[int | None, Query(ge=0, le=15, description=(
        f"Decimal places of coordinates (default {features.DEFAULT_PRECISION}, ~10 m)"))] = None,
    zoom: Annotated[int | None, Query(ge=0, le=24, description=(
        "Web-map zoom: use the pre-generalized geometry tier made for it"))] = None,
    geometry: Annotated[str | None, Query(
        pattern="^(boundary|point|none)$", description="territories: boundary, point or none")
                        ] = None,
    kind: Annotated[str | None, Query(description="territories/initiatives: kind")] = None,
    commitment_kind: Annotated[str | None, Query(description="territories/initiatives")] = None,
    theme: Annotated[str | None, Query(description="Rights theme slug")] = None,
    country: Annotated[str | None, Query(pattern="^[A-Za-z]{2}$",
                                         description="ISO 3166-1 alpha-2")] = None,
    parent: Annotated[str | None, Query(description="boundaries: parent's code")] = None,
    include_engagement: Annotated[bool | None, Query(
        description="territories/initiatives: include engagement-only rows")] = None,
    crs: Annotated[str | None, Query(description=f"Output CRS: only {CRS84}")] = None,
    filter: Annotated[str | None, Query(description=(
        "CQL2 expression on the queryables, e.g. `year >= 2020 AND kind = 'region'` or "
        "`S_INTERSECTS(geometry, BBOX(-18, 4, 16, 28))`"))] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang", pattern="^cql2-(text|json)$",
                                             description="cql2-text (default) or cql2-json")] = None,
    f: Annotated[str | None, Query(
        pattern="^(json|geojson|csv|gpkg)$",
        description="geojson (default), csv (id, properties, lon/lat, WKT) or gpkg (GeoPackage); "
                    "or send Accept: text/csv or application/geopackage+sqlite3")] = None,
) -> Response:
    c = _collection(collection_id)
    q = features.parse_items_query(c, dict(request.query_params))
    chosen = _negotiate(request)
    media_type = {"csv": CSV, "gpkg": GPKG}.get(chosen, GEOJSON)
    download = {"Content-Disposition": f'attachment; filename="{c.id}.{chosen}"'}
    headers, unchanged, version = await _validators(request, conn, media_type,
                                                    download if chosen != "geojson" else None)
    if unchanged:
        return unchanged

    async def make() -> bytes:
        if chosen == "csv":
            names, found = await features.rows(conn, c, q, version, as_wkt=True)
            return export.to_csv(names, found, q.precision).encode()
        if chosen == "gpkg":
            names, found = await features.rows(conn, c, q, version)
            return await asyncio.to_thread(export.to_geopackage, c.id.replace("-", "_"), names, found)
        page = await features.items(conn, c, q, version)
        links = [{"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "This page"},
                 {"href": f"{_base(request)}/collections/{c.id}", "rel": "collection", "type": JSON,
                  "title": c.title}]
        if q.offset + q.limit < page["matched"]:
            links.append(_page_link(request, "next", q.offset + q.limit))
        if q.offset > 0:
            links.append(_page_link(request, "prev", max(0, q.offset - q.limit)))
        return ('{"type":"FeatureCollection","features":' + page["features"] +
                f',"numberMatched":{page["matched"]},"numberReturned":{page["returned"]},'
                f'"links":{_json(links)}}}').encode()

    return await _cached(request, headers, media_type, make)


@router.get("/collections/{collection_id}/items/{feature_id}", tags=["OGC API – Features"],
            summary="One feature", response_class=Response,
            responses={200: {"content": {GEOJSON: {}}}, 404: {"description": "Unknown id"}})
async def item(
    request: Request, conn: ConnDep, collection_id: CollectionId,
    feature_id: Annotated[str, Path(description="Feature id")],
    precision: Annotated[int | None, Query(ge=0, le=15)] = None,
    zoom: Annotated[int | None, Query(ge=0, le=24)] = None,
    geometry: Annotated[str | None, Query(pattern="^(boundary|point|none)$")] = None,
    properties: Annotated[str | None, Query()] = None,
    f: Annotated[str | None, Query(pattern="^(json|geojson)$")] = None,
) -> Response:
    c = _collection(collection_id)
    _check_params(request, {"f", "precision", "zoom", "geometry", "properties", "crs"})
    q: ItemsQuery = features.parse_items_query(c, dict(request.query_params))
    headers, unchanged, _ = await _validators(request, conn, GEOJSON)
    if unchanged:
        return unchanged

    async def make() -> bytes:
        feature = await features.item(conn, c, feature_id, q)
        base = _base(request)
        links = _json([
            {"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "This feature"},
            {"href": f"{base}/collections/{c.id}", "rel": "collection", "type": JSON,
             "title": c.title},
        ])
        return (feature[:-1] + f',"links":{links}}}').encode()

    return await _cached(request, headers, GEOJSON, make)
