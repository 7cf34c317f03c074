"""Reads from a streaming replica: the embedded cluster cloned as `geo-service db replica start`
does, the service reading from it, a write on the primary seen through it, and the replica
stopped and started while the service serves (with the primary as fallback, and without)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from email.message import Message
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from geo_service import db
from geo_service.campaign.members import set_override
from geo_service.cli import app as cli_app
from geo_service.embedded import EmbeddedReplica
from geo_service.settings import Settings
from tests.conftest import serving

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("GEO_TEST_DATABASE_URL")),
    reason="replicates the embedded cluster; GEO_TEST_DATABASE_URL names another server")

ITEM = "/collections/territories/items/jo-municipality-irbid?geometry=boundary"


def on_port(url: str, port: int | None) -> str:
    """The same URL (role, password, database) on another port of the loopback."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{port}"))


def get(url: str) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def shape(server: str) -> tuple[str, str]:
    status, headers, body = get(server + ITEM)
    assert status == 200, body
    return json.loads(body)["geometry"]["type"], headers["etag"]


def wait_for(server: str, kind: str, limit_s: float) -> float:
    """Seconds until the item's geometry type is `kind` through the server (fails past limit)."""
    start = time.monotonic()
    while shape(server)[0] != kind:
        assert time.monotonic() - start < limit_s, f"still not {kind} after {limit_s} s"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def replica(sample_dsn: str) -> Iterator[EmbeddedReplica]:
    """A replica of the project's embedded cluster (the test databases in it included), made
    after the sample data is loaded, with a name of its own; removed with its slot at the end."""
    primary = db.cluster(Settings(database_url=None))
    made = EmbeddedReplica(primary, f"test{os.getpid()}_{secrets.token_hex(2)}")
    made.start()
    try:
        yield made
    finally:
        made.remove()


def replica_env(settings: Settings, database_url: str, reader_url: str, replica: EmbeddedReplica,
                fallback: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "GEO_TILES_DIR": str(settings.tiles_dir),
            "GEO_READ_DATABASE_URL": on_port(reader_url, replica.port),
            "GEO_READ_FALLBACK_URL": fallback, "GEO_READ_PROBE_S": "0.5",
            "GEO_RESPONSE_CACHE_MB": "64"}


@pytest.fixture(scope="module")
def replica_server(settings: Settings, database_url: str, reader_url: str,
                   replica: EmbeddedReplica) -> Iterator[str]:
    """The service reading from the replica, the primary's reader as its fallback."""
    env = replica_env(settings, database_url, reader_url, replica, reader_url)
    with serving(env, settings.data_dir / f"replica-server-{secrets.token_hex(4)}.log") as url:
        yield url


def test_cli_reports_a_streaming_standby(replica: EmbeddedReplica, reader_url: str) -> None:
    result = CliRunner().invoke(cli_app, ["db", "replica", "status", "--name", replica.name,
                                          "--json"], env={"DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["running"] and status["standby"] and status["streaming"], status
    result = CliRunner().invoke(cli_app, ["db", "replica", "url", "--name", replica.name],
                                env={"DATABASE_URL": ""})
    assert result.exit_code == 0 and f":{replica.port}/" in result.output, result.output
    with psycopg.connect(result.output.strip()) as conn:  # the service's reader, on a standby
        assert conn.execute("SELECT pg_is_in_recovery(), current_user").fetchone() == (
            True, "geo_reader")
    with psycopg.connect(on_port(reader_url, replica.port)) as conn:  # this session's data
        assert conn.execute("SELECT count(*) FROM territories").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM territories")


def test_server_reads_from_the_replica_and_sees_a_write_within_5_s(
        replica_server: str, replica: EmbeddedReplica, database_url: str) -> None:
    """With replay paused on the replica, a write on the primary is not seen (the server reads
    the replica, data version included); once replay resumes it shows within 5 s."""
    kind, etag = shape(replica_server)
    assert kind == "Point"
    on_replica = on_port(replica.primary.url(database=urlsplit(database_url).path[1:]),
                         replica.port)
    with psycopg.connect(on_replica, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            set_override(database_url, "jo-municipality-irbid", "JO-IR")
            time.sleep(1.5)
            assert shape(replica_server) == (kind, etag)  # the replica's version, not ahead
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    try:
        seen = wait_for(replica_server, "MultiPolygon", 5)
        assert shape(replica_server)[1] != etag
    finally:
        set_override(database_url, "jo-municipality-irbid", None)
    wait_for(replica_server, "Point", 5)
    assert seen < 5


def hammer(server: str, stop: threading.Event, statuses: Counter[int]) -> None:
    while not stop.is_set():
        status, _, _ = get(server + "/collections/territories/items?limit=3")
        statuses[status] += 1
        time.sleep(0.02)


def test_replica_stopped_and_started_while_serving(
        replica_server: str, replica: EmbeddedReplica) -> None:
    """Reads go to the primary while the replica is down, with no error, and back to it."""
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    worker = threading.Thread(target=hammer, args=(replica_server, stop, statuses))
    worker.start()
    try:
        time.sleep(1)
        replica.stop()
        time.sleep(3)
        _, _, body = get(replica_server + "/health")
        down = json.loads(body)["read_databases"]
        replica.start()
        time.sleep(3)
    finally:
        stop.set()
        worker.join()
    assert set(statuses) == {200} and sum(statuses.values()) > 50, statuses
    assert [d["up"] for d in down] == [False, True], down
    _, _, body = get(replica_server + "/health")
    assert [d["up"] for d in json.loads(body)["read_databases"]] == [True, True]


def test_without_fallback_a_stopped_replica_is_a_clear_503_then_recovers(
        settings: Settings, database_url: str, reader_url: str,
        replica: EmbeddedReplica) -> None:
    env = replica_env(settings, database_url, reader_url, replica, "none")
    with serving(env, settings.data_dir / f"replica-only-{secrets.token_hex(4)}.log") as server:
        assert get(server + "/collections")[0] == 200
        replica.stop()
        try:
            status, headers, body = get(server + "/collections/territories/items?limit=3")
            assert status == 503 and headers["Retry-After"], body
            problem = json.loads(body)
            assert "database to read from does not answer" in problem["detail"], problem
            assert "127.0.0.1" not in body.decode()  # no host in what a client is told
        finally:
            replica.start()
        deadline = time.monotonic() + 10
        while get(server + "/collections/territories/items?limit=3")[0] != 200:
            assert time.monotonic() < deadline, "reads did not resume by themselves"
            time.sleep(0.2)


def test_a_replica_beyond_catching_up_is_cloned_afresh(replica: EmbeddedReplica) -> None:
    """Its slot gone from the primary (as when it fell more than 2 GB behind), `start` clones
    it again instead of leaving a standby that waits forever for WAL the primary dropped."""
    replica.stop()
    with psycopg.connect(replica.primary.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (replica.slot,))
    assert replica.slot_state() is None
    replica.start()
    assert replica.recloned
    deadline = time.monotonic() + 15
    while not (status := replica.replication()).streaming:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status.in_recovery and status.slot == "reserved", status
