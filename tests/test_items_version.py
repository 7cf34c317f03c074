"""Items pages read with their data version in one statement (response cache off, no
If-None-Match): the ETag still carries the version of the rows the page holds, a write between
two requests still changes it, and a database that moved on since its last answer is read again
version first, never answered with a count or an ETag of the version it left."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from geo_service.query import features, service
from geo_service.query.collections import COLLECTIONS
from geo_service.web.app import create_app

PAGE = "/collections/regions/items?limit=5&region=FR"
BY_COUNTRY = "/collections/regions/items?limit=5&country=FR"  # no region codes needed
THEME = ("test-items-version-theme", "test", "Test", "Test", "Prueba")


@pytest.fixture(scope="module")
def uncached(settings, sample) -> Iterator[TestClient]:
    """The app with its response cache off, as the features benchmark's 'uncached' server."""
    with TestClient(create_app(settings.model_copy(update={"response_cache_mb": 0}))) as client:
        yield client


@pytest.fixture()
def version_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions read by a statement of their own (service.data_version), as they happen."""
    seen: list[str] = []
    read = service.data_version

    async def counted(conn: psycopg.AsyncConnection) -> str:
        version = await read(conn)
        seen.append(version)
        return version

    monkeypatch.setattr(service, "data_version", counted)
    monkeypatch.setattr("geo_service.web.ogc.data_version", counted)
    return seen


def database_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(service.DATA_VERSION_SQL).fetchone()
        assert row is not None
        return str(row[0])


def write(dsn: str) -> None:
    """A change to the data (a theme added and taken away again): two new data versions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO rights_themes VALUES (%s, %s, %s, %s, %s)", THEME)
        conn.execute("DELETE FROM rights_themes WHERE slug = %s", (THEME[0],))


def get(client: TestClient, tag: str | None = None, page: str = PAGE):
    headers = {"Accept-Encoding": "identity"} | ({"If-None-Match": tag} if tag else {})
    return client.get(page, headers=headers)


def test_the_page_and_its_version_come_in_one_statement_and_the_etag_holds(
        uncached, version_reads, database_url) -> None:
    get(uncached)  # the database has answered a version (and the region codes are read)
    version_reads.clear()
    first = get(uncached)
    assert first.status_code == 200 and first.json()["numberMatched"] == 102
    assert version_reads == []  # no statement of its own for the version
    # the ETag is the one the version-first path makes for the database's version now: a
    # conditional request (which reads the version first, to spare the page) gets its 304
    again = get(uncached, first.headers["ETag"])
    assert again.status_code == 304
    assert version_reads == [database_version(database_url)]


def test_a_write_between_two_requests_changes_the_etag(uncached, version_reads,
                                                       database_url) -> None:
    before = get(uncached)
    version = database_version(database_url)
    write(database_url)
    assert database_version(database_url) != version
    version_reads.clear()
    after = get(uncached)  # the database moved on from the version it answered last
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.content == before.content  # the same rows, under the new version
    assert get(uncached, before.headers["ETag"]).status_code == 200  # the old tag is stale
    assert get(uncached, after.headers["ETag"]).status_code == 304
    settled = get(uncached)  # the new version is now the one expected: one statement again
    assert settled.headers["ETag"] == after.headers["ETag"]


def test_a_database_that_moved_on_is_read_again_version_first(uncached, version_reads,
                                                             database_url) -> None:
    """When the version a database answered last is not its version any more, what was kept
    for the old one (a count, the region codes) is not used: the page is read again with the
    version first, and its ETag and numberMatched are the database's own."""
    honest = get(uncached, page=BY_COUNTRY)
    assert honest.status_code == 200
    regions = COLLECTIONS["regions"]
    stale = "stale-version"
    q = features.ItemsQuery(limit=5, equals={"country": "FR"})
    key = features._count_key(stale, regions, q)
    assert key is not None
    features._COUNTS[key] = 12345  # a count the database cannot give

    async def read() -> tuple[str, dict] | None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await features.items_read(conn, regions, q, stale)

    assert asyncio.run(read()) is None  # the database is not at the stale version
    assert features._COUNTS[key] == 12345  # and nothing was kept for it
    for known in list(service._SEEN):
        service._SEEN[known] = stale
    version_reads.clear()
    again = get(uncached, page=BY_COUNTRY)
    assert again.status_code == 200
    assert version_reads == [database_version(database_url)]  # read again, version first
    assert again.headers["ETag"] == honest.headers["ETag"]
    assert again.json()["numberMatched"] == 102
    del features._COUNTS[key]


def test_a_conditional_request_or_a_response_cache_reads_the_version_first(
        client, uncached, version_reads) -> None:
    """A 304 or a kept body spares the page's query only when the version is known first."""
    tag = get(uncached).headers["ETag"]
    version_reads.clear()
    assert get(uncached, '"another"').status_code == 200
    assert len(version_reads) == 1
    version_reads.clear()
    assert get(client).status_code == 200  # the shipped app: its response cache is on
    assert len(version_reads) == 1
    assert get(uncached, tag).status_code == 304
