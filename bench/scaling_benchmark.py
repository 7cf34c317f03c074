"""Scaling benchmark: the service at 1×, 10× and 100× the sample's members, written to
docs/benchmarks.md and docs/scaling.md.

Runs in a database of its own in the embedded cluster (made, migrated and dropped by this
script, with its own owner and reader roles, as the tests make theirs), never the dev database.
The default layers are loaded once, with the full US places layer (29,854 features: the default
manifest leaves out the 532 places of Puerto Rico and the island areas, see
boundaries/README.md; here a copy of boundaries/ without that `drop` is used), then the sample
roster (1×). Each further scale imports a synthetic roster (`geo-service members synthetic`,
labelled synthetic, on real boundaries) so that sample + synthetic = N × the sample.

At each scale: the roster's import time, the PMTiles archive's build time, and two servers in
turn (one uvicorn worker each): uncached (response, tile and image caches off, no archive) and
as shipped (caches on, the archive). Items p50/p95 over typical territory queries, tile p50 over
tiles holding eight cities at z2, z4 and z6, a world map image, requests/s of one process at 8
concurrent clients, and the servers' resident memory. The last column is 100× over 1× against
the issue's target (≤ 3×).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import harness  # bench/ is not a package: Python puts the script's folder on sys.path
import httpx
import psycopg
from psycopg import sql

from geo_service import db, roles
from geo_service.campaign.reference import load_reference
from geo_service.settings import Settings

START, END = "<!-- bench:scaling:start -->", "<!-- bench:scaling:end -->"
SCALING_DOC = harness.ROOT / "docs/scaling.md"
BOUNDARIES = harness.WORK / "scaling-boundaries"  # boundaries/ with the full US places layer
TILES = harness.WORK / "scaling-tiles"  # the archive the shipped server reads
EMPTY = harness.WORK / "scaling-empty"  # no archive: the uncached server renders every tile
PACKAGES = harness.ROOT / ".data/packages"  # the registry archives `make run` fetched
ITEMS = [  # typical reads of the members, as the map, a partner's script or QGIS make them
    ("Territories, first page of 100", "/collections/territories/items?limit=100"),
    ("Territories of Europe with boundaries, 200",
     "/collections/territories/items?region=europe&geometry=boundary&limit=200"),
    ("Territories in a US bbox, 500", "/collections/territories/items?bbox=-125,24,-66,50&limit=500"),
    ("Campaign stats", "/api/stats"),
]
CITIES = [(2.35, 48.86), (13.40, 52.52), (-74.0, 40.71), (-87.63, 41.88), (-46.63, -23.55),
          (126.98, 37.57), (36.82, -1.29), (-99.13, 19.43)]
ZOOMS = (2, 4, 6)
MAP_IMAGE = "/export/map.png"
THROUGHPUT = {"items": ITEMS[0][1], "tile": "/tiles/map/4/8/5.mvt?lang=en"}  # the Paris z4 tile
CLIENTS = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=harness.HelpFormatter)
    parser.add_argument("--scales", default="1,10,100",
                        help="Multiples of the sample's members to measure, comma-separated.")
    parser.add_argument("--requests", type=int, default=20, help="Requests per items query.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds over the tile sample.")
    parser.add_argument("--images", type=int, default=3, help="Map images per server.")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="Seconds of each requests/s measurement.")
    parser.add_argument("--max-zoom", type=int, default=6, help="The archive's highest zoom.")
    parser.add_argument("--seed", type=int, default=1, help="The synthetic rosters' seed.")
    parser.add_argument("--keep-database", action="store_true",
                        help="Leave the run's database (and its roles) for EXPLAIN ANALYZE; "
                             "its URL is printed. Drop it yourself afterwards.")
    parser.add_argument("--output", type=Path, default=harness.DOCS, help="Markdown file to update.")
    parser.add_argument("--scaling-doc", type=Path, default=SCALING_DOC,
                        help="The capacity plan whose tables this run replaces.")
    return parser.parse_args()


# ------------------------------------------------------------------------------ the database
def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@contextmanager
def scratch_database(keep: bool = False) -> Iterator[tuple[str, str]]:
    """A database of this run's own in the embedded cluster, with its owner and reader roles:
    (owner URL, reader URL), migrated; dropped with its roles at the end, even on failure."""
    admin = db.admin_url(Settings(database_url=None))
    token = f"{os.getpid()}_{secrets.token_hex(3)}"
    name = f"geo_bench_scaling_{token}"
    owner = roles.Role(f"geo_bench_owner_{token}", secrets.token_urlsafe(16))
    reader = roles.Role(f"geo_bench_reader_{token}", secrets.token_urlsafe(16))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    failed = True
    try:
        with psycopg.connect(_with_database(admin, name)) as conn:
            roles.provision(conn, owner, reader, 60_000)
        dsn = roles.url_as(_with_database(admin, name), owner)
        db.upgrade(dsn)
        yield dsn, roles.url_as(_with_database(admin, name), reader)
        failed = False
    finally:
        if keep and not failed:
            print(f"kept: database {name}, roles {owner.name} and {reader.name}; owner's URL "
                  f"{roles.url_as(_with_database(admin, name), owner)}")
        else:
            drop(admin, name, owner, reader)


def drop(admin: str, name: str, *made: roles.Role) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        for role in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))


def full_us_boundaries() -> Path:
    """boundaries/ copied, the US places manifest without its `drop` of the island areas."""
    shutil.rmtree(BOUNDARIES, ignore_errors=True)
    shutil.copytree(harness.ROOT / "boundaries", BOUNDARIES)
    manifest = BOUNDARIES / "census-us-places.toml"
    lines = manifest.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("drop = ")]
    assert len(kept) == len(lines) - 1, "the US places manifest no longer drops by a `drop` line"
    manifest.write_text("".join(kept))
    return BOUNDARIES


def cli(env: dict[str, str], *args: str) -> float:
    """Seconds `geo-service ARGS` took; exits with its output if it fails."""
    began = time.perf_counter()
    done = subprocess.run([harness.GEO_SERVICE, *args], env={**os.environ, **env},
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"geo-service {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - began


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def import_sample(env: dict[str, str], dsn: str) -> float:
    """The sample campaign data: its themes and sections, then its members' import, timed (the
    1× roster import, every row matched by name), then its initiatives (`load-defaults`)."""
    folder = Settings(database_url=dsn).sample_dir
    with psycopg.connect(dsn) as conn:
        load_reference(conn, folder / "rights_themes.csv", folder / "uclg_sections.csv")
    seconds = cli(env, "members", "import", str(folder / "human_rights_territories.csv"))
    cli(env, "load-defaults")  # the boundaries and members are in: the initiatives
    return seconds


# ------------------------------------------------------------------------------ requests
def tile_paths() -> list[str]:
    paths = []
    for z in ZOOMS:
        n = 2 ** z
        for lon, lat in CITIES:
            y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
            path = f"/tiles/map/{z}/{int((lon + 180) / 360 * n)}/{int(y)}.mvt?lang=en"
            if path not in paths:
                paths.append(path)
    return paths


def timed(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = time.perf_counter() - began
    if response.status_code not in (200, 204):
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return elapsed * 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def rate(base: str, path: str, seconds: float) -> float:
    """Requests/s of `CLIENTS` keep-alive clients asking `path` for `seconds`."""
    done = [0]
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        conn = harness.RawConnection(base)
        try:
            while time.perf_counter() < stop_at:
                status, _ = await conn.get(path, "Accept: application/geo+json\r\n")
                if status not in (200, 204):
                    raise SystemExit(f"{path}: {status}")
                done[0] += 1
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done[0] / (time.perf_counter() - began)


def measure(base: str, proc: subprocess.Popen, args: argparse.Namespace, warm: bool
            ) -> dict[str, float]:
    """One server's figures: items p50/p95 (all queries pooled), tile p50, map image median,
    requests/s of an items query and a tile, and its memory."""
    found: dict[str, float] = {}
    gzip = {"Accept": "application/geo+json", "Accept-Encoding": "gzip"}
    with httpx.Client(base_url=base, timeout=300) as client:
        if warm:  # the shipped server as visitors meet it: each answer asked once before
            for _, path in ITEMS:
                client.get(path, headers=gzip)
            for path in tile_paths():
                client.get(path, headers={"Accept-Encoding": "gzip"})
            client.get(MAP_IMAGE)
        items = [timed(client, path, gzip) for _, path in ITEMS for _ in range(args.requests)]
        found["items p50"], found["items p95"] = pct(items, 50), pct(items, 95)
        tiles = [timed(client, path, {"Accept-Encoding": "gzip"})
                 for _ in range(args.rounds) for path in tile_paths()]
        found["tile p50"] = pct(tiles, 50)
        images = [timed(client, MAP_IMAGE) for _ in range(args.images)]
        found["map image"] = statistics.median(images)
    found["items/s"] = asyncio.run(rate(base, THROUGHPUT["items"], args.seconds))
    found["tiles/s"] = asyncio.run(rate(base, THROUGHPUT["tile"], args.seconds))
    found["rss"] = harness.rss_mb(proc.pid, children=True)
    return found


def serve(name: str, env: dict[str, str], args: argparse.Namespace, warm: bool
          ) -> dict[str, float]:
    base, proc, log = harness.start(f"scaling-{name}", [harness.GEO_SERVICE, "serve"], env,
                                    harness.ROOT)
    try:
        harness.wait_ready(base, proc, log, timeout=180)
        return measure(base, proc, args, warm)
    finally:
        harness.stop(proc)
        if harness.server_problems(log):
            raise SystemExit(f"server errors in {log}")


# ------------------------------------------------------------------------------ one scale
def run_scale(scale: int, base_members: int, env: dict[str, str], dsn: str,
              args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    if scale > 1:
        roster = harness.WORK / f"synthetic-{scale}x.csv"
        synthetic = scale * base_members - base_members
        cli(env, "members", "synthetic", str(roster), "--count", str(synthetic),
            "--seed", str(args.seed))
        figures["roster import"] = cli(env, "members", "import", str(roster))
        figures["import per 1000"] = figures["roster import"] / synthetic * 1000
    figures["members"] = count(dsn, "SELECT count(*) FROM territories")
    shutil.rmtree(TILES, ignore_errors=True)
    TILES.mkdir(parents=True)
    figures["archive build"] = cli({**env, "GEO_TILES_DIR": str(TILES)}, "tiles", "build",
                                   "--max-zoom", str(args.max_zoom))
    uncached = serve(f"{scale}x-uncached", {**env, "GEO_TILES_DIR": str(EMPTY),
                                            "GEO_RESPONSE_CACHE_MB": "0",
                                            "GEO_TILE_CACHE_MB": "0", "GEO_IMAGE_CACHE_MB": "0"},
                     args, warm=False)
    shipped = serve(f"{scale}x-shipped", {**env, "GEO_TILES_DIR": str(TILES)}, args, warm=True)
    figures |= {f"{k} uncached": v for k, v in uncached.items()}
    figures |= {f"{k} shipped": v for k, v in shipped.items()}
    print(f"{scale}×: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)
    return figures


ROWS = [  # (label, figure key, unit format)
    ("Members", "members", "{:,.0f}"),
    ("Roster import (s): the sample's at 1× (matched by name), then the synthetic roster's "
     "(sample + synthetic = N×; matched by code)", "roster import", "{:.1f}"),
    ("Roster import per 1,000 rows (s)", "import per 1000", "{:.1f}"),
    ("Archive build, z0–z{z} (s)", "archive build", "{:.1f}"),
    ("Items p50, uncached (ms)", "items p50 uncached", "{:.1f}"),
    ("Items p95, uncached (ms)", "items p95 uncached", "{:.1f}"),
    ("Items p50, cached (ms)", "items p50 shipped", "{:.1f}"),
    ("Items p95, cached (ms)", "items p95 shipped", "{:.1f}"),
    ("Tile p50, uncached (ms)", "tile p50 uncached", "{:.1f}"),
    ("Tile p50, prebuilt archive + cache (ms)", "tile p50 shipped", "{:.1f}"),
    ("World map image, uncached (ms)", "map image uncached", "{:.0f}"),
    ("World map image, image cache on (ms)", "map image shipped", "{:.0f}"),
    ("Items requests/s, one process, uncached", "items/s uncached", "{:.0f}"),
    ("Items requests/s, one process, cached", "items/s shipped", "{:.0f}"),
    ("Tile requests/s, one process, uncached", "tiles/s uncached", "{:.0f}"),
    ("Tile requests/s, one process, archive + cache", "tiles/s shipped", "{:.0f}"),
    ("Server memory (RSS, MB), uncached", "rss uncached", "{:.0f}"),
    ("Server memory (RSS, MB), shipped", "rss shipped", "{:.0f}"),
]
HIGHER_IS_BETTER = ("items/s uncached", "items/s shipped", "tiles/s uncached", "tiles/s shipped")


def table(results: dict[int, dict[str, float]], max_zoom: int) -> list[str]:
    scales = sorted(results)
    first, last = scales[0], scales[-1]
    head = "| Figure | " + " | ".join(f"{s}×" for s in scales) + f" | {last}× / {first}× | Target ≤ 3× |"
    lines = [head, "|---|" + "---:|" * len(scales) + "---:|---|"]
    for label, key, fmt in ROWS:
        cells = [fmt.format(results[s][key]) if key in results[s] else "–" for s in scales]
        ratio, verdict = "", ""
        if key in results[first] and key in results[last] and results[first][key] and key != "members":
            r = results[last][key] / results[first][key]
            ratio = f"{r:.2f}×"
            cost = 1 / r if key in HIGHER_IS_BETTER else r
            verdict = "met" if cost <= 3 else "**over**"
        lines.append(f"| {label.format(z=max_zoom)} | " + " | ".join(cells)
                     + f" | {ratio} | {verdict} |")
    return lines


def main() -> None:
    args = parse_args()
    harness.exit_on_sigterm()
    scales = sorted({int(s) for s in args.scales.split(",")})
    if not scales or scales[0] != 1:
        raise SystemExit("--scales must start at 1 (the sample): the ratios are against it")
    harness.WORK.mkdir(parents=True, exist_ok=True)
    EMPTY.mkdir(parents=True, exist_ok=True)
    loads = harness.load_average()
    began = time.perf_counter()
    with scratch_database(args.keep_database) as (dsn, reader):
        env = {"DATABASE_URL": dsn, "GEO_READ_DATABASE_URL": reader,
               "GEO_BOUNDARIES_DIR": str(full_us_boundaries()),
               "GEO_PACKAGE_CACHE": str(PACKAGES)}
        info = harness.host() | harness.postgis(dsn)
        defaults = cli(env, "boundaries", "load-defaults")
        us_places = count(dsn, "SELECT count(*) FROM boundaries WHERE source = 'census-us-places'")
        boundaries = count(dsn, "SELECT count(*) FROM boundaries")
        sample = import_sample(env, dsn)
        base_members = count(dsn, "SELECT count(*) FROM territories")
        results: dict[int, dict[str, float]] = {}
        for scale in scales:
            results[scale] = run_scale(scale, base_members, env, dsn, args)
        results[1]["roster import"] = sample
        results[1]["import per 1000"] = sample / base_members * 1000
    loads += " → " + harness.load_average()
    minutes = (time.perf_counter() - began) / 60
    body = [
        f"Measured {harness.measured_at()} UTC by `python bench/scaling_benchmark.py` "
        f"({minutes:.0f} min), in a database of its own. The default layers with the full US "
        f"places layer ({us_places:,} places, {boundaries:,} boundaries in all) loaded in "
        f"**{defaults:.0f} s** (`geo-service boundaries load-defaults`). The sample has "
        f"{base_members} members; 10× and 100× add a synthetic roster "
        f"(`geo-service members synthetic`, seed {args.seed}). One uvicorn worker per server; "
        f"items: {len(ITEMS)} queries × {args.requests} requests, gzip; tiles: "
        f"{len(tile_paths())} tiles (z{', z'.join(map(str, ZOOMS))} around 8 cities) × "
        f"{args.rounds}; requests/s: {CLIENTS} keep-alive clients for {args.seconds:g} s "
        f"on `{THROUGHPUT['items']}` and `{THROUGHPUT['tile']}`. Uncached: response, tile and "
        "image caches off, no archive; cached/shipped: the caches on (warmed) and the archive.",
        "",
        *table(results, args.max_zoom),
        "",
        *harness.machine_table(info, loads),
    ]
    section = "\n".join([START, "## Scaling: 1×, 10× and 100× the members", "", *body, END]) + "\n"
    harness.publish(args.output, section, START, END)
    harness.write_section(args.scaling_doc, "\n".join([START, *body, END]) + "\n", START, END)


if __name__ == "__main__":
    main()
