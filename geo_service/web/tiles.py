"""Vector tile endpoints: TileJSON 3.0 per tileset and the tiles themselves.

A tile comes, in order, from the response cache (keyed by an ETag that carries the data version),
from the prebuilt archive when it holds the current version, or from one live SQL statement.
"""

from __future__ import annotations

import gzip
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from geo_service.errors import NotFound
from geo_service.query import tiles
from geo_service.query.pages import credits
from geo_service.query.service import data_version
from geo_service.render import tiles as tile_store
from geo_service.render.credits import full as full_credit
from geo_service.render.i18n import Lang
from geo_service.web import cache
from geo_service.web.http import (
    CACHE,
    IMMUTABLE,
    ConnDep,
    FormatQuery,
    NoParams,
    Params,
    base_url,
    cached,
    conditional,
    query_model,
)

MVT = "application/vnd.mapbox-vector-tile"
router = APIRouter(tags=["Vector tiles"])


class LangParams(Params):
    lang: Lang = Field("en", description="Language of names")


class TileParams(LangParams):
    v: str | None = Field(None, max_length=100, description="Data version (from TileJSON); cache "
                                                            "key only")


Tileset = Annotated[str, Path(description="countries, regions, municipalities, territories or map",
                              examples=["map"])]


def _tileset(name: str) -> str:
    if name not in tiles.TILESETS:
        raise NotFound(f"no tileset {name!r}: known are {', '.join(tiles.TILESETS)}")
    return name


@router.get("/tiles", summary="The tilesets")
async def tilesets(request: Request, params: Annotated[NoParams, Query()]) -> JSONResponse:
    base = base_url(request)
    return JSONResponse({"tilesets": [
        {"id": name, "title": tiles.TILESET_TITLES[name], "layers": list(layers),
         "links": [{"href": f"{base}/tiles/{name}.json", "rel": "describedby",
                    "type": "application/json", "title": "TileJSON 3.0"}]}
        for name, layers in tiles.TILESETS.items()]})


@router.get("/tiles/{tileset}.json", summary="TileJSON 3.0 of a tileset",
            description="The `tiles` URL carries the data version (`v=`), so caches refresh "
                        "after every load or import; `lang` sets the language of names.")
async def tilejson(request: Request, conn: ConnDep, tileset: Tileset,
                   params: Annotated[LangParams, Query()]) -> Response:
    name = _tileset(tileset)
    lang = params.lang
    version = await data_version(conn)
    headers, unchanged = conditional(request, f"{version}|{base_url(request)}|{request.url}",
                                     {"Cache-Control": CACHE})
    if unchanged:
        return unchanged
    layers = tiles.vector_layers(name)
    url = f"{base_url(request)}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt?v={version}&lang={lang}"
    body = {
        "tilejson": "3.0.0", "name": name, "description": tiles.TILESET_TITLES[name],
        "version": "1.0.0", "attribution": full_credit(await credits(conn)), "scheme": "xyz",
        "tiles": [url],
        "minzoom": min(layer["minzoom"] for layer in layers), "maxzoom": tiles.DATA_MAX_ZOOM,
        "bounds": tiles.WORLD, "center": [10.0, 20.0, 1], "vector_layers": layers,
        "fillzoom": tiles.DATA_MAX_ZOOM,
    }
    return JSONResponse(body, headers=headers)


async def _tile_route(request: Request) -> Response:
    """GET a vector tile, its parameters read by query_model and _GridNumber rather than
    FastAPI (the same model and errors; the documented route below describes it in the OpenAPI
    document, and answers the paths _GridNumber refuses, such as a negative or huge z)."""
    params = query_model(TileParams, request)
    found = request.path_params
    name = _tileset(found["tileset"])
    async with request.app.state.pool.connection() as conn:
        return await _serve(request, conn, name, found["z"], found["x"], found["y"], params)


class _GridNumber(Convertor[int]):
    """z, x or y of a tile: up to 7 digits (x and y reach 4,194,303 at z22). Starlette's `int`
    takes any number of digits, and `int()` refuses a string of over 4,300 (a 500): a longer
    path is left to the documented route, whose validation answers 400."""

    regex = "[0-9]{1,7}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("grid", _GridNumber())
# before the documented route, so it is the one that answers
router.routes.append(Route("/tiles/{tileset}/{z:grid}/{x:grid}/{y:grid}.mvt", _tile_route,
                           methods=["GET"], include_in_schema=False))


@router.get(
    "/tiles/{tileset}/{z}/{x}/{y}.mvt", summary="A vector tile",
    description="Mapbox Vector Tile (EPSG:3857, extent 4096, buffer 64), one layer per tileset "
                "layer; `204 No Content` for an empty tile. Zooms 0–22 are served; clients "
                "overzoom beyond 14.",
    response_class=Response,
    responses={200: {"content": {MVT: {}}}, 204: {"description": "Empty tile"},
               400: {"description": "z, x or y off the grid"}, 404: {"description": "Unknown tileset"}},
)
async def tile(
    request: Request, conn: ConnDep, tileset: Tileset,
    z: Annotated[int, Path(description="Zoom, 0–22")],
    x: Annotated[int, Path(description="Column, 0 to 2^z − 1")],
    y: Annotated[int, Path(description="Row from the top, 0 to 2^z − 1")],
    params: Annotated[TileParams, Query()],
) -> Response:
    return await _serve(request, conn, _tileset(tileset), z, x, y, params)


@router.get("/collections/{collection_id}/tiles", summary="OGC API – Tiles: a layer's tilesets",
            description="The tile routes of OGC API – Tiles for each layer collection (not "
                        "declared in /conformance: not checked against the Tiles test suite).")
async def collection_tilesets(request: Request, collection_id: Annotated[str, Path()],
                              params: FormatQuery) -> JSONResponse:
    name = _tile_collection(collection_id)
    return JSONResponse({"tilesets": [_ogc_tileset(request, name)]})


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad",
            summary="OGC API – Tiles: a layer's WebMercatorQuad tileset")
async def collection_tileset(request: Request, collection_id: Annotated[str, Path()],
                             params: FormatQuery) -> JSONResponse:
    name = _tile_collection(collection_id)
    return JSONResponse(_ogc_tileset(request, name) | {
        "layers": [{"id": layer["id"], "dataType": "vector", "minTileMatrix": str(layer["minzoom"]),
                    "maxTileMatrix": str(layer["maxzoom"])} for layer in tiles.vector_layers(name)]})


@router.get(
    "/collections/{collection_id}/tiles/WebMercatorQuad/{tile_matrix}/{tile_row}/{tile_col}",
    summary="OGC API – Tiles: a vector tile", response_class=Response,
    responses={200: {"content": {MVT: {}}}, 204: {"description": "Empty tile"}})
async def collection_tile(
    request: Request, conn: ConnDep, collection_id: Annotated[str, Path()],
    tile_matrix: Annotated[int, Path(description="Zoom, 0–22")],
    tile_row: Annotated[int, Path(description="Row (y) from the top")],
    tile_col: Annotated[int, Path(description="Column (x)")],
    params: Annotated[TileParams, Query()],
) -> Response:
    return await _serve(request, conn, _tile_collection(collection_id), tile_matrix, tile_col,
                        tile_row, params)


WEB_MERCATOR_QUAD = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"


def _tile_collection(collection_id: str) -> str:
    if collection_id not in tiles.LAYERS:
        raise NotFound(f"no tiles for collection {collection_id!r}: tiles exist for "
                                f"{', '.join(tiles.LAYERS)}")
    return collection_id


def _ogc_tileset(request: Request, name: str) -> dict[str, Any]:
    base = f"{base_url(request)}/collections/{name}/tiles/WebMercatorQuad"
    return {
        "title": tiles.TILESET_TITLES[name], "dataType": "vector",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/3857", "tileMatrixSetURI": WEB_MERCATOR_QUAD,
        "links": [
            {"rel": "self", "href": base, "type": "application/json", "title": "This tileset"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
             "href": WEB_MERCATOR_QUAD, "title": "WebMercatorQuad"},
            {"rel": "item", "href": base + "/{tileMatrix}/{tileRow}/{tileCol}", "templated": True,
             "type": MVT, "title": "Vector tiles"},
        ],
    }


async def _serve(request: Request, conn: ConnDep, name: str, z: int, x: int, y: int,
                 params: TileParams) -> Response:
    """One tile: from the archive (map), the cache, or one live statement."""
    tiles.check_tile(z, x, y)
    lang = params.lang
    state = request.app.state
    if ("if-none-match" not in request.headers and state.tile_cache.max_bytes <= 0
            and not state.archives.present(lang)):
        # no 304, no kept body and no archive could spare the statement: the tile and its data
        # version are read together, so its ETag names the version of the bytes it carries
        body, version = await tile_store.render_versioned(conn, name, lang, z, x, y)
        headers, _ = _tile_headers(request, version, name, lang, z, x, y, params)
        if not body:
            return Response(status_code=204, headers=headers)
        return await cache.send_once(request, body, MVT, headers)
    version = await data_version(conn)
    headers, unchanged = _tile_headers(request, version, name, lang, z, x, y, params)
    if unchanged:
        return unchanged
    archive = request.app.state.archives.current(lang, version)
    if archive is not None and z <= archive.max_zoom and name == "map":
        packed = archive.get(z, x, y)  # the archive's gzipped bytes, sent as they are
        request.app.state.archive_tiles_served += 1
        if not packed:
            return Response(status_code=204, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return cache.gzipped_response(packed, MVT, headers)
        return Response(gzip.decompress(packed), media_type=MVT, headers=headers)

    async def make() -> bytes:
        if archive is not None and z <= archive.max_zoom:  # a layer cut out of the map tile
            packed = archive.get(z, x, y)
            return tile_store.layer_of(gzip.decompress(packed), name) if packed else b""
        return await tile_store.render(conn, name, lang, z, x, y)

    return await cached(request, request.app.state.tile_cache, headers["ETag"], headers, MVT,
                        make, level=6, empty=204)


def _tile_headers(request: Request, version: str, name: str, lang: str, z: int, x: int, y: int,
                  params: TileParams) -> tuple[dict[str, str], Response | None]:
    """A tile's headers (its ETag from the data version), and the 304 when the client holds it."""
    return conditional(
        request, f"{version}|{name}|{lang}|{z}/{x}/{y}",
        {"Cache-Control": IMMUTABLE if params.v == version else CACHE, "Vary": "Accept-Encoding"})
