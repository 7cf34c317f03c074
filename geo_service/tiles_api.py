"""Vector tile endpoints: TileJSON 3.0 per tileset and the tiles themselves.

A tile comes, in order, from the response cache (keyed by an ETag that carries the data version),
from the prebuilt archive when it holds the current version, or from one live SQL statement.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from geo_service import cache, features, tiles, tilestore
from geo_service.ogc import CACHE, ConnDep, _base, _check_params, _validators

MVT = "application/vnd.mapbox-vector-tile"
IMMUTABLE = "public, max-age=31536000, immutable"
router = APIRouter(tags=["Vector tiles"])
Lang = Annotated[Literal["en", "fr", "es"], Query(description="Language of names")]
Tileset = Annotated[str, Path(description="countries, regions, municipalities, territories or map",
                              examples=["map"])]


def _tileset(name: str) -> str:
    if name not in tiles.TILESETS:
        raise features.NotFound(f"no tileset {name!r}: known are {', '.join(tiles.TILESETS)}")
    return name


@router.get("/tiles", summary="The tilesets")
async def tilesets(request: Request) -> JSONResponse:
    _check_params(request, set())
    base = _base(request)
    return JSONResponse({"tilesets": [
        {"id": name, "title": tiles.TILESET_TITLES[name], "layers": list(layers),
         "links": [{"href": f"{base}/tiles/{name}.json", "rel": "describedby",
                    "type": "application/json", "title": "TileJSON 3.0"}]}
        for name, layers in tiles.TILESETS.items()]})


@router.get("/tiles/{tileset}.json", summary="TileJSON 3.0 of a tileset",
            description="The `tiles` URL carries the data version (`v=`), so caches refresh "
                        "after every load or import; `lang` sets the language of names.")
async def tilejson(request: Request, conn: ConnDep, tileset: Tileset, lang: Lang = "en"
                   ) -> Response:
    name = _tileset(tileset)
    _check_params(request, {"lang"})
    headers, unchanged, version = await _validators(request, conn, "application/json")
    if unchanged:
        return unchanged
    layers = tiles.vector_layers(name)
    url = f"{_base(request)}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt?v={version}&lang={lang}"
    body = {
        "tilejson": "3.0.0", "name": name, "description": tiles.TILESET_TITLES[name],
        "version": "1.0.0", "attribution": tiles.ATTRIBUTION, "scheme": "xyz", "tiles": [url],
        "minzoom": min(layer["minzoom"] for layer in layers), "maxzoom": tiles.DATA_MAX_ZOOM,
        "bounds": tiles.WORLD, "center": [10.0, 20.0, 1], "vector_layers": layers,
        "fillzoom": tiles.DATA_MAX_ZOOM,
    }
    return JSONResponse(body, headers=headers)


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
    lang: Lang = "en",
    v: Annotated[str | None, Query(description="Data version (from TileJSON); cache key only")
                 ] = None,
) -> Response:
    return await _serve(request, conn, _tileset(tileset), z, x, y, lang, v)


@router.get("/collections/{collection_id}/tiles", summary="OGC API – Tiles: a layer's tilesets",
            description="The tile routes of OGC API – Tiles for each layer collection (not "
                        "declared in /conformance: not checked against the Tiles test suite).")
async def collection_tilesets(request: Request, collection_id: Annotated[str, Path()]) -> JSONResponse:
    name = _tile_collection(collection_id)
    _check_params(request, {"f"})
    return JSONResponse({"tilesets": [_ogc_tileset(request, name)]})


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad",
            summary="OGC API – Tiles: a layer's WebMercatorQuad tileset")
async def collection_tileset(request: Request, collection_id: Annotated[str, Path()]) -> JSONResponse:
    name = _tile_collection(collection_id)
    _check_params(request, {"f"})
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
    lang: Lang = "en",
    v: Annotated[str | None, Query(description="Data version; cache key only")] = None,
) -> Response:
    return await _serve(request, conn, _tile_collection(collection_id), tile_matrix, tile_col,
                        tile_row, lang, v)


WEB_MERCATOR_QUAD = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"


def _tile_collection(collection_id: str) -> str:
    if collection_id not in tiles.LAYERS:
        raise features.NotFound(f"no tiles for collection {collection_id!r}: tiles exist for "
                                f"{', '.join(tiles.LAYERS)}")
    return collection_id


def _ogc_tileset(request: Request, name: str) -> dict:
    base = f"{_base(request)}/collections/{name}/tiles/WebMercatorQuad"
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


async def _serve(request: Request, conn: ConnDep, name: str, z: int, x: int, y: int, lang: str,
                 v: str | None) -> Response:
    """One tile: from the archive (map), the cache, or one live statement."""
    _check_params(request, {"lang", "v"})
    try:
        tiles.check_tile(z, x, y)
    except ValueError as error:
        raise features.ClientError(str(error)) from None
    version = await features.data_version(conn)
    tag = '"' + hashlib.sha256(f"{version}|{name}|{lang}|{z}/{x}/{y}".encode()).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": IMMUTABLE if v == version else CACHE,
               "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") in (tag, f"W/{tag}"):
        return Response(status_code=304, headers=headers)
    archive = request.app.state.archives.current(lang, version)
    if archive is not None and z <= archive.max_zoom and name == "map":
        packed = archive.get(z, x, y)  # the archive's gzipped bytes, sent as they are
        if not packed:
            return Response(status_code=204, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return cache.gzipped_response(packed, MVT, headers)
        return Response(gzip.decompress(packed), media_type=MVT, headers=headers)
    store: cache.BodyCache = request.app.state.tile_cache
    entry = store.get(tag)
    if entry is None:
        if archive is not None and z <= archive.max_zoom:  # a layer cut out of the map tile
            packed = archive.get(z, x, y)
            data = tiles.layer_of(gzip.decompress(packed), name) if packed else b""
        else:
            data = await tilestore.render(conn, name, lang, z, x, y)
        entry = await cache.entry_for(data, MVT, level=6)
        store.put(tag, entry)
    if not entry.body:
        return Response(status_code=204, headers=headers)
    return cache.respond(request, entry, headers)
