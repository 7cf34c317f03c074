"""Map page benchmark: weight and time to interactive of /map and /embed, written to docs/benchmarks.md.

Starts our server on a free loopback port (one uvicorn worker, as `make run`) and drives Debian's
headless Chromium with Playwright (never a downloaded browser). Every page is loaded cold, each
load in a fresh browser context (empty HTTP cache), the pages taking turns so background load
hits them alike; one unrecorded warm-up load per page first, so the server's own caches are warm
and what is measured is a first visit by a browser. Per load: every response, with its body bytes
on the wire (`request.sizes()`: the encoded body, gzip where the server compresses) and its
header bytes, split into what comes before the base map (everything not under /tiles/) and the
vector tiles of the first view; requests to any other host are blocked by a route and counted;
time to interactive is measured from the start of `page.goto` to `window.HRMapReady === true` on
the Python clock, and, in the page, as `performance.now()` at the moment the flag is set (an init
script records it), next to the navigation timing's DOMContentLoaded and load ends; the tiles
are waited for with Playwright's network idle.

Requests to other hosts: the warm-up loads block them with `context.route` and count them. A route
turns the HTTP cache of its context off in Playwright, which would send the map's repeated tile
fetches (answered by the cache in a real browser) to the server again, so the timed loads use no
route: the browser sends every other host to a closed local proxy port (loopback is never
proxied), and each request to another host is counted from the request events. The server stops
and the browser closes, even on failure.
"""

import argparse
import importlib.metadata
import platform
import re
import shutil
import socket
import statistics
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import harness  # bench/ is not a package: Python puts the script's folder on sys.path
import httpx
from playwright.sync_api import Browser, Route, sync_playwright

START, END = "<!-- bench:page:start -->", "<!-- bench:page:end -->"
PAGES = (("/map", 1280, 800), ("/embed", 640, 480), ("/map?lang=fr", 1280, 800),
         ("/territories/kr-metropolitan-area-gwangju", 1280, 800))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUDGET_BYTES = 300_000  # "300 KB", read as 300,000 bytes (the stricter of 1,000 and 1,024)
PAGE_BUDGET_BYTES = 150_000  # a territory's page: "150 KB or less on the wire before tiles"


def budget(path: str) -> int:
    return PAGE_BUDGET_BYTES if path.startswith("/territories/") else BUDGET_BYTES
INTERACTIVE_MS = 1500.0
TIMEOUT_MS = 30_000
# Records performance.now() when the page sets window.HRMapReady, and the main thread's long tasks
# (injected over CDP, so the page's CSP does not apply; the page reads and writes the flag as before).
READY_CLOCK = """
(() => {
  window.__benchLongTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) { window.__benchLongTasks.push([e.startTime, e.duration]); }
    }).observe({type: "longtask", buffered: true});
  } catch (e) { window.__benchLongTasks = null; }
  let ready;
  Object.defineProperty(window, "HRMapReady", {
    configurable: true,
    get() { return ready; },
    set(value) {
      ready = value;
      if (value === true && window.__benchReadyAt === undefined) {
        window.__benchReadyAt = performance.now();
      }
    },
  });
})();
"""
PAGE_CLOCKS = """() => {
  const nav = performance.getEntriesByType("navigation")[0] || {};
  return {ready: window.__benchReadyAt ?? null, origin: performance.timeOrigin,
          dcl: nav.domContentLoadedEventEnd ?? null, load: nav.loadEventEnd ?? null,
          ttfb: nav.responseStart ?? null, long: window.__benchLongTasks};
}"""
ACCESS = re.compile(r'"(?:GET|HEAD|POST) (\S+) HTTP/[\d.]+" (\d{3})')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=harness.HelpFormatter,
        epilog="Needs the default data loaded (`make bench` runs `geo-service load-defaults` first) "
               "and Debian's chromium (`make test` installs it). Server log: "
               "bench/.work/features-page.log. Example, a quick check that writes elsewhere: "
               "bench/page_benchmark.py --loads 2 --output /tmp/p.md")
    p.add_argument("--loads", type=int, default=10, help="cold loads per page")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed loads per page first, with other hosts blocked by a route")
    p.add_argument("--output", type=Path, default=harness.DOCS,
                   help="Markdown file to write the section to")
    p.add_argument("--geo-service", default=harness.GEO_SERVICE, help="our CLI")
    p.add_argument("--chromium", default=shutil.which("chromium"), help="the browser to drive")
    args = p.parse_args()
    if not args.chromium:
        p.error("Debian's chromium is missing (`make test` installs it); no browser is downloaded")
    if args.loads < 1 or args.warmup < 1:
        p.error("--loads and --warmup must be at least 1 (the warm-up loads hold the route check)")
    return args


# ------------------------------------------------------------------------------------ one load
def is_tile(url: str) -> bool:
    return urlsplit(url).path.startswith("/tiles/")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def server_requests(log: Path, offset: int) -> list[tuple[str, int]]:
    """(path, status) of the requests the server logged after `offset`."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    return [(m.group(1), int(m.group(2))) for m in ACCESS.finditer(text)]


def one_load(browser: Browser, base: str, path: str, width: int, height: int, log: Path,
             route: bool) -> dict:
    """One cold load in a fresh context: timings, every response, requests to other hosts (blocked
    by a route if `route`, which turns the context's HTTP cache off), errors."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  service_workers="block")
    try:
        offsite: list[str] = []
        routed: list[str] = []

        def block(r: Route) -> None:
            routed.append(r.request.url)
            r.abort()

        if route:
            context.route(re.compile(rf"^(?!{re.escape(base)}/|data:|blob:)"), block)
        context.on("request", lambda r: None if r.url.startswith((base + "/", "data:", "blob:"))
                   else offsite.append(r.url))
        context.add_init_script(READY_CLOCK)
        page = context.new_page()
        responses: list = []
        errors: list[str] = []
        failed: list[str] = []
        page.on("response", lambda r: responses.append(r))
        page.on("console", lambda m: errors.append(f"{m.text} ({path_of(m.location.get('url', ''))})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: failed.append(f"{path_of(r.url)}: {r.failure}")
                if r.url.startswith(base) else None)
        offset = log.stat().st_size
        t0 = time.perf_counter()
        page.goto(base + path, wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_function("() => window.HRMapReady === true", timeout=TIMEOUT_MS)
        interactive = (time.perf_counter() - t0) * 1000
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
        idle = (time.perf_counter() - t0) * 1000
        clocks = page.evaluate(PAGE_CLOCKS)
        resources = []
        tiles_done = 0.0
        for r in responses:
            request = r.request
            sizes = request.sizes()
            tile = is_tile(r.url)
            body = sizes["responseBodySize"]  # encoded; negative when the browser's cache answered
            timing = request.timing
            if tile and timing["responseEnd"] >= 0:
                tiles_done = max(tiles_done, timing["startTime"] + timing["responseEnd"] - clocks["origin"])
            resources.append({
                "url": r.url, "path": path_of(r.url), "type": request.resource_type, "status": r.status,
                "tile": tile, "cached": body < 0, "wire": max(body, 0),
                "headers": sizes["responseHeadersSize"] if body >= 0 else 0,
                "encoding": r.headers.get("content-encoding", "none"),
                # Chromium hands back no body for the tiles' fetch() responses: sized later
                "plain": None if tile or body < 0 else len(r.body()),
            })
        served = server_requests(log, offset)
        return {"interactive": interactive, "idle": idle, "clocks": clocks, "tiles_done": tiles_done,
                "resources": resources, "offsite": offsite, "routed": routed, "errors": errors,
                "failed": failed, "served": served}
    finally:
        context.close()


# ------------------------------------------------------------------------------------ summary
def summarize(path: str, loads: list[dict], warm: list[dict], tile_plain: dict[str, int]) -> dict:
    """Per page: figures over the loads, and the breakdown of the first recorded load."""
    def before(load: dict) -> list[dict]:
        return [r for r in load["resources"] if not r["tile"]]

    def tiles(load: dict, cached: bool) -> list[dict]:
        return [r for r in load["resources"] if r["tile"] and r["cached"] == cached]

    first = loads[0]
    fetched = tiles(first, False)
    zooms: dict[int, list[int]] = {}
    for r in fetched:
        zooms.setdefault(int(urlsplit(r["url"]).path.split("/")[3]), []).append(r["wire"])
    timed = [ld for ld in loads if ld["clocks"]["long"] is not None and ld["clocks"]["ready"] is not None]
    long = [ld["clocks"]["long"] for ld in timed]
    bad = Counter(f"{r['path']} → {r['status']}" for ld in loads for r in ld["resources"]
                  if not 200 <= r["status"] < 400)
    bad.update(f"{p} → {s} (server log)" for ld in loads for p, s in ld["served"] if s >= 400)
    return {
        "path": path, "n": len(loads),
        "interactive": [ld["interactive"] for ld in loads],
        "ready": [ld["clocks"]["ready"] for ld in loads if ld["clocks"]["ready"] is not None],
        "dcl": [ld["clocks"]["dcl"] for ld in loads if ld["clocks"]["dcl"]],
        "load": [ld["clocks"]["load"] for ld in loads if ld["clocks"]["load"]],
        "ttfb": [ld["clocks"]["ttfb"] for ld in loads if ld["clocks"]["ttfb"]],
        "tiles_done": [ld["tiles_done"] for ld in loads],
        "idle": [ld["idle"] for ld in loads],
        "before_wire": sorted({sum(r["wire"] for r in before(ld)) for ld in loads}),
        "before_headers": sorted({sum(r["wire"] + r["headers"] for r in before(ld)) for ld in loads}),
        "before_plain": sorted({sum(r["plain"] or 0 for r in before(ld)) for ld in loads}),
        "before_requests": sorted({len(before(ld)) for ld in loads}),
        "tile_wire": sorted({sum(r["wire"] for r in tiles(ld, False)) for ld in loads}),
        "tile_plain": sum(tile_plain.get(r["url"], 0) for r in fetched),
        "tile_fetched": sorted({len(tiles(ld, False)) for ld in loads}),
        "tile_cached": sorted({len(tiles(ld, True)) for ld in loads}),
        "tile_largest": max((r["wire"] for r in fetched), default=0),
        "zooms": dict(sorted(zooms.items())),
        "long_total": [sum(d for _, d in tasks) for tasks in long],
        "long_max": [max((d for _, d in tasks), default=0) for tasks in long],
        "long_after": [sum(d for t, d in ld["clocks"]["long"] if t + d > ld["clocks"]["ready"])
                       for ld in timed],
        "served": sorted({len(ld["served"]) for ld in loads}),
        "served_paths": {p.split("?")[0] for ld in loads for p, _ in ld["served"] if not is_tile(p)},
        "offsite": [u for ld in loads for u in ld["offsite"]],
        "routed": [u for ld in warm for u in ld["routed"] + ld["offsite"]],  # one URL may be both
        "warm": len(warm),
        "errors": Counter(e for ld in loads for e in ld["errors"]),
        "failed": Counter(f for ld in loads for f in ld["failed"]),
        "bad": bad,
        "resources": before(first),
    }


def machine(chromium: str) -> dict[str, str]:
    return harness.host() | {
        "Browser": f"Chromium {chromium} (Debian's, headless), driven by Playwright "
                   f"{importlib.metadata.version('playwright')}",
        "Server": f"geo-service on Python {platform.python_version()}, one uvicorn worker, HTTP/1.1",
    }


# ------------------------------------------------------------------------------------ report
def kb(n: float) -> str:
    return f"{n / 1000:,.1f} KB"


def nbytes(values: list[int]) -> str:
    """One value, or the largest and the spread when loads differed."""
    text = f"{values[-1]:,} B ({kb(values[-1])})"
    return text if len(values) == 1 else f"{text}; {values[0]:,}–{values[-1]:,} over the loads"


def count(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} / {max(values):,.0f}" if values else "n/a"


def report(info: dict, pages: list[dict], args: argparse.Namespace, when: str, loads: str,
           minutes: float, problems: int) -> str:
    cols = [p["path"] for p in pages]
    view = {path: f"{w}×{h}" for path, w, h in PAGES}

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [START, "## Map page weight and time to interactive", "",
             f"Measured {when} UTC by `bench/page_benchmark.py` ({minutes:.1f} min): our server on a "
             "loopback port as `make run` starts it, Debian's headless Chromium driven by Playwright. "
             f"{args.loads} cold loads per page, each in a fresh browser context (empty HTTP cache), the "
             f"pages taking turns, after {args.warmup} untimed warm-up load(s) per page (so the "
             "server's caches are warm: this is a first visit by a browser, not a server restart). "
             "Bytes are the response bodies as sent (`request.sizes()`: gzip where the server "
             "compresses), \"with headers\" adds the response headers; \"before tiles\" is everything "
             "not under `/tiles/`. Times: *interactive* runs from the start of `page.goto` to "
             "`window.HRMapReady === true` seen by `wait_for_function` on the Python clock, so it "
             "also holds Playwright's round trips and any main-thread work that delays its "
             "animation-frame poll; *in page* is `performance.now()` (from navigation start) when the "
             "page sets the flag; the tiles are done at the last `/tiles/` response, on the page's "
             "clock. Requests to other hosts: the warm-up loads block them with `context.route` and "
             "count them; the timed loads use no route (in Playwright a route turns the context's HTTP "
             "cache off, which would send the map's repeated tile fetches to the server again), the "
             "browser being pointed at a closed proxy port for every host but loopback, and count them "
             "from the request events. KB = 1,000 bytes.", "",
             *harness.machine_table(info, loads),
             "| Measure | " + " | ".join(f"`{c}`" for c in cols) + " |",
             "|---|" + "---:|" * len(cols),
             row("Viewport", [view[c] for c in cols]),
             row("Loads", [str(p["n"]) for p in pages]),
             row("**Interactive, median / max (ms)**", [f"**{ms(p['interactive'])}**" for p in pages]),
             row("`HRMapReady` in page (`performance.now()`), median / max (ms)",
                 [ms(p["ready"]) for p in pages]),
             row("First byte of the page (`responseStart`), median / max (ms)",
                 [ms(p["ttfb"]) for p in pages]),
             row("DOMContentLoaded end, median / max (ms)", [ms(p["dcl"]) for p in pages]),
             row("Load event end, median / max (ms)", [ms(p["load"]) for p in pages]),
             row("First-view tiles received, median / max (ms)", [ms(p["tiles_done"]) for p in pages]),
             row("Network idle (Playwright: + 500 ms quiet), median / max (ms)",
                 [ms(p["idle"]) for p in pages]),
             row("Main-thread long tasks (> 50 ms) until network idle, total, median / max (ms)",
                 [ms(p["long_total"]) for p in pages]),
             row("… of which after `HRMapReady`, median / max (ms)", [ms(p["long_after"]) for p in pages]),
             row("Longest task, median / max (ms)", [ms(p["long_max"]) for p in pages]),
             row("**Bytes before tiles, on the wire**", [f"**{nbytes(p['before_wire'])}**" for p in pages]),
             row("Bytes before tiles, with headers", [nbytes(p["before_headers"]) for p in pages]),
             row("Bytes before tiles, uncompressed", [nbytes(p["before_plain"]) for p in pages]),
             row("Requests before tiles (seen by Playwright)", [count(p["before_requests"]) for p in pages]),
             row("Tiles fetched for the first view, by zoom (count, bytes on the wire)",
                 ["; ".join(f"z{z}: {len(b)}, {sum(b):,} B" for z, b in p["zooms"].items()) for p in pages]),
             row("Tiles fetched from the server", [count(p["tile_fetched"]) for p in pages]),
             row("Tile fetches answered by the browser's cache (repeats)",
                 [count(p["tile_cached"]) for p in pages]),
             row("Tile bytes for the first view, on the wire", [nbytes(p["tile_wire"]) for p in pages]),
             row("Tile bytes, uncompressed", [f"{p['tile_plain']:,} B" for p in pages]),
             row("Largest tile, on the wire", [f"{p['tile_largest']:,} B" for p in pages]),
             row("Requests reaching the server (its access log)", [count(p["served"]) for p in pages]),
             row("Requests to other hosts, timed loads (closed proxy)",
                 [str(len(p["offsite"])) for p in pages]),
             row("Requests to other hosts, warm-up loads (blocked by `context.route`)",
                 [f"{len(set(p['routed']))} in {p['warm']} load(s)" for p in pages]),
             row("Console errors and uncaught exceptions", [str(sum(p["errors"].values())) for p in pages]),
             ""]

    # resources before tiles, one row per resource, largest (on /map) first
    keyed: dict[str, dict[str, dict]] = {}
    for p in pages:
        for r in p["resources"]:
            key = "page HTML (`document`)" if r["type"] == "document" else f"`{r['path'].split('?')[0]}`"
            keyed.setdefault(key, {})[p["path"]] = r
    order = sorted(keyed, key=lambda k: -max(r["wire"] for r in keyed[k].values()))
    lines += ["### What loads before the tiles, largest first (first recorded load)", "",
              "Cells: bytes on the wire / uncompressed. Static files carry a version in their query "
              "string and `Cache-Control: immutable`; the page HTML holds the map data as inline JSON.",
              "", "| Resource | Type | Encoding | " + " | ".join(f"`{c}`" for c in cols) + " |",
              "|---|---|---|" + "---:|" * len(cols)]
    for key in order:
        any_r = next(iter(keyed[key].values()))
        cells = [f"{keyed[key][c]['wire']:,} / " + (f"{keyed[key][c]['plain']:,}" if keyed[key][c]['plain']
                                                       is not None else "?") if c in keyed[key] else "–"
                 for c in cols]
        lines.append(f"| {key} | {any_r['type']} | {any_r['encoding']} | " + " | ".join(cells) + " |")
    lines.append("")

    worst_bytes = max(max(p["before_wire"]) for p in pages)
    worst_bytes_page = max(pages, key=lambda p: max(p["before_wire"]))["path"]
    every = [x for p in pages for x in p["interactive"]]
    med = max(statistics.median(p["interactive"]) for p in pages)
    med_page = max(pages, key=lambda p: statistics.median(p["interactive"]))["path"]
    top, top_page = max((max(p["interactive"]), p["path"]) for p in pages)
    in_page = [x for p in pages for x in p["ready"]]
    in_page_med = max(statistics.median(p["ready"]) for p in pages if p["ready"])
    if max(every) <= INTERACTIVE_MS:
        interactive = "met"
    elif med <= INTERACTIVE_MS:
        interactive = "met at the median, **not met** at the max"
    else:
        interactive = "**not met**"
    offsite = sum(len(p["offsite"]) + len(set(p["routed"])) for p in pages)
    hosts = sorted({urlsplit(u).netloc for p in pages for u in p["offsite"] + p["routed"]})
    maps = [p for p in pages if budget(p["path"]) == BUDGET_BYTES]
    worst_bytes = max(max(p["before_wire"]) for p in maps)
    worst_bytes_page = max(maps, key=lambda p: max(p["before_wire"]))["path"]
    weight = "met" if worst_bytes <= BUDGET_BYTES else "**not met**"
    lines += ["**Targets** (worst page; every load of every page counts):", "",
              f"- First load of the maps ≤ 300 KB before tiles: {weight} ({kb(worst_bytes)}, "
              f"`{worst_bytes_page}`; "
              + ", ".join(f"`{p['path']}` {kb(max(p['before_wire']))}" for p in maps) + ")",
              *(f"- A territory's page ≤ 150 KB before tiles: "
                f"{'met' if max(p['before_wire']) <= PAGE_BUDGET_BYTES else '**not met**'} "
                f"(`{p['path']}` {kb(max(p['before_wire']))})"
                for p in pages if budget(p["path"]) == PAGE_BUDGET_BYTES),
              f"- Interactive ≤ 1.5 s on localhost: {interactive} (median {med:,.0f} ms on `{med_page}`, "
              f"max {top:,.0f} ms on `{top_page}`, over {len(every)} loads; in page, when the flag is set: "
              f"median {in_page_med:,.0f} ms, max {max(in_page):,.0f} ms)",
              f"- Requests to other hosts: {offsite}"
              + ("" if offsite == 0 else f" (**not met**: {', '.join(hosts)})"), ""]

    notes = []
    for p in pages:
        for what, counter in (("console errors", p["errors"]), ("failed requests", p["failed"]),
                              ("answers ≥ 400", p["bad"])):
            if counter:
                notes.append(f"`{p['path']}`, {what}: " + "; ".join(
                    f"{msg} ({n}× in {p['n']} loads)" for msg, n in counter.most_common()))
    unseen = {p["path"]: sorted(p["served_paths"] - {urlsplit(r["url"]).path for r in p["resources"]})
              for p in pages}
    lines += ["Seen on the pages: " + ("; ".join(notes) if notes else "no console errors, failed "
              "requests or error answers") + ". Requests the server logged that Playwright does not "
              "report (not counted in the bytes above): " + ("; ".join(
                  f"`{c}` " + ", ".join(f"`{u}`" for u in us) for c, us in unseen.items() if us) or "none")
              + f". 5xx answers and tracebacks in the server log: {problems}.", END]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace, base: str, log: Path) -> tuple[list[dict], str]:
    """The loads, pages taking turns: summaries per page, and the browser's version."""
    recorded: dict[str, list[dict]] = {path: [] for path, _, _ in PAGES}
    warm: dict[str, list[dict]] = {path: [] for path, _, _ in PAGES}
    with sync_playwright() as p, socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        browser = p.chromium.launch(executable_path=args.chromium, args=[
            *CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{dead.getsockname()[1]}"])
        try:
            version = browser.version
            for i in range(args.warmup + args.loads):
                for path, width, height in PAGES:
                    load = one_load(browser, base, path, width, height, log, route=i < args.warmup)
                    if i < args.warmup:
                        warm[path].append(load)
                    else:
                        recorded[path].append(load)
                        print(f"{path} load {i - args.warmup + 1}/{args.loads}: interactive "
                              f"{load['interactive']:.0f} ms, before tiles "
                              f"{sum(r['wire'] for r in load['resources'] if not r['tile']):,} B",
                              flush=True)
        finally:
            browser.close()
    tile_urls = {r["url"] for loads in recorded.values() for r in loads[0]["resources"]
                 if r["tile"] and not r["cached"]}
    with httpx.Client(timeout=60) as client:  # decoded sizes: Chromium gives no tile bodies
        tile_plain = {u: len(client.get(u).raise_for_status().content) for u in sorted(tile_urls)}
    return [summarize(path, loads, warm[path], tile_plain) for path, loads in recorded.items()], version


def main() -> None:
    args = parse_args()
    harness.exit_on_sigterm()
    began = time.perf_counter()
    dsn = harness.database_url(args.geo_service)
    harness.WORK.mkdir(parents=True, exist_ok=True)
    loads = [harness.load_average()]
    base, proc, log = harness.start("page", [args.geo_service, "serve"], {"DATABASE_URL": dsn},
                                    harness.ROOT)
    try:
        harness.wait_ready(base, proc, log)
        pages, version = run(args, base, log)
    finally:
        harness.stop(proc)
    loads.append(harness.load_average())
    problems = harness.server_problems(log)
    section = report(machine(version), pages, args, harness.measured_at(), " → ".join(loads),
                     (time.perf_counter() - began) / 60, problems)
    harness.publish(args.output, section, START, END)


if __name__ == "__main__":
    main()
