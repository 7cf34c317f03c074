"""What every router shares: the pooled connection, the base URL, the base of the parameter
models (unknown parameters are refused), and conditional requests (ETag, 304) with the response
cache."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, Field

from geo_service.web import cache

CACHE = "public, max-age=60"
IMMUTABLE = "public, max-age=31536000, immutable"
JSON = "application/json"


async def _connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.pool.connection() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(_connection)]


def base_url(request: Request) -> str:
    """The service's root URL as the client reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


class Params(BaseModel):
    """A route's query parameters: anything else is refused (400)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FormatParams(Params):
    f: Literal["json", "geojson"] | None = Field(None, description="json (the only format)")


FormatQuery = Annotated[FormatParams, Query()]


class NoParams(Params):
    """A route that takes no query parameters."""


def etag(key: str) -> str:
    """A strong entity tag for a key that carries the data version and the request."""
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def conditional(request: Request, key: str, headers: dict[str, str]
                ) -> tuple[dict[str, str], Response | None]:
    """The response headers with the ETag of `key`, and the 304 to send at once when the client
    already holds it (before any query runs)."""
    tag = etag(key)
    headers = {"ETag": tag, **headers}
    if request.headers.get("if-none-match") in (tag, f"W/{tag}"):
        return headers, Response(status_code=304, headers=headers)
    return headers, None


async def cached(request: Request, store: cache.BodyCache, key: str, headers: dict[str, str],
                 media_type: str, make: Callable[[], Awaitable[bytes]], *, level: int = 9,
                 empty: int | None = None) -> Response:
    """The body for `key` from `store`, or made now and kept there;
    gzipped when the client accepts it. An empty body answers `empty` (e.g. 204) if given."""
    entry = store.get(key)
    if entry is None:
        body = await make()
        if not body and empty is not None:  # not kept: distinct empty tiles are unbounded
            return Response(status_code=empty, headers=headers)
        if not store.keeps(len(body)):  # GZipMiddleware compresses it, at a quicker level
            return Response(body, media_type=media_type, headers=headers)
        entry = await cache.entry_for(body, media_type, level=level)
        store.put(key, entry)
    if not entry.body and empty is not None:
        return Response(status_code=empty, headers=headers)
    return cache.respond(request, entry, headers)
