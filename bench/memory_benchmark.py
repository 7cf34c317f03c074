"""Memory under a flood of distinct empty tiles, written to docs/reliability.md.

A server (`geo-service serve`, one uvicorn process, caches as shipped) answers distinct tiles
of open ocean in the South Pacific (no land, no member: every one is empty, 204) from many
keep-alive connections. No tile is asked twice, so no cache can answer from memory and nothing
may be kept per request. The server's resident memory (RSS) is read from /proc after a warm-up
and every --sample requests; the target (issue 13) is flat within ±50 MB over a million.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator

import harness  # bench/ is not a package: Python puts the script's folder on sys.path
import psycopg

START, END = "<!-- bench:memory:start -->", "<!-- bench:memory:end -->"
DOC = harness.ROOT / "docs/reliability.md"
OCEAN = (-140.0, -50.0, -90.0, -35.0)  # lon/lat box of open sea (south of Pitcairn and Easter Island)
FIRST_ZOOM = 12


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=harness.HelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="Distinct tiles asked")
    parser.add_argument("--warmup", type=int, default=20_000,
                        help="Distinct tiles asked before the first RSS reading")
    parser.add_argument("--clients", type=int, default=32, help="Keep-alive connections at once")
    parser.add_argument("--sample", type=int, default=50_000, help="Read RSS every N requests")
    parser.add_argument("--no-write", action="store_true", help="Print, do not touch the docs")
    return parser.parse_args()


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def ocean_tiles() -> Iterator[str]:
    """Every tile of the OCEAN box, zoom by zoom from FIRST_ZOOM: distinct paths, endlessly."""
    for z in range(FIRST_ZOOM, 23):
        x0, y0 = tile_xy(OCEAN[0], OCEAN[3], z)
        x1, y1 = tile_xy(OCEAN[2], OCEAN[1], z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                yield f"/tiles/map/{z}/{x}/{y}.mvt"


async def flood(base: str, paths: Iterator[str], count: int, clients: int,
                statuses: Counter[int]) -> float:
    """Ask `count` paths over `clients` connections; returns the seconds it took."""
    left = [count]

    async def client() -> None:
        conn = harness.RawConnection(base)
        try:
            while left[0] > 0:
                left[0] -= 1
                status, _ = await conn.get(next(paths), "Accept-Encoding: gzip\r\n")
                statuses[status] += 1
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - began


def main() -> None:
    args = parse_args()
    harness.exit_on_sigterm()
    dsn = harness.database_url(harness.GEO_SERVICE)
    with psycopg.connect(dsn) as conn:
        if not conn.execute("SELECT count(*) FROM boundaries").fetchone()[0]:  # type: ignore[index]
            raise SystemExit("no boundaries loaded: run `make run` (or geo-service load-defaults)")
    info = harness.host() | harness.postgis(dsn)  # read first: the report needs no database
    harness.WORK.mkdir(parents=True, exist_ok=True)
    base, proc, log = harness.start("memory", [harness.GEO_SERVICE, "serve"], {}, harness.ROOT)
    loads = harness.load_average()
    try:
        harness.wait_ready(base, proc, log)
        paths = ocean_tiles()
        statuses: Counter[int] = Counter()
        asyncio.run(flood(base, paths, args.warmup, args.clients, statuses))
        start_rss = harness.rss_mb(proc.pid)
        samples = [(0, start_rss)]
        seconds = 0.0
        done = 0
        while done < args.requests:
            step = min(args.sample, args.requests - done)
            seconds += asyncio.run(flood(base, paths, step, args.clients, statuses))
            done += step
            samples.append((done, harness.rss_mb(proc.pid)))
            print(f"{done:>9,} tiles  {done / seconds:,.0f}/s  RSS {samples[-1][1]:,.1f} MB",
                  flush=True)
    finally:
        harness.stop(proc)
    loads += " → " + harness.load_average()
    problems = harness.server_problems(log)
    rss = [r for _, r in samples]
    growth = rss[-1] - start_rss
    verdict = "met" if abs(growth) <= 50 and max(rss) - start_rss <= 50 and set(statuses) == {204} \
        else "**not met**"
    lines = [
        START,
        "## Memory: a flood of distinct empty tiles",
        "",
        f"Measured {harness.measured_at()} UTC by `bench/memory_benchmark.py` "
        f"(`--requests {args.requests} --clients {args.clients}`).",
        "",
        *harness.machine_table(info, loads),
        f"{done:,} distinct tiles of open sea (z{FIRST_ZOOM} and up; none asked twice, so no "
        f"cache answers them), after a warm-up of {args.warmup:,}, from {args.clients} keep-alive "
        f"connections: {done / seconds:,.0f} tiles/s. Statuses: "
        + ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items()))
        + f"; {problems} 5xx or tracebacks in the server's log.",
        "",
        "| Requests after warm-up | Server RSS (MB) |",
        "|---:|---:|",
        *(f"| {n:,} | {r:,.1f} |" for n, r in samples),
        "",
        f"RSS from {start_rss:,.1f} MB to {rss[-1]:,.1f} MB ({growth:+.1f} MB; highest "
        f"{max(rss):,.1f} MB). Target ±50 MB: {verdict}.",
        END,
    ]
    section = "\n".join(lines) + "\n"
    if args.no_write:
        print(section)
    else:
        harness.publish(DOC, section, START, END)


if __name__ == "__main__":
    main()
