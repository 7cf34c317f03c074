"""GET /export/map.{png,svg,pdf}: presentation map images, cached on their parameters and the
data version (the same request at the same version answers the same bytes)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from geo_service import cache, features, mapimage
from geo_service.ogc import CACHE, ConnDep

router = APIRouter(tags=["Map images"])
Flag = Annotated[str | None, Query(description="on/off", pattern="^(on|off|true|false|1|0|yes|no)$")]


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
    request: Request, conn: ConnDep,
    fmt: Annotated[Literal["png", "svg", "pdf"], Path(description="png, svg or pdf")],
    region: Annotated[str | None, Query(max_length=100, description=(
        "world (default), a UCLG section slug, ISO 3166-1 (FR) or ISO 3166-2 (KR-29)"))] = None,
    theme: Annotated[str | None, Query(max_length=100)] = None,
    section: Annotated[str | None, Query(max_length=100)] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    commitment_kind: Annotated[str | None, Query(max_length=100)] = None,
    lang: Annotated[Literal["en", "fr", "es"] | None, Query()] = None,
    title: Annotated[str | None, Query(max_length=200)] = None,
    subtitle: Annotated[str | None, Query(max_length=200)] = None,
    legend: Flag = None, labels: Flag = None, transparent: Flag = None, dark: Flag = None,
    preset: Annotated[str | None, Query(description=", ".join(mapimage.PRESETS))] = None,
    width: Annotated[int | None, Query(description="pixels, 200–10000")] = None,
    height: Annotated[int | None, Query(description="pixels, 200–10000")] = None,
    dpi: Annotated[int | None, Query(description="50–600")] = None,
) -> Response:
    params = dict(request.query_params)
    wanted = mapimage.parse(params, fmt)
    version = await features.data_version(conn)
    key = wanted.key(version)
    tag = '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'
    name = (wanted.region.lower().replace("/", "-") or "world")
    headers = {"ETag": tag, "Cache-Control": CACHE,
               "Content-Disposition": f'inline; filename="map-{name}.{fmt}"'}
    if request.headers.get("if-none-match") in (tag, f"W/{tag}"):
        return Response(status_code=304, headers=headers)
    store: cache.BodyCache = request.app.state.image_cache
    entry = store.get(key)
    if entry is None:
        data, drawn_at = await asyncio.to_thread(mapimage.render, request.app.state.dsn, wanted)
        entry = await cache.entry_for(data, mapimage.FORMATS[fmt], level=6)
        if drawn_at == version:  # data changed meanwhile: send it, but keep nothing stale
            store.put(key, entry)
    return cache.respond(request, entry, headers)
