"""The response cache: bounded by bytes, least recently used out first, gzip made once."""

from __future__ import annotations

import asyncio
import gzip
import random

from geo_service.web.cache import ENTRY_OVERHEAD, BodyCache, make_entry


def test_lru_by_bytes_and_gzip_form() -> None:
    store = BodyCache(max_bytes=4500, max_entry=2500)
    bodies = {k: (k * 1000).encode()[:1000] for k in "abc"}  # 1000 bytes, compress well
    for key, body in bodies.items():
        store.put(key, make_entry(body, "text/plain"))
    assert len(store) == 3 and store.size <= 4500
    assert gzip.decompress(store.get("a").gzipped) == bodies["a"]  # "a" is now the newest
    store.put("d", make_entry(random.Random(1).randbytes(2048), "application/octet-stream"))
    assert store.get("d").gzipped is None  # random bytes that gzip cannot shrink are kept plain
    assert store.get("b") is None and store.get("c") is None  # oldest went first
    assert store.get("a") is not None and store.size <= 4500
    store.put("huge", make_entry(b"x" * 10_000, "text/plain"))  # larger than max_entry: not kept
    assert store.get("huge") is None
    assert not BodyCache(0).keeps(10) and not store.keeps(2501) and store.keeps(2500)


def test_empty_bodies_still_count_so_the_cache_stays_bounded() -> None:
    """A flood of distinct keys with empty bodies (the tiles of empty sea, say) cannot grow the
    cache past its bound: each entry weighs its key and a fixed overhead."""
    store = BodyCache(max_bytes=1_000_000, max_entry=10_000)
    for i in range(100_000):
        store.put(f'"tile-{i:08d}"', make_entry(b"", "application/vnd.mapbox-vector-tile"))
    assert store.size <= 1_000_000
    assert len(store) <= 1_000_000 // ENTRY_OVERHEAD
    assert store.get('"tile-00099999"') is not None and store.get('"tile-00000000"') is None


def test_uncached_bodies_are_gzipped_once_quickly_and_large_ones_off_the_event_loop(
        settings, sample, monkeypatch) -> None:
    """With the response cache off, a page is compressed for its one answer at the quickest
    level (not at the stored bodies' level 9), a large one in a worker thread (no running event
    loop there) so other requests are not held up; the gzip body is the plain body."""
    from fastapi.testclient import TestClient

    from geo_service.web import cache
    from geo_service.web.app import create_app

    where: list[tuple[int, bool, int]] = []
    make = cache.make_entry

    def watched(body: bytes, media_type: str, level: int = 9) -> cache.Entry:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        where.append((len(body), on_loop, level))
        return make(body, media_type, level)

    monkeypatch.setattr(cache, "make_entry", watched)
    uncached = settings.model_copy(update={"response_cache_mb": 0})
    page = "/collections/regions/items?limit=200&country=FR"
    with TestClient(create_app(uncached)) as client:
        with client.stream("GET", page, headers={"Accept-Encoding": "gzip"}) as packed:
            wire = b"".join(packed.iter_raw())
        assert packed.status_code == 200
        assert packed.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in packed.headers["vary"].lower()
        small = client.get("/collections/regions/items?limit=2",
                           headers={"Accept-Encoding": "gzip"})
        assert small.status_code == 200 and small.headers["content-encoding"] == "gzip"
        plain = client.get(page, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert gzip.decompress(wire) == plain.content  # the same page
    assert wire[8] == 4  # the gzip header's XFL: compressed at the fastest level
    large = [(on_loop, level) for size, on_loop, level in where if size >= cache.THREAD_MIN]
    assert large and all(not on_loop and level == cache.FAST_LEVEL for on_loop, level in large)
    small_ones = [(on_loop, level) for size, on_loop, level in where if size < cache.THREAD_MIN]
    assert small_ones and all(on_loop and level == cache.FAST_LEVEL for on_loop, level in small_ones)
    assert len(where) == 2  # the identity request compressed nothing
