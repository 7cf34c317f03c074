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
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from geo_service.errors import NoDatabase

logger = logging.getLogger("geo_service")
SKIP_WAIT_S = 0.5  # how long a request waits on one database's pool before it tries the next


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
            return AsyncConnectionPool(dsn, open=False, timeout=wait_s, **pool_options)

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

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_s)
            await asyncio.gather(*(self._reach(s) for s in self.sources),
                                 return_exceptions=True)

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
