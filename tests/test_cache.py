"""The response cache: bounded by bytes, least recently used out first, gzip made once."""

from __future__ import annotations

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
