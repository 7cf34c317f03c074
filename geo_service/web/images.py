"""GET /export/map.{png,svg,pdf}: presentation map images, cached on their parameters and the
data version (the same request at the same version answers the same bytes). The scene is read on
a pooled connection, which is given back before the drawing starts; drawing runs in a bounded
pool of worker processes, so images never starve the API: beyond the workers and a short queue
a request answers 429, and a drawing past its time limit answers 503."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from pydantic import Field

from geo_service.errors import ClientError, Overloaded, TooSlow
from geo_service.query.service import data_version
from geo_service.render import i18n, mapimage, progress
from geo_service.web import cache, lifeline
from geo_service.web.http import CACHE, Params, conditional

router = APIRouter(tags=["Map images"])
T = TypeVar("T")


class RenderPool:
    """Worker processes for drawing, with a bound on work running and waiting. A drawing that
    outlives its time limit answers 503 at once; its worker finishes it and its slot stays taken
    until then, so the bound always holds."""

    def __init__(self, workers: int, queue: int, timeout_s: float) -> None:
        self.workers = workers
        self.executor = self._new_executor()
        self.limit = workers + queue
        self.timeout_s = timeout_s
        self.taken = 0

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        if self.taken >= self.limit:
            raise Overloaded(f"{self.taken} map images are being drawn or waiting: retry in a "
                             "few seconds")
        loop = asyncio.get_running_loop()
        executor = self.executor
        try:
            future = executor.submit(work, *args)
        except BrokenProcessPool:  # a worker died since the last drawing
            self.executor = executor = self._new_executor()
            future = executor.submit(work, *args)
        self.taken += 1
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            raise TooSlow(f"the map image was not drawn within {self.timeout_s:g} s: ask for a "
                          "smaller one, or draw it with `geo-service export`") from None
        except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh
            if self.executor is executor:
                self.executor = self._new_executor()
            raise TooSlow("the map image's worker stopped; it has been restarted: retry") from None

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   max_tasks_per_child=100, initializer=lifeline.exit_with_parent,
                                   initargs=(os.getpid(),))

    def _release(self) -> None:
        self.taken -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


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
    if (params.title or params.subtitle) and not request.app.state.settings.image_custom_text:
        raise ClientError("this service does not put other titles on its map images "
                          "(GEO_IMAGE_CUSTOM_TEXT is off): leave out title and subtitle")
    wanted = mapimage.request_from(params, fmt)
    cap = request.app.state.settings.image_max_side
    if max(wanted.width, wanted.height) > cap:
        raise ClientError(f"{wanted.width}×{wanted.height} px is over {cap} px a side over HTTP: "
                          "ask for a smaller size, or draw it with `geo-service export`")
    name = wanted.region.lower().replace("/", "-") or "world"
    return await _image(request, fmt, f"map-{name}", wanted.key,
                        lambda conn: mapimage.load(conn, wanted), mapimage.draw_rows, wanted)


async def _image(request: Request, fmt: str, filename: str, key_of: Callable[[str], str],
                 load: Callable[[AsyncConnection], Awaitable[Any]],
                 draw: Callable[[Any, Any], bytes], wanted: Any) -> Response:
    """An image for this data version: 304 when the client holds it, else from the image cache,
    else its rows read (on a pooled connection, given back before drawing) and drawn in the
    render pool. It is kept only when the data did not change between the version and the read."""
    store: cache.BodyCache = request.app.state.image_cache
    async with request.app.state.pool.connection() as conn:
        version = await data_version(conn)
        key = key_of(version)
        headers, unchanged = conditional(request, key, {
            "Cache-Control": CACHE,
            "Content-Disposition": f'inline; filename="{filename}.{fmt}"'})
        if unchanged:
            return unchanged
        entry = store.get(key)
        rows = await load(conn) if entry is None else None
    if entry is None:
        assert rows is not None
        renders: RenderPool = request.app.state.renders
        data = await renders.run(draw, rows, wanted)
        entry = await cache.entry_for(data, mapimage.FORMATS[fmt], level=_level(store, data))
        if rows.version == version:  # data changed meanwhile: send it, but keep nothing stale
            store.put(key, entry)
    return cache.respond(request, entry, headers)


def _level(store: cache.BodyCache, data: bytes) -> int:
    """gzip level 6 for an image the cache keeps, the quickest for one it sends once."""
    return 6 if store.keeps(len(data)) else cache.FAST_LEVEL


class ProgressParams(Params):
    """What a progress chart takes: the map images' sizes, language and colours."""

    lang: i18n.Lang | None = Field(None, description="Language of the text")
    preset: mapimage.Preset | None = Field(None, description="As map images (default slide-16x9)")
    width: int | None = Field(None, ge=mapimage.MIN_PIXELS, le=mapimage.MAX_PIXELS)
    height: int | None = Field(None, ge=mapimage.MIN_PIXELS, le=mapimage.MAX_PIXELS)
    dpi: int | None = Field(None, ge=mapimage.MIN_DPI, le=mapimage.MAX_DPI)
    dark: bool | None = Field(None, description="Dark colours")
    transparent: bool | None = Field(None, description="No background")


@router.get(
    "/export/progress.{fmt}", summary="The campaign's progress as an image (PNG, SVG or PDF)",
    description="Members by year, cumulative, against the 10, 100 and 1000 milestones (the "
                "numbers of /api/stats), in the map images' presets and languages.",
    response_class=Response,
    responses={200: {"content": {m: {} for m in mapimage.FORMATS.values()}},
               400: {"description": "Unknown preset or size out of range"}},
)
async def export_progress(
    request: Request,
    fmt: Annotated[Literal["png", "svg", "pdf"], Path(description="png, svg or pdf")],
    params: Annotated[ProgressParams, Query()],
) -> Response:
    wanted = progress.check(params.model_dump(exclude_none=True), fmt)
    return await _image(request, fmt, "progress", lambda version: "progress|" + wanted.key(version),
                        progress.load, progress.draw_rows, wanted)
