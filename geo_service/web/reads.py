"""The databases the web server reads from: one pool each, reads spread over those that answer,
and a fallback (the primary's reader) when none does.

Each request takes one connection and reads the data version and the data from it, so every
ETag and cache key carries the version of the database that answered: a replica behind the
primary serves its own older version, never a mix. A replica that stops answering is skipped
at once (its connection fails or its pool times out) and probed in the background every
`read_probe_s`; it takes requests again as soon as a probe reaches it. When no database
answers, the request gets a 503 that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.errors import NoDatabase

logger = logging.getLogger("geo_service")
SKIP_WAIT_S = 0.5  # how long a request waits on one database's pool before it tries the next
RECONNECT_EVERY_S = 1.0  # the longest wait between two attempts to reopen a lost connection


# the database went away under a request (shut down, crashed, starting up, connection broken)
# or a replica cancelled its query to replay the primary's changes: another try may succeed
RETRYABLE = ("57P01", "57P02", "57P03", "40001")


def lost(exc: psycopg.OperationalError) -> bool:
    """Whether the error says the connection or its database went away (not a slow query)."""
    state = exc.sqlstate
    return state is None or state in RETRYABLE or state.startswith("08")


LOST = "geo_service.lost_database"  # set in the request's scope by the app's error handler


def note_lost(request: Request, exc: Exception) -> None:
    """Called by the error handler: this GET or HEAD failed because its database went away."""
    if (isinstance(exc, psycopg.OperationalError) and lost(exc)
            and request.method in ("GET", "HEAD")):
        request.scope[LOST] = True


class RetryLostReads:
    """Run a GET or HEAD request again, once, when its database went away under it (a replica
    stopped mid-query): the error's 503 is dropped unsent and the second try takes a connection
    from a database that answers (checked first). Other answers pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        dropped = False

        async def first_send(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start" and scope.get(LOST):
                dropped = True
            if not dropped:
                await send(message)

        await self.app(scope, receive, first_send)
        if not dropped:
            return
        scope.pop(LOST, None)
        logger.warning("database gone under %s: trying once more", scope.get("path"))
        await scope["app"].state.pool.recover()  # drop broken connections, before choosing again
        sent_body = False

        async def again(message: Message | None = None) -> Message:
            nonlocal sent_body
            if not sent_body:  # a GET's (empty) body, once more
                sent_body = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await receive()

        await self.app(scope, again, send)


class SteadyAttempt(AttemptWithBackoff):
    """psycopg_pool's reconnection attempt, its waits capped at RECONNECT_EVERY_S."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_EVERY_S)


class QuietRetries(logging.Filter):
    """psycopg_pool logs every failed attempt to connect: while a database is down, a line per
    lost connection per second (RECONNECT_EVERY_S), hundreds a minute. Of each pool's such lines
    this lets one through every `every_s` seconds, saying how many it held back."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self.every_s = every_s
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("error connecting"):
            return True
        pool = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        now = time.monotonic()
        if now - self.last.get(pool, -self.every_s) < self.every_s:
            self.held[pool] = self.held.get(pool, 0) + 1
            return False
        self.last[pool] = now
        held = self.held.pop(pool, 0)
        if held:
            record.msg = f"{record.msg} ({held} more failed attempts not logged)"
        return True


RETRIES_LOGGED_EVERY_S = 30.0
_QUIET_RETRIES = QuietRetries(RETRIES_LOGGED_EVERY_S)


class Pool(AsyncConnectionPool):
    """A connection pool that tries to reopen its lost connections every second while the
    database is down. psycopg_pool doubles the wait after each failed attempt (1, 2, 4, 8, 16 s):
    after an outage of 12 s the database could stand ready for 15 s more before a connection was
    opened to it, every request answering 503 meanwhile. An attempt still gives up after
    `reconnect_timeout`, and the pool opens connections again as requests wait for one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool_logger = logging.getLogger("psycopg.pool")
        if _QUIET_RETRIES not in pool_logger.filters:
            pool_logger.addFilter(_QUIET_RETRIES)

    async def _add_connection(self, attempt: AttemptWithBackoff | None,
                              growing: bool = False) -> None:
        await super()._add_connection(attempt or SteadyAttempt(timeout=self.reconnect_timeout),
                                      growing)


@dataclass
class Source:
    """One database the server reads from."""

    name: str  # for logs and /health: 'read 1', 'fallback' (never the URL: it names hosts)
    dsn: str
    pool: AsyncConnectionPool
    fallback: bool = False
    up: bool = True
    since: float = field(default_factory=time.monotonic)

    def mark(self, up: bool, why: str = "") -> None:
        if up != self.up:
            self.up, self.since = up, time.monotonic()
            if up:
                logger.warning("%s answers again: reads resume there", self.name)
            else:
                logger.warning("%s does not answer (%s): reads go elsewhere", self.name, why)


class ReadPools:
    """What `app.state.pool` is: `connection()` as a pool's, over several databases."""

    def __init__(self, dsns: list[str], fallback: str | None, probe_s: float,
                 connect_timeout_s: int, wait_s: float, **pool_options: Any) -> None:
        def pool(dsn: str) -> AsyncConnectionPool:
            return Pool(dsn, open=False, timeout=wait_s, **pool_options)

        self.sources = [Source(f"read database {i}" if len(dsns) > 1 else "read database",
                               dsn, pool(dsn)) for i, dsn in enumerate(dsns, 1)]
        if fallback:
            self.sources.append(Source("fallback (primary)", fallback, pool(fallback), True))
        self.probe_s = probe_s
        self.connect_timeout_s = connect_timeout_s
        self.wait_s = wait_s
        self._turn = itertools.count()
        self._probe: asyncio.Task[None] | None = None

    @property
    def several(self) -> bool:
        return len(self.sources) > 1

    async def open(self, timeout: float) -> None:
        """Open every pool and wait until one can serve (the server does not start before); the
        others connect in the background and are probed."""
        for source in self.sources:
            await source.pool.open(wait=False)
        if not self.several:
            await self.sources[0].pool.wait(timeout)
        else:
            deadline = time.monotonic() + timeout
            while not any([await self._reach(s) for s in self.sources]):
                if time.monotonic() > deadline:
                    raise PoolTimeout(f"no database to read from answered in {timeout:.0f} s")
                await asyncio.sleep(min(self.probe_s, 0.5))
            self._probe = asyncio.create_task(self._probe_forever())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for source in self.sources:
            await source.pool.close()

    async def _reach(self, source: Source) -> bool:
        """Whether a new connection to the database opens and answers (marks the source)."""
        try:
            conn = await AsyncConnection.connect(source.dsn, connect_timeout=self.connect_timeout_s,
                                                 autocommit=True)
            async with conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            source.mark(False, type(exc).__name__)
            return False
        source.mark(True)
        return True

    async def recover(self) -> None:
        """After a connection was found broken: every pool drops its broken idle connections
        (and opens new ones in the background), and every database is checked."""
        await asyncio.gather(*(s.pool.check() for s in self.sources), return_exceptions=True)
        await self.probe()

    async def probe(self) -> None:
        """Check every database now (when there are several to choose from)."""
        if self.several:
            await asyncio.gather(*(self._reach(s) for s in self.sources), return_exceptions=True)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_s)
            await self.probe()

    def order(self) -> list[Source]:
        """Who to ask, in turn: the listed databases that answer, starting with the next one
        (round robin), then the fallback; the ones marked down last, in case a probe is late."""
        listed = [s for s in self.sources if not s.fallback]
        start = next(self._turn) % len(listed)
        turn = listed[start:] + listed[:start]
        fallback = [s for s in self.sources if s.fallback]
        ranked = [s for s in turn if s.up] + [s for s in fallback if s.up]
        return ranked + [s for s in turn + fallback if not s.up]

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection from the first database that gives one; NoDatabase (503) when none
        does. A database that fails here is marked down until a probe reaches it again."""
        candidates = self.order()
        for i, source in enumerate(candidates):
            last = i == len(candidates) - 1
            if not source.up and not last:
                continue
            try:
                conn = await source.pool.getconn(timeout=self.wait_s if last else min(
                    self.wait_s, SKIP_WAIT_S))
            except PoolTimeout:  # down, or busy: the probe tells which
                if not last:
                    continue
                break
            except psycopg.OperationalError as exc:
                source.mark(False, type(exc).__name__)
                continue
            try:
                yield conn
            except psycopg.OperationalError as exc:
                if lost(exc):  # the next request goes elsewhere at once, not after a probe
                    source.mark(False, type(exc).__name__)
                raise
            finally:
                await source.pool.putconn(conn)
            return
        if not self.several:
            raise NoDatabase("the database to read from does not answer, or all its "
                             "connections are busy; retry shortly")
        down = sum(not s.up for s in self.sources)
        raise NoDatabase(f"no database to read from answers ({down} of {len(self.sources)} "
                         "do not answer, the others are busy); retry shortly")

    def health(self) -> list[dict[str, Any]]:
        """Each source's state for /health (no URLs: they name hosts)."""
        now = time.monotonic()
        return [{"name": s.name, "up": s.up, "for_s": round(now - s.since, 1)}
                for s in self.sources]
