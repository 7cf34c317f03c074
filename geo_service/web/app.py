"""The web API: built by create_app(settings); the pool opens in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg import OperationalError, sql
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from geo_service import __version__, db
from geo_service.errors import HTTP_STATUS, QUIET, RETRY_AFTER_S, http_status, public_detail
from geo_service.query import service, stats
from geo_service.render.tiles import Archives
from geo_service.settings import Settings
from geo_service.web import cache, images, ogc, pages, reads, site, tiles
from geo_service.web.http import (
    CACHE,
    ConnDep,
    HeadAsGet,
    HtmlFormQuery,
    InputGuard,
    NoParams,
    Params,
    SecurityHeaders,
    cached,
    compact_json,
    conditional,
    problem,
)
from geo_service.web.openapi30 import openapi_30

logger = logging.getLogger("geo_service")
API_DOCS_CSS = (".swagger-ui .info .title small{background:#55595c}"
                ".swagger-ui .info .title small.version-stamp{background:#2f6b12}"
                ".swagger-ui .info .url,.swagger-ui .info .base-url{color:#3b4151}"
                ".swagger-ui .opblock .opblock-summary-method{background:#1d5fa0 !important}")


class StatsParams(Params):
    include_engagement: bool = Field(
        False, description="Count engagement-only rows (not human rights territories) too")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application for `settings` (environment and .env when omitted)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsns = await asyncio.to_thread(db.read_urls, settings)
        fallback = await asyncio.to_thread(db.read_fallback_url, settings)
        pool = reads.ReadPools(
            dsns, fallback, settings.read_probe_s, settings.db_connect_attempt_s,
            # a request waits at most db_wait_s for a connection (then 503). Connections are not
            # checked when handed out (a round trip per request): a GET that meets one broken by
            # a database restart is run again once, after the pools drop their broken ones
            # (reads.RetryLostReads)
            settings.db_wait_s, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
            reconnect_timeout=settings.db_connect_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": settings.db_connect_attempt_s,
                    "options": f"-c statement_timeout={settings.db_statement_timeout_ms} "
                               f"{service.READ_OPTIONS}"})
        await pool.open(timeout=settings.db_connect_timeout_s)
        app.state.pool = pool
        app.state.page_data = {}
        app.state.image_cache = cache.BodyCache(settings.image_cache_mb * 1024 * 1024)
        app.state.body_cache = cache.BodyCache(settings.response_cache_mb * 1024 * 1024)
        app.state.tile_cache = cache.BodyCache(settings.tile_cache_mb * 1024 * 1024)
        async with pool.connection() as conn:
            identity = await service.database_identity(conn)
            risk = await service.can_write(conn)
        if risk:
            logger.warning("the web server only reads, but %s: set GEO_READ_DATABASE_URL to a "
                           "read-only role (`geo-service db roles` makes one)", risk)
        app.state.archives = Archives(settings.tiles_dir, identity)
        app.state.archive_tiles_served = 0  # map tiles sent from the prebuilt archives
        app.state.renders = images.RenderPool(settings.image_workers, settings.image_queue,
                                              settings.image_timeout_s)
        try:
            yield
        finally:
            app.state.renders.close()
            await pool.close()

    app = FastAPI(
        title="Human rights cities and territories — map service",
        version=__version__,
        description="Boundaries of the movement's municipalities, provinces, regions and countries.",
        lifespan=lifespan,
        openapi_url="/api",
        docs_url=None,  # /api.html below: Swagger UI from the pinned npm package, not a CDN
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))

    async def known_error(request: Request, exc: Exception) -> JSONResponse:
        reads.note_lost(request, exc)  # RetryLostReads tries once more instead of sending it
        status, title = http_status(exc)
        if isinstance(exc, QUIET):
            logger.warning("database unavailable: %s", exc)
        response = problem(status, title, public_detail(exc))
        if status in (429, 503):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    for error in HTTP_STATUS:
        app.add_exception_handler(error, known_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
            for err in exc.errors()
        )
        return problem(400, "Invalid request parameter", details)

    @app.get("/health", tags=["service"], summary="Database reachability, versions and counts")
    async def health(request: Request, params: Annotated[NoParams, Query()]) -> Response:
        for attempt in (1, 2):  # a second time when the first met a connection broken earlier
            try:
                async with asyncio.timeout(settings.health_timeout_ms / 1000):
                    async with request.app.state.pool.connection() as conn, conn.transaction():
                        # LOCAL: the limit ends with this transaction, not with the pooled
                        # connection
                        await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                            sql.Literal(int(settings.health_timeout_ms))))
                        info = await service.health(conn)
                break
            except Exception as exc:  # the point of /health is to report any database failure
                if attempt == 1 and isinstance(exc, OperationalError) and reads.lost(exc):
                    await request.app.state.pool.recover()
                    continue
                return problem(503, "Database unavailable", type(exc).__name__)
        body = {"status": "ok", "service_version": __version__,
                "database": "embedded" if settings.embedded and not settings.read_database_url
                else "external", **info}
        state = request.app.state
        body["caches"] = {"responses": state.body_cache.stats(), "tiles": state.tile_cache.stats(),
                          "images": state.image_cache.stats(),
                          "archive_tiles_served": state.archive_tiles_served}
        if request.app.state.pool.several:  # which replicas answer (the fallback included)
            body["read_databases"] = request.app.state.pool.health()
        if not settings.health_versions:  # versions help an attacker pick an exploit
            for key in ("service_version", "postgres", "postgis"):
                body.pop(key, None)
        return JSONResponse(body)

    @app.get("/api/stats", tags=["campaign"],
             summary="Campaign progress: totals against 10, 100, 1000 and breakdowns")
    async def campaign_stats(request: Request, conn: ConnDep,
                             params: Annotated[StatsParams, Query()]) -> Response:
        # one document per data version: an ETag (304 to a client that holds it) and kept in
        # the response cache like the items pages (it aggregates every member: 48 ms at 9,700)
        version = await service.data_version(conn)
        headers, unchanged = conditional(
            request, f"{version}|stats|{params.include_engagement}", {"Cache-Control": CACHE})
        if unchanged:
            return unchanged

        async def make() -> bytes:
            body = await stats.stats(conn, params.include_engagement)
            return compact_json(body).encode()

        return await cached(request, request.app.state.body_cache, headers["ETag"], headers,
                            "application/json", make)

    @app.get("/api.html", include_in_schema=False)
    async def api_docs(params: Annotated[NoParams, Query()]) -> HTMLResponse:
        vendor = "/static/vendor/swagger-ui"
        page = get_swagger_ui_html(
            openapi_url="/api", title=f"{app.title} — API",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
            # no badge from the public validator: the page asks nothing of another host; no deep
            # links, which Swagger UI puts as links inside each operation's button
            swagger_ui_parameters={"validatorUrl": None, "deepLinking": False})
        # the page's language, and Swagger UI's version badges and URL in AA contrast
        body = bytes(page.body).decode().replace("<html>", '<html lang="en">', 1).replace(
            "</head>", f"<style>{API_DOCS_CSS}</style></head>", 1)
        return HTMLResponse(body)

    app.include_router(ogc.router)
    app.include_router(tiles.router)
    app.include_router(pages.router)
    app.include_router(site.router)
    app.include_router(images.router)
    app.state.settings = settings
    app.state.asset_version = pages.asset_version()
    pages.mount_static(app, settings)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_30(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(reads.RetryLostReads)  # innermost: sees the error handler's answer
    # Features and tiles come gzipped already (cache.respond, cache.send_once); this compresses
    # the rest (pages, collections, problems) at level 5: 1% larger than level 9 on a 1.1 MB
    # page of regions, in a third of the CPU time; large bodies in a worker thread, so one big
    # answer never stalls the event loop for the other requests.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5,
                       thread_minimum_size=cache.THREAD_MIN)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD"],
                       allow_headers=["*"], expose_headers=["ETag"])
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HtmlFormQuery)
    app.add_middleware(HeadAsGet)
    app.add_middleware(InputGuard)  # outermost: nothing else sees a request it refuses
    return app
