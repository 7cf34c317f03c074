"""What every router shares: the pooled connection, the base URL, the base of the parameter
models (unknown parameters are refused), and conditional requests (ETag, 304) with the response
cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.errors import ClientError
from geo_service.web import cache

PROBLEM = "application/problem+json"
CACHE = "public, max-age=60"
IMMUTABLE = "public, max-age=31536000, immutable"
JSON = "application/json"


def one_of(name: str, value: str, known: Collection[str]) -> str:
    """A query parameter's `value` when it is one of `known`, else a 400 naming them."""
    if value not in known:
        raise ClientError(f"{name}={value!r} is not known: one of {', '.join(sorted(known))}")
    return value


def problem(status: int, title: str, detail: str | None = None) -> JSONResponse:
    """Problem details (RFC 9457)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


# C0 controls (NUL included), DEL and C1 controls; query values may hold tab and line breaks
_CONTROL = {*range(0x20), 0x7F, *range(0x80, 0xA0)}
_CONTROL_IN_VALUES = _CONTROL - {0x09, 0x0A, 0x0D}


def _control(text: str, forbidden: set[int]) -> str | None:
    for position, char in enumerate(text):
        if ord(char) in forbidden:
            return f"a control character (U+{ord(char):04X}) at position {position + 1}"
    return None


def input_problem(scope: Scope) -> str | None:
    """What is wrong with a request's path or query string as text, before any route reads it:
    bytes that are not UTF-8 once percent-decoded, or control characters (NUL, escape...)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not UTF-8 once percent-decoded"
    found = _control(path, _CONTROL)
    if found:
        return f"the path holds {found}"
    try:
        query = scope.get("query_string", b"").decode("ascii")
        pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return "the query string is not UTF-8 once percent-decoded"
    for name, value in pairs:
        found = _control(name, _CONTROL)
        if found:
            return f"a parameter name holds {found}"
        found = _control(value, _CONTROL_IN_VALUES)
        if found:
            return f"parameter {name}: {found}"
    return None


# An SVG is an active document: served with scripts, forms and plugins off, and no fetches
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


class SecurityHeaders:
    """On every response: `X-Content-Type-Options: nosniff` (a browser never runs JSON, CSV or
    an SVG as something else); on SVG also a Content-Security-Policy that allows no script."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("image/svg+xml"):
                    headers["Content-Security-Policy"] = SVG_POLICY
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """HEAD on any URL answers as GET would, headers included (Content-Length, ETag, Cache-Control),
    without the body (RFC 9110 9.3.2): link checkers, uptime monitors and `curl -I` use it. The
    routes only ever see GET; a 304 for a known ETag is as cheap as for GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class HtmlFormQuery:
    """An HTML page's filter form (f=html) sends its empty fields too (`bbox=&limit=`): on such
    a request an empty parameter is as if it were not given."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"f=html" in query and b"=&" in query + b"&":
            pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True)  # InputGuard checked it
            if ("f", "html") in pairs:
                kept = [(k, v) for k, v in pairs if v != ""]
                scope = {**scope, "query_string": urlencode(kept).encode()}
        await self.app(scope, receive, send)


class InputGuard:
    """Refuses (400 problem details) a request whose path or query is not clean text, so that
    no route, query or drawing ever sees a NUL byte or broken UTF-8."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = input_problem(scope)
            if found:
                await problem(400, "Invalid request", found)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.pool.connection() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(_connection)]


def base_url(request: Request) -> str:
    """The service's root URL without a trailing slash: the configured public URL, else as the
    client reached it (the Host header, which a client chooses: set GEO_PUBLIC_URL in
    production)."""
    public: str | None = request.app.state.settings.public_url
    if public:
        return public.rstrip("/")
    return str(request.base_url).rstrip("/")


class Params(BaseModel):
    """A route's query parameters: anything else is refused (400)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


P = TypeVar("P", bound=Params)


def compact_json(data: Any) -> str:
    """JSON as the service writes it in bodies it builds itself: no spaces, UTF-8 text as is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def query_model(model: type[P], request: Request) -> P:
    """A route's query parameters validated into `model` with the errors FastAPI gives (a 400
    naming each parameter), for a route that reads them itself: FastAPI's own reading of a
    query model looks at its fields one by one, 0.4 ms a request for the items' 24 fields
    against 20 us for pydantic alone. A repeated parameter counts once, its last value, as in
    FastAPI."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]) from None


class FormatParams(Params):
    f: Literal["json", "geojson", "html"] | None = Field(
        None, description="json, or html (as a browser's `Accept: text/html` asks)")
    lang: Literal["en", "fr", "es"] = Field("en", description="Language of the HTML page")


def prefers(accept: str, wanted: tuple[str, ...], others: tuple[str, ...]) -> bool:
    """Whether an Accept header prefers one of `wanted` to every one of `others`: by q-value,
    then by order (a browser names text/html first). `*/*` alone prefers nothing."""
    best: dict[bool, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        q = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        for side, names in ((True, wanted), (False, others)):
            if media in names and (side not in best or (q, -position) > best[side]):
                best[side] = (q, -position)
    if True not in best or best[True][0] <= 0:
        return False
    return False not in best or best[True] > best[False]


HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/geo+json", "application/schema+json")


def wants_html(request: Request, f: str | None) -> bool:
    """f=html, or (without f) an Accept header that prefers HTML to JSON."""
    if f:
        return f == "html"
    return prefers(request.headers.get("accept", ""), HTML_TYPES, JSON_TYPES)


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
    policy = headers.get("Cache-Control", "")
    if "max-age" in policy and "immutable" not in policy:
        # nginx keeps it as stale at once (a time long past) and asks an app at each use (304
        # while the data version is the same): a caching proxy in front of several apps
        # (deploy/nginx/scale.conf.template) never serves an older version than the apps read,
        # while browsers keep the max-age. URLs naming the version (immutable) are left alone.
        headers["X-Accel-Expires"] = "@1"
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
        if not store.keeps(len(body)):  # compressed for this answer only, at a quick level
            return await cache.send_once(request, body, media_type, headers)
        entry = await cache.entry_for(body, media_type, level=level)
        store.put(key, entry)
    if not entry.body and empty is not None:
        return Response(status_code=empty, headers=headers)
    return cache.respond(request, entry, headers)
