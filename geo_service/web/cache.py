"""Finished response bodies kept in memory, keyed by their ETag (which carries the data version),
so a page or tile asked for again is sent without touching the database beyond the version check.

The gzip form is made once, at the highest level, when a body is stored; clients that accept gzip
get it as it is, and GZipMiddleware passes responses that already carry Content-Encoding through.
A body no cache keeps is compressed for its one answer only, at the quickest level (`send_once`):
at level 9 France's 102 regions took 25 ms a request with the cache off, against 10-11 ms
without gzip.
A change of data version changes every key, so nothing stale can be served; old entries simply
age out of the LRU.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

ENTRY_OVERHEAD = 400  # bytes counted per entry beyond bodies and key (about 270 measured, key included)
GZIP_MIN = 500  # bytes; smaller bodies go out as they are (as GZipMiddleware does)
THREAD_MIN = 64 * 1024  # bytes; larger bodies are compressed in a worker thread
# gzip level of a body sent once: on France's 436 KB of regions level 1 is 161 KB (tipg's own
# gzip 165 KB) in a third of level 5's time and a thirteenth of level 9's (137 KB and 136 KB)
FAST_LEVEL = 1


@dataclass(frozen=True)
class Entry:
    body: bytes
    gzipped: bytes | None
    media_type: str


class BodyCache:
    """An LRU of response bodies bounded by their total size in bytes (0 turns it off)."""

    def __init__(self, max_bytes: int, max_entry: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_entry if max_entry is not None else max_bytes // 8
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        """Whether `key` is kept (without counting a hit or a miss)."""
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def stats(self) -> dict[str, int | float | None]:
        """Hits, misses and their ratio since the server started, and what is kept now (what
        /health reports, to size the cache and read a capacity plan from)."""
        asked = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses,
                "hit_ratio": round(self.hits / asked, 4) if asked else None,
                "entries": len(self._entries), "bytes": self.size, "max_bytes": self.max_bytes}

    def keeps(self, size: int) -> bool:
        """Whether a body of `size` bytes would be kept."""
        return 0 < size <= self.max_entry and self.max_bytes > 0

    def cost(self, key: str, entry: Entry) -> int:
        """What an entry weighs: its bodies, its key and a fixed overhead, so that even empty
        bodies count."""
        return len(entry.body) + len(entry.gzipped or b"") + len(key) + ENTRY_OVERHEAD

    def put(self, key: str, entry: Entry) -> None:
        """Keep an entry; one larger than `max_entry` is not kept."""
        cost = self.cost(key, entry)
        if self.max_bytes <= 0 or cost > self.max_entry:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= self.cost(key, old)
        self._entries[key] = entry
        self.size += cost
        while self.size > self.max_bytes and self._entries:
            dropped_key, dropped = self._entries.popitem(last=False)
            self.size -= self.cost(dropped_key, dropped)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


def make_entry(body: bytes, media_type: str, level: int = 9) -> Entry:
    """A body with its gzip form (pure: may run in a worker thread for large bodies)."""
    gzipped = gzip.compress(body, compresslevel=level, mtime=0) if len(body) >= GZIP_MIN else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    return Entry(body, gzipped, media_type)


async def entry_for(body: bytes, media_type: str, level: int = 9) -> Entry:
    """make_entry, off the event loop when the body is large."""
    if len(body) > THREAD_MIN:
        return await asyncio.to_thread(make_entry, body, media_type, level)
    return make_entry(body, media_type, level)


async def send_once(request: Request, body: bytes, media_type: str, headers: dict[str, str]
                    ) -> Response:
    """A body no cache keeps: gzipped at FAST_LEVEL when the client accepts gzip (in a worker
    thread when large), else as it is."""
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return Response(body, media_type=media_type, headers=headers)
    return respond(request, await entry_for(body, media_type, level=FAST_LEVEL), headers)


def respond(request: Request, entry: Entry, headers: dict[str, str], status_code: int = 200
            ) -> Response:
    """The entry as a response, gzipped when the client accepts it."""
    if entry.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return gzipped_response(entry.gzipped, entry.media_type, headers, status_code)
    return Response(entry.body, status_code=status_code, media_type=entry.media_type,
                    headers=headers)


def gzipped_response(body: bytes, media_type: str, headers: dict[str, str], status_code: int = 200
                     ) -> Response:
    """An already gzipped body, marked so (GZipMiddleware leaves it alone)."""
    vary = headers.get("Vary", "")
    if "accept-encoding" not in vary.lower():
        vary = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
    return Response(body, status_code=status_code, media_type=media_type,
                    headers={**headers, "Content-Encoding": "gzip", "Vary": vary})
