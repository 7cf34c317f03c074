"""Map images never starve the API: drawing runs in a bounded pool of worker processes (429
beyond it, 503 past the time limit), and feature and tile requests stay fast during a burst of
large exports."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import threading
import time
import urllib.error
import urllib.request

import pytest

from geo_service.errors import Overloaded, TooSlow
from geo_service.web.images import RenderPool

from .conftest import live_server


def test_the_pool_bounds_work_and_time() -> None:
    async def scenario() -> None:
        pool = RenderPool(workers=1, queue=0, timeout_s=1.0)
        try:
            assert await pool.run(abs, -3) == 3  # the worker process starts and answers
            began = time.monotonic()
            with pytest.raises(TooSlow, match="within 1 s"):
                await pool.run(time.sleep, 3)
            assert time.monotonic() - began < 1.5
            with pytest.raises(Overloaded, match="retry"):  # its worker is still busy
                await pool.run(abs, -4)
            await asyncio.sleep(2.5)  # the slow one has finished: its slot is free again
            assert await pool.run(abs, -5) == 5
        finally:
            pool.close()

    asyncio.run(scenario())


def test_a_killed_worker_is_a_503_and_the_pool_starts_afresh() -> None:
    async def scenario() -> None:
        pool = RenderPool(workers=1, queue=0, timeout_s=30.0)
        try:
            assert await pool.run(abs, -1) == 1
            slow = asyncio.ensure_future(pool.run(time.sleep, 10))
            await asyncio.sleep(0.5)
            for process in list(pool.executor._processes.values()):  # as the OOM killer would
                os.kill(process.pid, signal.SIGKILL)
            with pytest.raises(TooSlow, match="restarted"):
                await slow
            assert await pool.run(abs, -2) == 2  # served again, no 500 from then on
        finally:
            pool.close()

    asyncio.run(scenario())


def _get(url: str) -> tuple[int, float]:
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, time.monotonic() - began


def test_an_export_burst_leaves_features_and_tiles_fast(settings, sample_dsn: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """While large exports are drawn (and more are refused with 429), feature and tile requests
    are answered as they come: none waits for a drawing to end. Measured against the time one
    such export takes alone, on the same machine in the same run, so that a loaded machine
    (CI, other test processes) slows both sides alike; a drawing that held the event loop or the
    database pool would make API requests wait about half a drawing each."""
    monkeypatch.setenv("GEO_IMAGE_WORKERS", "1")
    monkeypatch.setenv("GEO_IMAGE_QUEUE", "2")
    monkeypatch.setenv("GEO_RESPONSE_CACHE_MB", "0")  # every feature request runs its SQL
    monkeypatch.setenv("GEO_TILE_CACHE_MB", "0")
    large = "/export/map.png?width=4000&height=4000&dpi=300&title="
    with live_server(settings, sample_dsn) as url:
        assert _get(f"{url}/export/map.png?preset=square")[0] == 200  # workers warm
        status, alone = _get(f"{url}{large}alone")
        assert status == 200
        exports: list[tuple[int, float, float]] = []  # status, start, end

        def export(i: int) -> None:
            began = time.monotonic()
            exports.append((_get(f"{url}{large}burst-{i}")[0], began, time.monotonic()))

        burst = [threading.Thread(target=export, args=(i,)) for i in range(16)]
        for thread in burst:
            thread.start()
        api: list[tuple[int, float, float]] = []  # status, seconds, end
        paths = ["/collections/regions/items?limit=10&country=FR", "/tiles/map/3/4/2.mvt",
                 "/collections/territories/items?limit=20", "/tiles/regions/4/8/5.mvt"]
        end = time.monotonic() + max(8.0, 2.5 * alone)
        while time.monotonic() < end:
            for path in paths:
                status, seconds = _get(url + path)
                api.append((status, seconds, time.monotonic()))
        for thread in burst:
            thread.join(timeout=300)
    assert {status for status, _, _ in api} <= {200, 204}
    assert len(exports) == 16 and {s for s, _, _ in exports} <= {200, 429}, exports
    drawn = [(began, ended) for status, began, ended in exports if status == 200]
    assert drawn and len(drawn) < 16, exports  # some drawn, the rest refused
    # the API was asked while the drawings ran: requests ended inside the last drawing's span
    last_began, last_ended = max(drawn, key=lambda span: span[1])
    during = sorted(seconds for _, seconds, ended in api if last_began < ended < last_ended)
    seconds = sorted(seconds for _, seconds, _ in api)
    p95 = seconds[int(len(seconds) * 0.95)]
    print(f"one export alone {alone:.2f} s; API during the burst: {len(seconds)} requests "
          f"({len(during)} within the last drawing), median {statistics.median(seconds):.3f} s, "
          f"p95 {p95:.3f} s, slowest {seconds[-1]:.3f} s; exports {sorted(s for s, _, _ in exports)}")
    assert len(during) >= 5, (len(during), last_ended - last_began)
    assert statistics.median(seconds) < alone / 5, (statistics.median(seconds), alone)
    assert p95 < alone / 2, (p95, alone)
