"""The compose scale profile's caching proxy, for real: deploy/nginx/scale.conf.template filled in
as the official nginx image does and run by Debian's nginx, unprivileged, on loopback, in front of
two `geo-service serve` processes over the test database. It keeps URLs that name the data
version and serves them again without asking (HIT); every other data response it keeps but
revalidates with an app at each use (REVALIDATED, or the new body), so after a change no request
gets the old body; clients' If-None-Match gets a 304 through it; requests spread over both apps,
go to the other when one stops, and with none left only what names its version is served."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

from geo_service.campaign.members import set_override
from geo_service.settings import Settings
from tests.conftest import free_port, live_server

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "scale.conf.template"
NGINX = "/usr/sbin/nginx"
ITEM = "/collections/territories/items/jo-municipality-irbid?geometry=boundary"
TILE = "/tiles/map/2/2/1.mvt"

# What the official image's /etc/nginx/nginx.conf does around conf.d/*.conf, with this test's
# folders, and an access log naming the app that answered (or "-" when the cache did).
MAIN = """daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log notice;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$upstream_addr|$upstream_cache_status|$status|$request_uri';
    access_log {run}/access.log upstream;
    client_body_temp_path {run}/temp/body;
    proxy_temp_path {run}/temp/proxy;
    fastcgi_temp_path {run}/temp/fastcgi;
    uwsgi_temp_path {run}/temp/uwsgi;
    scgi_temp_path {run}/temp/scgi;
    include {run}/scale.conf;
}}
"""


@dataclass
class Answer:
    status: int
    headers: Message  # names in any case
    body: bytes

    @property
    def cache(self) -> str:
        return self.headers.get("X-Cache-Status", "")

    def geometry(self) -> str:
        return str(json.loads(self.body)["geometry"]["type"])


@dataclass
class Proxy:
    url: str
    run: Path
    answered: int = 0  # requests this Proxy has had answers to
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, error.headers, error.read())
        with self.lock:
            self.answered += 1
        return answer

    def upstreams(self) -> list[str]:
        """The app (host:port) each request went to, in order; "-" for those the cache answered,
        several comma-separated when the first failed. nginx logs a request after its answer
        is sent: this waits until every request answered so far is in the log."""
        deadline = time.monotonic() + 10
        while True:
            lines = (self.run / "access.log").read_text().splitlines()
            if len(lines) >= self.answered or time.monotonic() > deadline:
                return [line.split("|", 1)[0] for line in lines]
            time.sleep(0.05)


def render(template: str, values: dict[str, str]) -> str:
    """${GEO_PROXY_*} filled in, as the official image's envsubst with NGINX_ENVSUBST_FILTER
    does: nginx's own $variables are left alone, and every variable must be given."""
    done = re.sub(r"\$\{(GEO_PROXY_[A-Z0-9_]+)\}", lambda found: values[found.group(1)], template)
    assert "${GEO_PROXY_" not in done
    return done


def answers(proxy: Proxy) -> bool:
    try:
        return proxy.get("/health").status == 200
    except OSError:  # not listening yet
        return False


@contextmanager
def nginx_in_front_of(apps: list[str]) -> Iterator[Proxy]:
    """Debian's nginx with the scale profile's configuration, in front of `apps` (two URLs),
    in a folder of its own; run as `nobody` when the tests run as root, stopped at the end."""
    assert os.access(NGINX, os.X_OK), "Debian's nginx is missing: make test installs it"
    run = Path(tempfile.mkdtemp(prefix="geo-proxy-"))  # not under root's private pytest folder
    port = free_port()
    values = {"GEO_PROXY_LISTEN": f"127.0.0.1:{port}", "GEO_PROXY_CACHE_DIR": str(run / "cache"),
              **{f"GEO_PROXY_APP_{n}": app.removeprefix("http://")
                 for n, app in enumerate(apps, 1)}}
    (run / "scale.conf").write_text(render(TEMPLATE.read_text(), values))
    (run / "nginx.conf").write_text(MAIN.format(run=run))
    (run / "temp").mkdir()
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    if user:
        for path in [run, *run.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    command = [NGINX, "-p", str(run), "-e", str(run / "error.log"), "-c", str(run / "nginx.conf")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               user=user.pw_uid if user else None,
                               group=user.pw_gid if user else None,
                               extra_groups=[] if user else None)
    proxy = Proxy(f"http://127.0.0.1:{port}", run)
    try:
        deadline = time.monotonic() + 20
        while not answers(proxy):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, (run / "error.log").read_text()
            time.sleep(0.2)
        yield proxy
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def apps(settings: Settings, database_url: str, sample: list) -> Iterator[list[str]]:
    """Two app processes over the sample data, as the scale profile's app-1 and app-2."""
    with live_server(settings, database_url) as first, live_server(settings, database_url) as second:
        yield [first, second]


@pytest.fixture(scope="module")
def proxy(apps: list[str]) -> Iterator[Proxy]:
    with nginx_in_front_of(apps) as running:
        yield running


def test_config_is_valid_for_nginx_and_nothing_else_is_filled_in(proxy: Proxy) -> None:
    rendered = (proxy.run / "scale.conf").read_text()
    assert "$upstream_cache_status" in rendered and "$http_host" in rendered
    result = subprocess.run([NGINX, "-t", "-p", str(proxy.run), "-e", str(proxy.run / "t.log"),
                             "-c", str(proxy.run / "nginx.conf")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    with pytest.raises(KeyError):  # a variable compose would not give is an error, not a blank
        render(TEMPLATE.read_text(), {"GEO_PROXY_LISTEN": "80"})


def test_a_url_naming_the_data_version_is_served_from_the_cache(proxy: Proxy) -> None:
    tilejson = proxy.get("/tiles/map.json")
    assert tilejson.status == 200
    template = json.loads(tilejson.body)["tiles"][0]
    assert template.startswith(proxy.url)  # links name the proxy the client used
    tile = template.replace("{z}/{x}/{y}", "2/2/1").removeprefix(proxy.url)
    first, again = proxy.get(tile), proxy.get(tile)
    assert first.status == again.status == 200
    assert "immutable" in first.headers["Cache-Control"]
    assert (first.cache, again.cache) == ("MISS", "HIT")
    assert again.body == first.body and again.headers["ETag"] == first.headers["ETag"]
    assert proxy.upstreams()[-1] == "-"  # no app was asked
    assert "X-Accel-Expires" not in first.headers  # between the apps and nginx only


def test_data_is_kept_but_revalidated_and_clients_get_304(proxy: Proxy) -> None:
    first = proxy.get(ITEM)
    assert first.status == 200 and first.cache in ("MISS", "EXPIRED", "REVALIDATED")
    again = proxy.get(ITEM)
    # kept, but an app was asked whether it is still current (a 304 to nginx, no body)
    assert again.cache == "REVALIDATED" and again.body == first.body
    assert proxy.upstreams()[-1] != "-"
    assert again.headers["Cache-Control"] == "public, max-age=60"  # what browsers keep
    assert "X-Accel-Expires" not in again.headers
    tag = first.headers["ETag"]
    unchanged = proxy.get(ITEM, {"If-None-Match": tag})
    assert unchanged.status == 304 and unchanged.body == b"" and unchanged.headers["ETag"] == tag
    other = proxy.get(ITEM, {"If-None-Match": '"not-this-one"'})
    assert other.status == 200 and other.body == first.body


def test_requests_spread_over_both_apps(proxy: Proxy, apps: list[str]) -> None:
    for _ in range(10):
        assert proxy.get(ITEM).status == 200
    asked = proxy.upstreams()[-10:]
    assert {app.removeprefix("http://") for app in apps} == set(asked)


def test_a_new_data_version_is_never_mixed_with_the_old(proxy: Proxy, database_url: str) -> None:
    """While a reader hammers the proxy, the territory is pinned to its boundary (a new data
    version): every body matches its ETag's version, and no request made after the change is
    committed gets the old body. Put back, the next version is served, not the first one kept."""
    before = proxy.get(ITEM)
    assert before.geometry() == "Point" and proxy.get(ITEM).cache == "REVALIDATED"
    seen: list[tuple[float, str, str]] = []  # (when the request started, ETag, geometry)
    failed: list[Answer] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            started = time.monotonic()
            answer = proxy.get(ITEM)
            if answer.status != 200:
                failed.append(answer)
                continue
            seen.append((started, answer.headers["ETag"], answer.geometry()))

    worker = threading.Thread(target=reader)
    worker.start()
    try:
        time.sleep(0.5)
        set_override(database_url, "jo-municipality-irbid", "JO-IR")
        committed = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=30)
    try:
        assert failed == []
        after = proxy.get(ITEM)
        assert after.geometry() == "MultiPolygon" and after.headers["ETag"] != before.headers["ETag"]
        stale = proxy.get(ITEM, {"If-None-Match": before.headers["ETag"]})
        assert stale.status == 200 and stale.geometry() == "MultiPolygon"
        assert [kind for started, _, kind in seen if started > committed] and all(
            kind == "MultiPolygon" for started, _, kind in seen if started > committed)
        kinds: dict[str, set[str]] = {}
        for _, tag, kind in seen:
            kinds.setdefault(tag, set()).add(kind)
        assert all(len(found) == 1 for found in kinds.values()), kinds
        assert {kind for found in kinds.values() for kind in found} == {"Point", "MultiPolygon"}
    finally:
        set_override(database_url, "jo-municipality-irbid", None)
    back = proxy.get(ITEM)
    assert back.geometry() == "Point"
    assert back.headers["ETag"] not in (before.headers["ETag"], after.headers["ETag"])
    # the TileJSON names the new version at once, so pages ask for tiles the cache does not hold
    tiles = json.loads(proxy.get("/tiles/map.json").body)["tiles"][0]
    fresh = proxy.get(tiles.replace("{z}/{x}/{y}", "2/2/1").removeprefix(proxy.url))
    assert fresh.status == 200 and fresh.cache == "MISS"


def test_one_app_stopping_is_not_seen_and_with_none_only_versioned_urls_are_served(
        settings: Settings, database_url: str, sample: list) -> None:
    with ExitStack() as first, ExitStack() as second:
        apps = [first.enter_context(live_server(settings, database_url)),
                second.enter_context(live_server(settings, database_url))]
        with nginx_in_front_of(apps) as proxy:
            version = json.loads(proxy.get("/tiles/map.json").body)["tiles"][0].split("v=")[1]
            tile = f"{TILE}?v={version.split('&')[0]}"
            assert proxy.get(tile).status == 200 and proxy.get(tile).cache == "HIT"
            second.close()  # the second app's process ends
            statuses = [proxy.get(ITEM).status for _ in range(10)]
            assert statuses == [200] * 10
            asked = proxy.upstreams()[-10:]
            assert any("," in entry for entry in asked)  # tried the stopped one, then the other
            assert {entry.split(", ")[-1] for entry in asked} == {apps[0].removeprefix("http://")}
            first.close()  # none left
            assert proxy.get(ITEM).status == 502  # no stale data served
            kept = proxy.get(tile)
            assert kept.status == 200 and kept.cache == "HIT"
