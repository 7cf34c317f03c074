"""The response cache: bounded by bytes, least recently used out first, gzip made once."""

from __future__ import annotations

import gzip
import random

from geo_service.web.cache import BodyCache, make_entry


def test_lru_by_bytes_and_gzip_form() -> None:
    store = BodyCache(max_bytes=3100, max_entry=2500)
    bodies = {k: (k * 1000).encode()[:1000] for k in "abc"}  # 1000 bytes, compress well
    for key, body in bodies.items():
        store.put(key, make_entry(body, "text/plain"))
    assert len(store) == 3 and store.size <= 3100
    assert gzip.decompress(store.get("a").gzipped) == bodies["a"]  # "a" is now the newest
    store.put("d", make_entry(random.Random(1).randbytes(2048), "application/octet-stream"))
    assert store.get("d").gzipped is None  # random bytes that gzip cannot shrink are kept plain
    assert store.get("b") is None and store.get("c") is None  # oldest went first
    assert store.get("a") is not None and store.size <= 3100
    store.put("huge", make_entry(b"x" * 10_000, "text/plain"))  # larger than max_entry: not kept
    assert store.get("huge") is None
    assert not BodyCache(0).keeps(10) and not store.keeps(2501) and store.keeps(2500)
