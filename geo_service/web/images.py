"""GET /export/map.{png,svg,pdf}: presentation map images, cached on their parameters and the
data version (the same request at the same version answers the same bytes). The scene is read on
a pooled connection, which is given back before the drawing starts in a worker thread."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from geo_service.errors import ClientError
from geo_service.query.service import data_version
from geo_service.render import mapimage
from geo_service.web import cache
from geo_service.web.http import CACHE, conditional

router = APIRouter(tags=["Map images"])


@router.get(
    "/export/map.{fmt}", summary="A presentation map image (PNG, SVG or PDF)",
    description="World, a UCLG section, a country or an ISO 3166-2 province, with the web map's "
                "filters; sized by `preset` (slide-16x9 default, slide-4k, slide-4x3, "
                "a4-landscape, square) or `width`/`height`/`dpi`. A credit line names the data "
                "sources, their licences and the data version's date.",
    response_class=Response,
    responses={200: {"content": {m: {} for m in mapimage.FORMATS.values()}},
               400: {"description": "Unknown region, preset or size out of range"}},
)
async def export_map(
    request: Request,
    fmt: Annotated[Literal["png", "svg", "pdf"], Path(description="png, svg or pdf")],
    params: Annotated[mapimage.MapParams, Query()],
) -> Response:
    wanted = mapimage.request_from(params, fmt)
    cap = request.app.state.settings.image_max_side
    if max(wanted.width, wanted.height) > cap:
        raise ClientError(f"{wanted.width}×{wanted.height} px is over {cap} px a side over HTTP: "
                          "ask for a smaller size, or draw it with `geo-service export`")
    name = wanted.region.lower().replace("/", "-") or "world"
    store: cache.BodyCache = request.app.state.image_cache
    async with request.app.state.pool.connection() as conn:
        version = await data_version(conn)
        key = wanted.key(version)
        headers, unchanged = conditional(request, key, {
            "Cache-Control": CACHE,
            "Content-Disposition": f'inline; filename="map-{name}.{fmt}"'})
        if unchanged:
            return unchanged
        entry = store.get(key)
        rows = await mapimage.load(conn, wanted) if entry is None else None
    if entry is None:
        assert rows is not None
        data = await asyncio.to_thread(mapimage.draw_rows, rows, wanted)
        entry = await cache.entry_for(data, mapimage.FORMATS[fmt], level=6)
        if rows.version == version:  # data changed meanwhile: send it, but keep nothing stale
            store.put(key, entry)
    return cache.respond(request, entry, headers)
