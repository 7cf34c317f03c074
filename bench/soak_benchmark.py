"""Soak: many clients for a minute mixing features, tiles, pages and map images, with one
database restart in the middle; written to docs/reliability.md.

One server (`geo-service serve`, settings as shipped) over the embedded PostGIS with the default
data. Every client loops: it picks a request (features 40 %, tiles 40 %, pages 15 %, map images
5 %, half of those with a title of their own so they are drawn afresh), sends it and records the
status and the time to the last byte. At --restart-at seconds the database is stopped
(`geo-service db stop`), left down for --down seconds and started again; a probe asks for one
region every 100 ms to time the recovery (from the database being back to the first 200).

Targets (issue 13): no 500 at all; 503 and 429 only during the outage or an overload; recovery
within 5 s; the server's RSS (with its image workers) grows less than 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import harness  # bench/ is not a package: Python puts the script's folder on sys.path
import httpx
import psycopg

START, END = "<!-- bench:soak:start -->", "<!-- bench:soak:end -->"
DOC = harness.ROOT / "docs/reliability.md"
KINDS = ("features", "tiles", "pages", "images")
WEIGHTS = (40, 40, 15, 5)
CITIES = ((2.35, 48.86), (126.98, 37.57), (-17.47, 14.72), (-99.13, 19.43), (-46.63, -23.55),
          (36.82, -1.29), (106.85, -6.21), (-73.57, 45.50), (-58.38, -34.60), (16.37, 48.21))
COUNTRIES = ("FR", "ES", "KR", "BR", "MX", "SE", "IT", "DE", "AR", "SN")
PAGES = ("/map", "/embed", "/", "/collections", "/api/stats", "/api", "/conformance",
         "/map?lang=fr", "/embed?lang=es")
PROBE = "/collections/regions/items?limit=1"


@dataclass(frozen=True)
class Result:
    kind: str
    began: float  # seconds since the start of the run
    seconds: float
    status: int  # 0: no answer (connection refused or reset, timeout)
    error: str = ""  # why there was no answer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=harness.HelpFormatter)
    parser.add_argument("--clients", type=int, default=100, help="Clients at once")
    parser.add_argument("--seconds", type=float, default=60, help="Length of the run")
    parser.add_argument("--restart-at", type=float, default=25,
                        help="When the database is stopped (seconds into the run)")
    parser.add_argument("--down", type=float, default=5, help="How long it stays down")
    parser.add_argument("--warmup", type=float, default=20,
                        help="Seconds of the same mix (no restart) before RSS is first read")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-write", action="store_true", help="Print, do not touch the docs")
    return parser.parse_args()


def tile(rng: random.Random) -> str:
    lon, lat = rng.choice(CITIES)
    lon += rng.uniform(-3, 3)
    lat += rng.uniform(-3, 3)
    z = rng.randint(0, 10)
    n = 2 ** z
    x = min(n - 1, int((lon + 180) / 360 * n))
    y = min(n - 1, int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))
    name = rng.choice(("map", "map", "map", "regions", "territories"))
    return f"/tiles/{name}/{z}/{x}/{y}.mvt?lang={rng.choice(('en', 'fr', 'es'))}"


def features(rng: random.Random, territories: list[str]) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return f"/collections/territories/items/{rng.choice(territories)}"
    if choice == 1:
        return f"/collections/territories/items?limit={rng.choice((10, 50, 100))}"
    if choice == 2:
        return f"/collections/regions/items?country={rng.choice(COUNTRIES)}&limit=20"
    lon, lat = rng.choice(CITIES)
    size = rng.choice((0.5, 2, 8))
    bbox = f"{lon - size:.2f},{lat - size:.2f},{lon + size:.2f},{lat + size:.2f}"
    collection = "regions" if choice == 3 else "territories"
    return f"/collections/{collection}/items?bbox={bbox}&limit=50"


def image(rng: random.Random, serial: int) -> str:
    title = f"Soak {serial}" if rng.random() < 0.5 else "Soak"  # half drawn afresh
    return f"/export/map.png?preset=square&title={title.replace(' ', '%20')}"


def logged_errors(log: Path) -> int:
    """5xx answers other than 503 (the outage's) and tracebacks in the server's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r'HTTP/1\.1" 5(?!03)\d\d', text)) + text.count("Traceback")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def run(base: str, args: argparse.Namespace, territories: list[str], seconds: float,
              restart_at: float | None, pid: int
              ) -> tuple[list[Result], dict[str, float], list[tuple[float, float, float]]]:
    """The mix for `seconds`, the database restarted at `restart_at` (None: never); the
    results, the restart's events and (time, server RSS, image workers' RSS) every 5 s."""
    results: list[Result] = []
    events: dict[str, float] = {}
    memory: list[tuple[float, float, float]] = []
    began = time.monotonic()
    end = began + seconds
    serial = [0]
    # idle connections expire before the server's keep-alive (5 s) would close them under a
    # request (a race every HTTP client meets; browsers retry, this client counts it)
    limits = httpx.Limits(max_connections=args.clients + 2,
                          max_keepalive_connections=args.clients + 2, keepalive_expiry=4)
    # the timeout is above the server's own limits (a map image may wait 60 s, then 503), so
    # every request gets the server's answer
    async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as client:

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < end:
                kind = rng.choices(KINDS, WEIGHTS)[0]
                if kind == "features":
                    path = features(rng, territories)
                elif kind == "tiles":
                    path = tile(rng)
                elif kind == "pages":
                    path = rng.choice(PAGES)
                else:
                    serial[0] += 1
                    path = image(rng, serial[0])
                sent = time.monotonic()
                try:
                    response = await client.get(path, headers={"Accept-Encoding": "gzip"})
                    await response.aread()
                    status, error = response.status_code, ""
                except httpx.HTTPError as exc:
                    status, error = 0, type(exc).__name__
                results.append(Result(kind, sent - began, time.monotonic() - sent, status, error))

        async def sample_memory() -> None:
            while time.monotonic() < end:
                server = harness.rss_mb(pid)
                memory.append((time.monotonic() - began, server,
                               harness.rss_mb(pid, children=True) - server))
                await asyncio.sleep(5)

        async def restart() -> None:
            if restart_at is None:
                return
            await asyncio.sleep(restart_at)
            events["stop"] = time.monotonic() - began
            await asyncio.to_thread(subprocess.run, [harness.GEO_SERVICE, "db", "stop"],
                                    check=True, capture_output=True)
            events["stopped"] = time.monotonic() - began
            await asyncio.sleep(args.down)
            events["start"] = time.monotonic() - began
            await asyncio.to_thread(subprocess.run, [harness.GEO_SERVICE, "db", "start"],
                                    check=True, capture_output=True)
            events["up"] = time.monotonic() - began
            while time.monotonic() < end:  # the probe: the first 200 after the database is back
                try:
                    if (await client.get(PROBE, timeout=5)).status_code == 200:
                        events["recovered"] = time.monotonic() - began
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

        await asyncio.gather(restart(), sample_memory(),
                             *(worker(args.seed * 1000 + i) for i in range(args.clients)))
    return results, events, memory


def main() -> None:
    args = parse_args()
    harness.exit_on_sigterm()
    dsn = harness.database_url(harness.GEO_SERVICE)
    with psycopg.connect(dsn) as conn:
        territories = [r[0] for r in conn.execute(
            "SELECT id FROM territories ORDER BY id").fetchall()]
    if not territories:
        raise SystemExit("no members loaded: run `make run` (or geo-service load-defaults) first")
    harness.WORK.mkdir(parents=True, exist_ok=True)
    base, proc, log = harness.start("soak", [harness.GEO_SERVICE, "serve"], {}, harness.ROOT)
    loads = harness.load_average()
    try:
        harness.wait_ready(base, proc, log)
        for path in (*PAGES, PROBE, image(random.Random(0), 0)):  # warm: each kind once
            httpx.get(base + path, timeout=60)
        asyncio.run(run(base, args, territories, args.warmup, None, proc.pid))
        results, events, memory = asyncio.run(run(base, args, territories, args.seconds,
                                                  args.restart_at, proc.pid))
        time.sleep(1)
        server = harness.rss_mb(proc.pid)
        memory.append((args.seconds + 1, server, harness.rss_mb(proc.pid, children=True) - server))
    finally:
        harness.stop(proc)
        subprocess.run([harness.GEO_SERVICE, "db", "start"], capture_output=True)
    loads += " → " + harness.load_average()
    section = report(args, results, events, memory, loads, dsn, log)
    if args.no_write:
        print(section)
    else:
        harness.publish(DOC, section, START, END)


def report(args: argparse.Namespace, results: list[Result], events: dict[str, float],
           memory: list[tuple[float, float, float]], loads: str, dsn: str, log: Path) -> str:
    totals = [server + workers for _, server, workers in memory]
    rss_before, rss_after, rss_top = totals[0], totals[-1], max(totals)
    outage_end = events.get("recovered", args.seconds)
    outage = (events["stop"], outage_end)

    def during(r: Result) -> bool:  # sent while the database was down or not yet recovered
        return outage[0] <= r.began + r.seconds and r.began <= outage[1]

    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    statuses = Counter(r.status for r in results)
    server_errors = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    unexpected = Counter(r.status for r in results if r.status in (0, 429, 503) and not during(r))
    lines = [
        START,
        "## Soak: a minute of mixed requests with a database restart",
        "",
        f"Measured {harness.measured_at()} UTC by `bench/soak_benchmark.py` (`--clients "
        f"{args.clients} --seconds {args.seconds:g} --restart-at {args.restart_at:g} --down "
        f"{args.down:g}`). The clients run in one Python process on the same machine as the "
        "server and PostGIS, so all three share its CPUs.",
        "",
        *harness.machine_table(harness.host() | harness.postgis(dsn), loads),
        f"{len(results):,} requests in {args.seconds:g} s ({len(results) / args.seconds:,.0f}/s). "
        "Latency is to the last byte, as the client saw it (queueing included).",
        "",
        "| Kind | Requests | Statuses | p50 (ms) | p95 (ms) | p99 (ms) | p95 outside the outage (ms) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        rows = by_kind.get(kind, [])
        times = [r.seconds * 1000 for r in rows]
        calm = [r.seconds * 1000 for r in rows if not during(r)]
        counted = ", ".join(f"{s or 'no answer'}: {n:,}" for s, n in
                            sorted(Counter(r.status for r in rows).items()))
        lines.append(f"| {kind} | {len(rows):,} | {counted} | {percentile(times, 50):,.0f} | "
                     f"{percentile(times, 95):,.0f} | {percentile(times, 99):,.0f} | "
                     f"{percentile(calm, 95):,.0f} |")
    recovery = events["recovered"] - events["up"] if "recovered" in events else None
    served = [r.began + r.seconds for r in results
              if r.status == 200 and r.kind != "images" and r.began > events["up"]]
    first = min(served) - events["up"] if served else None
    lines += [
        "",
        f"Database: stop asked at {events['stop']:.1f} s (down at {events['stopped']:.1f} s), "
        f"start asked at {events['start']:.1f} s, up at {events['up']:.1f} s; first 200 of the "
        "probe " + (f"at {events['recovered']:.1f} s: **recovery {recovery:.2f} s** after the "
                    "database was back" if recovery is not None else "never: **no recovery**")
        + (f" (the first 200 to any client's request sent after that came {first:.2f} s after "
           "it)." if first is not None else "."),
        "",
        "Requests answered 503 or 429, or not at all, outside the outage window: "
        + (", ".join(f"{s or 'no answer'}: {n:,}" for s, n in sorted(unexpected.items()))
           or "none") + ". 5xx other than 503: "
        + f"{server_errors}; in the server's log: {logged_errors(log)} 5xx other than 503 and "
        + "tracebacks.",
        "",
        "No answer, by cause: " + (", ".join(f"{e}: {n}" for e, n in sorted(Counter(
            r.error for r in results if r.status == 0).items())) or "none") + ". A 429 is the "
        "image queue refusing work beyond its bound (overload, by design); a 503 outside the "
        "window would be the pool or uvicorn's concurrency limit.",
        "",
        f"Memory, after {args.warmup:g} s of the same mix as a warm-up (the caches are bounded "
        "at 64 + 64 + 128 MB for responses, images and tiles, so they may still be filling):",
        "",
        "| Seconds | Server RSS (MB) | Image workers' RSS (MB) | Total (MB) |",
        "|---:|---:|---:|---:|",
        *(f"| {t:.0f} | {a:,.1f} | {b:,.1f} | {a + b:,.1f} |" for t, a, b in memory),
        "",
        f"Total RSS: {rss_before:,.1f} MB at the start, {rss_top:,.1f} MB at the highest "
        f"({rss_top - rss_before:+.1f} MB), {rss_after:,.1f} MB at the end. An image worker is "
        "replaced after 100 drawings (`max_tasks_per_child`), so the workers' figure drops "
        "when that happens.",
        "",
        "| Target | Result |",
        "|---|---|",
        f"| No 500 | {'met' if server_errors == 0 else '**not met**'} ({server_errors}) |",
        f"| 503/429 only during the outage or overload | "
        f"{'met' if not unexpected[503] and not unexpected[0] else '**not met**'} "
        f"({unexpected[429]:,} image requests refused with 429 by the full image queue, "
        f"{unexpected[503]:,} 503 and {unexpected[0]:,} unanswered outside the outage) |",
        f"| Recovery within 5 s | "
        f"{'met' if recovery is not None and recovery <= 5 else '**not met**'} |",
        f"| RSS growth under 100 MB | "
        f"{'met' if rss_top - rss_before < 100 else '**not met**'} "
        f"({rss_top - rss_before:+.1f} MB at the highest) |",
        END,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
