"""Map image benchmark: how long a presentation map takes to draw, warm, written to docs/benchmarks.md.

Runs in this process against the embedded (or DATABASE_URL) PostGIS, calling the same function the
CLI and GET /export/map.* call, with the server's result cache out of the way (each timed render
is drawn from scratch). "Warm" means fonts, projections and the process already loaded: one
untimed render of each case comes first. Targets from the issues: world 1920×1080 PNG ≤ 1.5 s,
world 4K (3840×2160) PNG ≤ 4 s, a territory's og:image (1200×630) ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import harness  # bench/ is not a package: Python puts the script's folder on sys.path

START, END = "<!-- bench:export:start -->", "<!-- bench:export:end -->"
CASES = [  # (region, preset, format)
    ("world", "slide-16x9", "png"), ("world", "slide-4k", "png"), ("world", "slide-16x9", "svg"),
    ("world", "slide-16x9", "pdf"), ("world", "a4-landscape", "pdf"), ("europe", "slide-16x9", "png"),
    ("europe", "slide-4k", "png"), ("KR", "slide-16x9", "png"), ("KR", "square", "svg"),
    # a territory page's og:image (territory=...), and a web map's view (bbox=..., Download)
    ("territory:kr-metropolitan-area-gwangju", "social", "png"),
    ("territory:es-municipality-barcelona", "social", "png"),
    ("bbox:-10,35,20,60", "slide-16x9", "png"),
]
TARGETS = {("world", "slide-16x9", "png"): 1.5, ("world", "slide-4k", "png"): 4.0,
           ("territory:kr-metropolitan-area-gwangju", "social", "png"): 1.5,
           ("territory:es-municipality-barcelona", "social", "png"): 1.5}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="timed renders per case")
    p.add_argument("--output", type=Path, default=harness.DOCS, help="Markdown file to update")
    p.add_argument("--geo-service", default=harness.GEO_SERVICE)
    return p.parse_args()


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    import matplotlib

    return {"CPUs (nproc)": str(os.cpu_count()), "CPU model": cpu,
            "Memory": f"{memory / 1024 / 1024:.1f} GiB",
            "OS": f"{platform.freedesktop_os_release().get('PRETTY_NAME', '?')} ({platform.machine()})",
            "Python / matplotlib": f"{platform.python_version()} / {matplotlib.__version__}"}


def main() -> None:
    args = parse_args()
    from geo_service.render import mapimage

    dsn = harness.database_url(args.geo_service)
    loads = [harness.load_average()]
    rows = []
    for region, preset, fmt in CASES:
        kind, _, value = region.rpartition(":")  # territory:ID, bbox:BOX or a region
        wanted = mapimage.parse({kind or "region": value, "preset": preset}, fmt)
        data, _ = mapimage.render(dsn, wanted)  # warm-up
        times = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            data, _ = mapimage.render(dsn, wanted)
            times.append(time.perf_counter() - began)
        rows.append((region, preset, fmt, wanted.width, wanted.height, statistics.median(times),
                     max(times), len(data)))
        print(f"{region} {preset} {fmt}: median {statistics.median(times):.2f} s", flush=True)
    loads.append(harness.load_average())
    lines = [START, "## Map images: time to draw", "",
             f"Measured {harness.measured_at()} UTC by `bench/export_benchmark.py`: `mapimage.render` (what "
             "`geo-service export` and `GET /export/map.*` call), in one process, warm (one untimed "
             f"render per case first), the result cache out of the way; {args.rounds} timed renders "
             "per case, each reading its data from PostGIS and drawing from scratch. There is no "
             "peer to compare with here: the targets are absolute, from the issue.", "",
             *harness.machine_table(machine(), " → ".join(loads), "Load average 1/5/15 min, start → end"),
             "| Region | Preset | Format | Pixels | Median (s) | Max (s) | Bytes |",
             "|---|---|---|---|---:|---:|---:|",
             *(f"| {r} | {p} | {f} | {w}×{h} | {m:.2f} | {x:.2f} | {b:,} |"
               for r, p, f, w, h, m, x, b in rows), "", "**Targets**:", ""]
    for (region, preset, fmt), limit in TARGETS.items():
        median = next(m for r, p, f, _, _, m, _, _ in rows if (r, p, f) == (region, preset, fmt))
        verdict = "met" if median <= limit else "**not met**"
        lines.append(f"- {region} {preset} {fmt.upper()} ≤ {limit:g} s warm: {verdict} "
                     f"(median {median:.2f} s)")
    lines += ["", "Repeated requests for the same image at the same data version are answered "
              "from the server's cache and are not timed here.", END]
    section = "\n".join(lines) + "\n"
    harness.publish(args.output, section, START, END)


if __name__ == "__main__":
    main()
