"""Vector tiles benchmark: our MVT tiles against tipg's on one PostGIS, written to docs/benchmarks.md.

Three servers run at once on loopback ports, one uvicorn worker each, on the same PostGIS: ours
uncached (tile cache off and an empty archive folder, so every tile is one live SQL statement),
ours as shipped (the prebuilt PMTiles archive, built under bench/.work/tiles-archive, and the
tile cache on; warmed up first), and tipg from its own venv under bench/.work/ (made on first
run), publishing views over our boundaries in the scratch schema `bench_tipg_tiles`. A fixed
sample of tiles over land (the tiles holding eight cities at each zoom, z0-z8) is fetched from
every server at concurrency 1, the servers taking turns, for several rounds; bytes are compared
with and without gzip; the archive is also read in-process; then many concurrent clients load
the shipped server. Servers stop and the schema goes, even on failure.
"""

import argparse
import asyncio
import gzip
import json
import math
import os
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import harness  # bench/ is not a package: Python puts the script's folder on sys.path
import httpx
import psycopg
from mapbox_vector_tile.Mapbox import vector_tile_pb2

from geo_service.query import tiles
from geo_service.query.service import data_version, database_identity
from geo_service.render.tiles import DEFAULT_ARCHIVE_ZOOM, Archives

START, END = "<!-- bench:tiles:start -->", "<!-- bench:tiles:end -->"
SCHEMA = "bench_tipg_tiles"
EMPTY_DIR = harness.WORK / "tiles-empty"  # no archive in it: the uncached server renders every tile
ARCHIVE_DIR = harness.WORK / "tiles-archive"  # the shipped server's archive (kept: a rebuild is a no-op)
VIEWS = {  # the attributes of our layers (names in English, as ?lang=en), over the same rows
    "countries": "SELECT b.code, coalesce(b.name_en, b.name) AS name, b.geom FROM boundaries b "
                 "WHERE b.level = 'country'",
    "regions": "SELECT b.code, coalesce(b.name_en, b.name) AS name, b.iso3166_1 AS country, "
               "b.iso3166_2, b.geom FROM boundaries b WHERE b.level = 'region'",
}
CITIES = {  # (lon, lat): the sample is the tiles holding these at each zoom
    "Paris": (2.3522, 48.8566), "Seoul": (126.9780, 37.5665), "Dakar": (-17.4677, 14.7167),
    "Mexico City": (-99.1332, 19.4326), "São Paulo": (-46.6333, -23.5505),
    "Nairobi": (36.8219, -1.2921), "Jakarta": (106.8456, -6.2088), "Montreal": (-73.5673, 45.5017),
}
MAX_Z = 8
TILESETS = ("countries", "regions")  # compared with tipg; `map` is timed on ours only
SERVERS = ("uncached", "shipped", "tipg")
WHO = {"uncached": "Ours, uncached", "shipped": "Ours, shipped", "tipg": "tipg"}
BANDS = ((0, 4), (5, 8))
OK = (200, 204)
Job = tuple[str, int, int, int]  # tileset, z, x, y


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=harness.HelpFormatter,
        epilog="Needs the default data loaded (`make bench` runs `geo-service load-defaults` first) "
               "and network access once, to install tipg. Server logs: bench/.work/"
               "features-tiles-{uncached,shipped,tipg}.log. Example, a quick check that writes "
               "elsewhere: bench/tiles_benchmark.py --rounds 1 --load-seconds 5 --output /tmp/t.md")
    p.add_argument("--rounds", type=int, default=5,
                   help="timed passes over the sample per server, at concurrency 1")
    p.add_argument("--load-seconds", type=float, default=30.0,
                   help="duration of the concurrent load test against the shipped server")
    p.add_argument("--clients", type=int, default=100, help="concurrent clients in the load test")
    p.add_argument("--inprocess-reps", type=int, default=200,
                   help="passes over the z0-z6 sample when reading the archive in-process")
    p.add_argument("--output", type=Path, default=harness.DOCS,
                   help="Markdown file to write the section to")
    p.add_argument("--geo-service", default=harness.GEO_SERVICE, help="our CLI")
    return p.parse_args()


# ------------------------------------------------------------------------------------ the sample
def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The slippy-map (XYZ, y from the top) tile holding a point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def sample(z_from: int, z_to: int) -> list[tuple[int, int, int]]:
    """The distinct tiles holding the cities, zoom by zoom, in a fixed order."""
    out: list[tuple[int, int, int]] = []
    for z in range(z_from, z_to + 1):
        for lon, lat in CITIES.values():
            t = (z, *tile_of(lon, lat, z))
            if t not in out:
                out.append(t)
    return out


def path_of(server: str, job: Job) -> str:
    tileset, z, x, y = job
    if server == "tipg":
        return f"/collections/{SCHEMA}.{tileset}/tiles/WebMercatorQuad/{z}/{x}/{y}"
    return f"/tiles/{tileset}/{z}/{x}/{y}.mvt?lang=en"


def codes(data: bytes) -> set[str]:
    """The `code` attribute of every feature of a tile (a check that both sides drew the same)."""
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(data)
    out = set()
    for layer in tile.layers:
        if "code" not in layer.keys:
            continue
        key = list(layer.keys).index("code")
        for feature in layer.features:
            tags = feature.tags
            for i in range(0, len(tags), 2):
                if tags[i] == key:
                    out.add(layer.values[tags[i + 1]].string_value)
    return out


# ------------------------------------------------------------------------------------ requests
def fetch(client: httpx.Client, path: str, encoding: str) -> tuple[int, bytes, str | None]:
    """Status, the bytes on the wire and their Content-Encoding."""
    with client.stream("GET", path, headers={"Accept-Encoding": encoding}) as r:
        wire = b"".join(r.iter_raw())
    return r.status_code, wire, r.headers.get("content-encoding")


def inspect(client: httpx.Client, path: str) -> dict:
    """One request without and one with gzip: status, plain bytes, gzip bytes, feature codes."""
    status, plain, coding = fetch(client, path, "identity")
    if coding not in (None, "identity"):
        sys.exit(f"{client.base_url}{path}: {coding} body although identity was asked for")
    status_gz, wire, coding = fetch(client, path, "gzip")
    if coding == "gzip" and gzip.decompress(wire) != plain:
        sys.exit(f"{client.base_url}{path}: the gzip body is not the plain body")
    return {"status": status, "status_gz": status_gz, "bytes": len(plain), "gzip": len(wire),
            "compressed": coding == "gzip", "codes": codes(plain) if status == 200 else set()}


def timed(client: httpx.Client, path: str) -> tuple[float, int]:
    """Milliseconds for one gzip request, its body read to the end, and the status."""
    t0 = time.perf_counter()
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as r:
        for _ in r.iter_raw():
            pass
    return (time.perf_counter() - t0) * 1000, r.status_code


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


async def load_test(base: str, paths: list[str], seconds: float, clients: int) -> dict:
    """`clients` concurrent loops over `paths` for `seconds`: latencies, statuses, errors. Each
    loop has its own AsyncClient with one connection: one client's pool of many connections
    costs httpcore time per request that grows with their number, and made the client the
    bottleneck."""
    verify = ssl.create_default_context()  # made once (loopback is plain HTTP anyway)
    pool = [httpx.AsyncClient(base_url=base, headers={"Accept-Encoding": "gzip"}, timeout=60,
                              verify=verify, limits=httpx.Limits(max_connections=1))
            for _ in range(clients)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    began = time.perf_counter()
    end = began + seconds

    async def worker(k: int, c: httpx.AsyncClient) -> None:
        i = k * len(paths) // clients  # loops start spread over the paths
        while time.perf_counter() < end:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                async with c.stream("GET", path) as r:
                    async for _ in r.aiter_raw():
                        pass
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            statuses[r.status_code] += 1
            if r.status_code not in OK:
                errors[f"HTTP {r.status_code}"] += 1

    try:
        await asyncio.gather(*(worker(k, c) for k, c in enumerate(pool)))
        elapsed = time.perf_counter() - began
    finally:
        for c in pool:
            await c.aclose()
    failed = sum(v for k, v in errors.items() if not k.startswith("HTTP"))
    return {"requests": len(latencies) + failed, "seconds": elapsed, "latencies": latencies,
            "statuses": statuses, "errors": errors}


# ------------------------------------------------------------------------------------ archive
def build_archive(geo: str, dsn: str) -> str:
    """`geo-service tiles build` into ARCHIVE_DIR: what it printed and how long it took."""
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done = subprocess.run([geo, "tiles", "build"], capture_output=True, text=True, cwd=harness.ROOT,
                          env={**os.environ, "DATABASE_URL": dsn, "GEO_TILES_DIR": str(ARCHIVE_DIR)})
    if done.returncode:
        sys.exit(f"tiles build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return f"{done.stdout.strip()} ({time.perf_counter() - t0:.1f} s wall-clock)"


class StaleArchive(RuntimeError):
    """The data changed since the archive was built (another writer on the same database)."""


def in_process(dsn: str, sample_tiles: list[tuple[int, int, int]], reps: int) -> dict:
    """Time `Archives.current(lang, version)` + `.get(z, x, y)` over the archive's zooms."""

    async def current() -> tuple[str, str]:  # as the server's lifespan and tile route get them
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await data_version(conn), await database_identity(conn)

    version, database = asyncio.run(current())
    archives = Archives(ARCHIVE_DIR, database)
    t0 = time.perf_counter_ns()
    archive = archives.current("en", version)
    opened = (time.perf_counter_ns() - t0) / 1e6
    if archive is None:
        raise StaleArchive(f"the archive in {ARCHIVE_DIR} does not hold data version {version}")
    todo = [t for t in sample_tiles if t[0] <= archive.max_zoom]
    found = sum(1 for t in todo if archive.get(*t))
    ns: list[int] = []
    for _ in range(reps):
        for z, x, y in todo:
            t0 = time.perf_counter_ns()
            archives.current("en", version).get(z, x, y)  # type: ignore[union-attr]
            ns.append(time.perf_counter_ns() - t0)
    ms = [n / 1e6 for n in ns]
    return {"open_ms": opened, "tiles": len(todo), "found": found, "max_zoom": archive.max_zoom,
            "n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99)}


# ------------------------------------------------------------------------------------ the run
def run(args: argparse.Namespace, dsn: str, tipg_python: Path, servers: list) -> dict:
    env = {"DATABASE_URL": dsn}
    out: dict = {"build": build_archive(args.geo_service, dsn)}
    print(out["build"], flush=True)
    EMPTY_DIR.mkdir(parents=True, exist_ok=True)
    if list(EMPTY_DIR.glob("*.pmtiles")):
        sys.exit(f"{EMPTY_DIR} must hold no archive")
    ours = [args.geo_service, "serve"]
    servers.append(harness.start("tiles-uncached", ours, env | {
        "GEO_TILE_CACHE_MB": "0", "GEO_TILES_DIR": str(EMPTY_DIR)}, harness.ROOT))
    servers.append(harness.start("tiles-shipped", ours, env | {"GEO_TILES_DIR": str(ARCHIVE_DIR)},
                                 harness.ROOT))
    servers.append(harness.start(  # cwd bench/.work: tipg reads a .env from its cwd
        "tiles-tipg", harness.tipg_command(tipg_python),
        env | {"TIPG_DB_SCHEMAS": json.dumps([SCHEMA]), "TIPG_CATALOG_TTL": "0",
               "TIPG_SET_MVT_LAYERNAME": "true"}, harness.WORK))
    for server in servers:
        harness.wait_ready(*server)
    bases = dict(zip(SERVERS, (s[0] for s in servers), strict=True))
    clients = {who: httpx.Client(base_url=base, timeout=300) for who, base in bases.items()}
    jobs: list[Job] = [(ts, *t) for ts in TILESETS for t in sample(tiles.LAYERS[ts].minzoom, MAX_Z)]
    map_jobs: list[Job] = [("map", *t) for t in sample(0, MAX_Z)]
    try:
        # bytes and feature codes; this is also the shipped server's warm-up (archive and cache)
        t0 = time.perf_counter()
        out["inspect"] = {(who, job): inspect(clients[who], path_of(who, job))
                          for job in jobs for who in SERVERS}
        for job in map_jobs:
            inspect(clients["shipped"], path_of("shipped", job))
        print(f"inspected {len(jobs)} tiles x {len(SERVERS)} servers in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        # timings at concurrency 1, the servers taking turns tile by tile, their order rotating
        times: dict[tuple[str, Job], list[float]] = {}
        statuses: Counter[tuple[str, int]] = Counter()
        archive_jobs = [j for j in map_jobs if j[1] <= DEFAULT_ARCHIVE_ZOOM]
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for i, job in enumerate(jobs):
                k = (r + i) % len(SERVERS)
                for who in SERVERS[k:] + SERVERS[:k]:
                    ms, status = timed(clients[who], path_of(who, job))
                    times.setdefault((who, job), []).append(ms)
                    statuses[who, status] += 1
            for job in archive_jobs:
                ms, status = timed(clients["shipped"], path_of("shipped", job))
                times.setdefault(("archive", job), []).append(ms)
                statuses["shipped", status] += 1
            print(f"round {r + 1}/{args.rounds} in {time.perf_counter() - t0:.0f} s", flush=True)
        out["times"], out["statuses"] = times, statuses
        out["jobs"], out["archive_jobs"] = jobs, archive_jobs
        # in-process reads of the archive the shipped server uses
        try:
            out["inprocess"] = in_process(dsn, [j[1:] for j in archive_jobs], args.inprocess_reps)
        except StaleArchive:  # another writer changed the data during the rounds: once more
            out["rebuilt"] = build_archive(args.geo_service, dsn)
            out["inprocess"] = in_process(dsn, [j[1:] for j in archive_jobs], args.inprocess_reps)
        print(f"in-process archive: {out['inprocess']}", flush=True)
        # concurrent clients against the shipped server: the map and regions tiles of the sample
        paths = [path_of("shipped", j) for j in map_jobs + [j for j in jobs if j[0] == "regions"]]
        out["load"] = asyncio.run(load_test(bases["shipped"], paths, args.load_seconds, args.clients))
        out["load_paths"] = len(paths)
        lo = out["load"]
        print(f"load: {lo['requests']} requests in {lo['seconds']:.1f} s, errors {dict(lo['errors'])}",
              flush=True)
    finally:
        for c in clients.values():
            c.close()
    return out


def server_errors(logs: list[Path]) -> dict[str, int]:
    """5xx responses and tracebacks in each server's log (in the order of SERVERS)."""
    return {WHO[who]: harness.server_problems(log) for who, log in zip(SERVERS, logs, strict=False)}


# ------------------------------------------------------------------------------------ report
def report(info: dict, out: dict, args: argparse.Namespace, when: str, loads: str, minutes: float,
           problems: dict[str, int]) -> str:
    jobs, times, insp = out["jobs"], out["times"], out["inspect"]
    name = "/".join  # a tile as tileset/z/x/y

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    def flat(who: str, pick: list[Job]) -> list[float]:
        return [ms for j in pick for ms in times[who, j]]

    # a tile ours drew empty where tipg drew features is no comparison of speed or size
    broken = [j for j in jobs if not insp["uncached", j]["codes"] and insp["tipg", j]["codes"]]
    fair = [j for j in jobs if j not in broken]

    def band(ts: str, lo: int, hi: int) -> list[Job]:
        return [j for j in fair if j[0] == ts and lo <= j[1] <= hi]

    zooms = {ts: f"z{tiles.LAYERS[ts].minzoom}–z{MAX_Z}" for ts in TILESETS}
    per_zoom = ", ".join(f"z{z} {len([j for j in jobs if j[0] == 'countries' and j[1] == z])}"
                         for z in range(MAX_Z + 1))
    lines = [START, "## Vector tiles: geo-service vs tipg", "",
             f"Measured {when} UTC by `bench/tiles_benchmark.py` (`--rounds {args.rounds} "
             f"--load-seconds {args.load_seconds:g} --clients {args.clients}`, {minutes:.1f} min in "
             "all), three servers running at once on loopback ports, one uvicorn worker each "
             "(uvloop and httptools for all three), on "
             "the same PostGIS: **Ours, uncached** (tile cache off, `GEO_TILE_CACHE_MB=0`, and an "
             "empty archive folder, so every tile is one live SQL statement), **Ours, shipped** "
             "(the prebuilt PMTiles archive of z0–z6 and the in-memory tile cache on, after one "
             "warm-up pass over the sample) and tipg. tipg serves views in the scratch schema "
             f"`{SCHEMA}` (dropped after the run) over the same rows of our `boundaries` table, with "
             "the attributes of our layers (`code`, `name` in English, and for regions `country`, "
             "`iso3166_2`) and layer names as ours (`TIPG_SET_MVT_LAYERNAME`); its catalog refresh "
             "(`TIPG_CATALOG_TTL`) is off. tipg tiles use its defaults: extent 4096, buffer 256, "
             "the full stored geometry clipped per tile, no simplification; ours use extent 4096, "
             "buffer 64 and the generalized tier made for the zoom, stored in EPSG:3857 (z0–z7; "
             "from z8 the full shapes, clipped in EPSG:4326 and projected per tile).", "",
             "**Sample**: the tiles holding Paris, Seoul, Dakar, Mexico City, São Paulo, Nairobi, "
             f"Jakarta and Montreal at each zoom (distinct tiles per zoom: {per_zoom}), the same "
             "list for every server. `countries` is compared at "
             f"{zooms['countries']}, `regions` at {zooms['regions']}: our regions layer starts at "
             f"z{tiles.LAYERS['regions'].minzoom} (our z0/z1 regions tiles are empty, 204), so lower "
             f"zooms would compare an empty tile with tipg's full one. {len(jobs)} tiles in all. "
             f"Timings: {args.rounds} rounds over the sample, each tile requested from each server "
             "in turn (the order rotating) with `Accept-Encoding: gzip` at concurrency 1 over a "
             "kept-alive connection, the body read to the end; latency is measured by the client.",
             "", *harness.machine_table(info, loads),
             "Archive for the shipped server (`geo-service tiles build` with `GEO_TILES_DIR="
             f"{ARCHIVE_DIR.relative_to(harness.ROOT)}`): {out['build']}", ""]
    if "rebuilt" in out:
        lines += ["The data changed during the run (another writer on the same database): the "
                  "shipped server rendered live from then on, and the archive was built again "
                  f"for the in-process reads: {out['rebuilt']}", ""]
    if broken:
        edge = all(x in (0, (1 << z) - 1) for _, z, x, _ in broken)
        also = all(not insp["shipped", j]["codes"] for j in broken)
        lines += [f"**Excluded from the comparisons: {len(broken)} of the {len(jobs)} tiles**, which "
                  "ours answered empty (204, no features) while tipg drew features there: "
                  + ", ".join(f"`{name(map(str, j))}`" for j in broken) + "."
                  + (" Every one lies in the first or last column of its zoom (x = 0 or "
                     "x = 2^z − 1), whose envelope with the tile buffer crosses ±180°." if edge else "")
                  + (" The shipped server answers them empty too." if also else "")
                  + f" The tables below compare the other {len(fair)} tiles; the last latency row "
                  "is the whole sample.", ""]
    lines += ["### Latency at concurrency 1 (ms)", "",
              "| Tileset | Zooms | Tiles | Ours, uncached p50 / p95 | Ours, shipped p50 / p95 | "
              "tipg p50 / p95 | Uncached/tipg p50 | Shipped/tipg p50 |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows: list[tuple[str, str, list[Job]]] = []
    for ts in TILESETS:
        first = tiles.LAYERS[ts].minzoom
        rows += [(ts, f"z{max(lo, first)}–z{hi}", band(ts, lo, hi)) for lo, hi in BANDS if hi >= first]
        rows.append((ts, zooms[ts], band(ts, 0, MAX_Z)))
    rows.append(("both", "all", fair))
    if broken:
        rows.append(("both", f"all, with the {len(broken)} excluded", jobs))
    medians: dict[str, dict[str, float]] = {}
    high: dict[str, dict[str, float]] = {}  # the z5–z8 band's medians, by tileset
    for ts, zs, pick in rows:
        f = {who: flat(who, pick) for who in SERVERS}
        m = {who: pct(v, 50) for who, v in f.items()}
        if zs in (zooms.get(ts), "all"):
            medians[ts] = m
        if zs == f"z{BANDS[1][0]}–z{BANDS[1][1]}":
            high[ts] = m
        lines.append(f"| {ts} | {zs} | {len(pick)} | " + " | ".join(
            f"{m[w]:.1f} / {pct(f[w], 95):.1f}" for w in SERVERS) +
            f" | {ratio(m['uncached'], m['tipg'])} | {ratio(m['shipped'], m['tipg'])} |")
    lines += ["", "Slowest tiles (median over the rounds): " + "; ".join(
        f"{WHO[w]} " + ", ".join(f"`{name(map(str, j))}` {ms:.0f} ms" for ms, j in sorted(
            ((pct(times[w, j], 50), j) for j in fair), reverse=True)[:3]) for w in SERVERS) + ".", ""]

    ip = out["inprocess"]
    archive_http = flat("archive", out["archive_jobs"])
    lines += ["### Prebuilt archive", "",
              f"In-process, in the benchmark's own Python: `geo_service.render.tiles.Archives(dir, database)"
              f".current(\"en\", "
              f"version)` then `.get(z, x, y)` (the gzipped tile bytes as the server sends them) "
              f"for the {ip['tiles']} `map` tiles of the sample at z0–z{ip['max_zoom']} "
              f"({ip['found']} non-empty), {args.inprocess_reps} passes, "
              f"{ip['n']:,} reads timed with `time.perf_counter_ns`: **median {ip['p50']:.4f} ms**, "
              f"p95 {ip['p95']:.4f} ms, p99 {ip['p99']:.4f} ms. Opening the archive (the first "
              f"`current()`: mapping the file and reading its directory) took {ip['open_ms']:.0f} ms, "
              "once per process and data version.", "",
              f"Over HTTP, the shipped server's `map` tiles of the sample at z0–z"
              f"{DEFAULT_ARCHIVE_ZOOM} (served straight from the archive), "
              f"{len(archive_http)} requests at concurrency 1: median {pct(archive_http, 50):.1f} ms, "
              f"p95 {pct(archive_http, 95):.1f} ms.", ""]

    lines += ["### Bytes per tile", "",
              "Sums over the tiles of each band. Uncompressed: the body with "
              "`Accept-Encoding: identity`; gzip: the body on the wire with `Accept-Encoding: gzip` "
              "(tipg compresses with its own middleware). Ours are the live-rendered tiles (the "
              "uncached server).", "",
              "| Tileset | Zooms | Tiles | Ours bytes | tipg bytes | Ours/tipg | Ours gzip | "
              "tipg gzip | Ours/tipg | Largest ours / tipg |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    byte_ratios: dict[tuple[str, str], float] = {}
    for ts, zs, pick in rows:
        if ts == "both":
            continue
        o = [insp["uncached", j] for j in pick]
        t = [insp["tipg", j] for j in pick]
        ob, tb = sum(x["bytes"] for x in o), sum(x["bytes"] for x in t)
        og, tg = sum(x["gzip"] for x in o), sum(x["gzip"] for x in t)
        if all(j[1] <= BANDS[0][1] for j in pick):  # the z0–z4 band
            byte_ratios[ts, "uncompressed"] = ob / tb
            byte_ratios[ts, "gzip"] = og / tg
        lines.append(f"| {ts} | {zs} | {len(pick)} | {ob:,} | {tb:,} | {ratio(ob, tb)} | {og:,} | "
                     f"{tg:,} | {ratio(og, tg)} | {max(x['bytes'] for x in o):,} / "
                     f"{max(x['bytes'] for x in t):,} |")
    differ = [j for j in fair if insp["uncached", j]["codes"] != insp["tipg", j]["codes"]]
    detail = "; ".join(f"`{name(map(str, j))}` ours {len(insp['uncached', j]['codes'])}, tipg "
                       f"{len(insp['tipg', j]['codes'])}" for j in differ[:8])
    shipped_same = sum(1 for j in jobs if (insp["shipped", j]["bytes"], insp["shipped", j]["codes"])
                       == (insp["uncached", j]["bytes"], insp["uncached", j]["codes"]))
    largest = max(jobs, key=lambda j: insp["uncached", j]["bytes"])
    lines += ["", f"Features (their `code` attribute) per tile: the same set from ours and tipg in "
              f"{len(fair) - len(differ)} of the {len(fair)} compared tiles"
              + (f"; a different one in {detail}" + (" …" if len(differ) > 8 else "") if differ else "")
              + f". The shipped server's tiles were byte-identical to the uncached server's in "
              f"{shipped_same} of {len(jobs)}. Our largest tile of the sample: "
              f"`{name(map(str, largest))}`, {insp['uncached', largest]['bytes']:,} bytes "
              f"(our cap is {tiles.MAX_TILE_BYTES:,}).", ""]

    lo = out["load"]
    lat = lo["latencies"]
    n_err = sum(lo["errors"].values())
    lines += [f"### {args.clients} concurrent clients, {args.load_seconds:g} s, ours as shipped", "",
              f"{args.clients} loops in one asyncio process on the same machine, each with its own "
              "`httpx.AsyncClient` and connection (`Accept-Encoding: gzip`), cycling through "
              f"{out['load_paths']} paths (the `map` tiles of the sample at z0–z{MAX_Z} and the "
              "`regions` tiles), each loop starting at a different place. The client shares the 2 "
              "cores with the server and PostGIS; latency includes waiting in the server's queue.",
              "", "| Requests | Requests/s | p50 (ms) | p95 (ms) | p99 (ms) | Max (ms) | Statuses | "
              "Errors |", "|---:|---:|---:|---:|---:|---:|---|---|",
              f"| {lo['requests']:,} | {lo['requests'] / lo['seconds']:.0f} | {pct(lat, 50):.1f} | "
              f"{pct(lat, 95):.1f} | {pct(lat, 99):.1f} | {max(lat):.1f} | "
              + ", ".join(f"{k}: {v:,}" for k, v in sorted(lo["statuses"].items())) + f" | {n_err}"
              + (" (" + ", ".join(f"{k}: {v}" for k, v in lo["errors"].items()) + ")" if n_err else "")
              + " |", ""]

    bad = Counter({k: v for k, v in out["statuses"].items() if k[1] not in OK})
    bad.update((who, x["status"]) for (who, _), x in insp.items() if x["status"] not in OK)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    u = {ts: medians[ts]["uncached"] / medians[ts]["tipg"] for ts in (*TILESETS, "both")}
    lines += [f"**Targets** (over the {len(fair)} compared tiles):", "",
              *(f"- Uncached median ≤ 1/5 of tipg's, {ts if ts != 'both' else 'both tilesets'}: "
                f"{verdict(u[ts] <= 0.2)} ({medians[ts]['uncached']:.1f} ms vs "
                f"{medians[ts]['tipg']:.1f} ms, {u[ts]:.2f}x)" for ts in (*TILESETS, "both")),
              *(f"- Uncached median at z{BANDS[1][0]}–z{BANDS[1][1]} ≤ 0.3x tipg's, {ts}: "
                f"{verdict(m['uncached'] <= 0.3 * m['tipg'])} ({m['uncached']:.1f} ms vs "
                f"{m['tipg']:.1f} ms, {m['uncached'] / m['tipg']:.2f}x)" for ts, m in high.items()),
              f"- Prebuilt median ≤ 1 ms in-process: {verdict(ip['p50'] <= 1)} "
              f"({ip['p50']:.4f} ms)",
              *(f"- ≤ 1/3 of tipg's bytes at z0–z4, {ts} (z{tiles.LAYERS[ts].minzoom}–z{BANDS[0][1]}), "
                f"{k}: {verdict(v <= 1 / 3)} ({v:.2f}x)"
                for (ts, k), v in byte_ratios.items()),
              f"- {args.clients} concurrent clients for {args.load_seconds:g} s with zero errors: "
              f"{verdict(n_err == 0)} ({n_err} errors in {lo['requests']:,} requests; p99 "
              f"{pct(lat, 99):.1f} ms)", "",
              "Answers other than 200/204 in the byte pass and the timed rounds: "
              + (", ".join(f"{WHO[w]} HTTP {s}: {n}" for (w, s), n in bad.items()) or "none")
              + "; 5xx responses and tracebacks in the server logs: "
              + ", ".join(f"{k} {v}" for k, v in problems.items()) + ".", END]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    harness.exit_on_sigterm()
    began = time.perf_counter()
    with harness.beside_tipg(args.geo_service, SCHEMA, VIEWS) as (dsn, tipg_python, servers):
        loads = [harness.load_average()]
        out = run(args, dsn, tipg_python, servers)
    loads.append(harness.load_average())
    problems = server_errors([log for _, _, log in servers])
    info, _ = harness.machine_info(dsn, tipg_python)
    section = report(info, out, args, harness.measured_at(), " → ".join(loads),
                     (time.perf_counter() - began) / 60, problems)
    harness.publish(args.output, section, START, END)


if __name__ == "__main__":
    main()
