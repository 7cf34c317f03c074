"""The database going away is a 503 problem with Retry-After, never a 500."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from geo_service.web.app import create_app
from geo_service.web.reads import ReadPools


def test_database_gone_is_503_with_retry_after(settings, database_url) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/collections/regions/items?limit=1").status_code == 200
        real = client.app.state.pool
        # a pool whose server does not answer: every request must fail fast and cleanly
        nowhere = ReadPools(["postgresql://geo@127.0.0.1:9/none?connect_timeout=1"], None,
                            probe_s=1, connect_timeout_s=1, wait_s=1, min_size=0, max_size=1)
        client.portal.call(lambda: nowhere.sources[0].pool.open(wait=False))
        client.app.state.pool = nowhere
        try:
            for url in ("/collections/regions/items?limit=1", "/tiles/map/0/0/0.mvt",
                        "/export/map.png?preset=square", "/api/stats"):
                response = client.get(url)
                assert response.status_code == 503, (url, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.headers["retry-after"] == "5"
                assert "127.0.0.1" not in response.text  # the error's message stays in the log
        finally:
            client.app.state.pool = real
            client.portal.call(lambda: asyncio.wait_for(nowhere.close(), 5))
        assert client.get("/collections/regions/items?limit=1").status_code == 200
