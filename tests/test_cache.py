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


def test_large_uncached_bodies_are_gzipped_off_the_event_loop(settings, sample, monkeypatch
                                                               ) -> None:
    """With the response cache off, a large page is compressed by GZipMiddleware: in a worker
    thread (no running event loop there), so other requests are not held up meanwhile."""
    from fastapi.testclient import TestClient
    from starlette.middleware import gzip as starlette_gzip

    from geo_service.web.app import create_app
    from geo_service.web.cache import THREAD_MIN

    where: list[tuple[int, bool]] = []
    compress = starlette_gzip.GZipResponder._compress_body

    def watched(self, body: bytes, more_body: bool) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        where.append((len(body), on_loop))
        return compress(self, body, more_body)

    monkeypatch.setattr(starlette_gzip.GZipResponder, "_compress_body", watched)
    uncached = settings.model_copy(update={"response_cache_mb": 0})
    with TestClient(create_app(uncached)) as client:
        response = client.get("/collections/regions/items?limit=200&country=FR",
                              headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, response.text
        assert response.headers["content-encoding"] == "gzip"
        small = client.get("/collections", headers={"Accept-Encoding": "gzip"})
        assert small.status_code == 200
    large = [on_loop for size, on_loop in where if size >= THREAD_MIN]
    assert large and not any(large), where  # every large body went to a thread
    assert any(on_loop for size, on_loop in where if size < THREAD_MIN), where  # small: inline
