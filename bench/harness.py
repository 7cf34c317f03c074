"""What the benchmarks share: paths, the docs/benchmarks.md section writer, --help, the database
URL, the machine table, our servers on loopback ports and tipg beside them.

bench/ is not a package: each script runs by path (`python bench/X.py`, as `make bench` does), so
Python puts bench/ first on sys.path and `import harness` finds this file. No script imports
another script; whatever more than one of them needs is here.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/.work"  # tipg's venv, server logs, tile archives (not in git)
DOCS = ROOT / "docs/benchmarks.md"
GEO_SERVICE = str(Path(sys.executable).with_name("geo-service"))  # our CLI, beside this Python
ACCEPT = {"Accept": "application/geo+json"}
LOAD_ROW = "Load average 1/5/15 min, start → end (other work skews timings)"


# ------------------------------------------------------------------------------------ docs
def write_section(path: Path, section: str, start: str, end: str) -> None:
    """docs/benchmarks.md: each benchmark owns the text between its own two markers. Replace the
    text between `start` and `end` (or append the section), keeping the rest of the file byte for
    byte."""
    text = path.read_bytes().decode() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text += ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "") + section
    path.write_bytes(text.encode())


def publish(path: Path, section: str, start: str, end: str) -> None:
    """The end of every run: the section into `path` between its markers, and on stdout."""
    write_section(path, section, start, end)
    print(section)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help with defaults shown and the description as written."""


def measured_at() -> str:
    """When a section says it was measured: now, UTC, to the minute."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


def exit_on_sigterm() -> None:
    """Clean up on SIGTERM as on Ctrl-C: `finally` blocks and context managers run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# ------------------------------------------------------------------------------------ machine
def database_url(geo_service: str) -> str:
    """The URL `geo-service db url` prints (it starts the embedded PostGIS if need be)."""
    return subprocess.run([geo_service, "db", "url"], capture_output=True, text=True,
                          check=True).stdout.strip()


def load_average() -> str:
    """The 1/5/15-minute load averages, as the docs print them."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _read(path: str, pattern: str) -> str:
    try:
        match = re.search(pattern, Path(path).read_text(), re.M)
    except OSError:
        return "unknown"
    return match.group(1).strip() if match else "unknown"


def host() -> dict[str, str]:
    """The first rows of a machine table: CPUs, CPU model, memory and OS."""
    mem = _read("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    osr = _read("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)')
    return {
        "CPUs (nproc)": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "CPU model": _read("/proc/cpuinfo", r"^model name\s*:\s*(.+)$"),
        "Memory": f"{int(mem) / 1024**2:.1f} GiB" if mem.isdigit() else mem,
        "OS": f"{osr} ({platform.machine()})",
    }


def postgis(dsn: str) -> dict[str, str]:
    """The machine-table rows for the database: PostgreSQL's version, and PostGIS with the GEOS and
    PROJ it was built with."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT version(), postgis_full_version()").fetchone()
    pg, full = row if row else ("unknown", "unknown")
    parts = dict(re.findall(r'(\w+)="([^"]+)"', full))
    return {"PostgreSQL": pg.split(" on ")[0],
            "PostGIS": ", ".join(f"{k} {parts[k].split()[0]}" for k in ("POSTGIS", "GEOS", "PROJ")
                                 if k in parts) or full}


def machine_table(info: dict[str, str], loads: str, load_row: str = LOAD_ROW) -> list[str]:
    """The Markdown machine table of a section, the load averages last, and a blank line."""
    return ["| Machine | |", "|---|---|", *(f"| {k} | {v} |" for k, v in info.items()),
            f"| {load_row} | {loads} |", ""]


def machine_info(dsn: str, tipg_python: Path) -> tuple[dict[str, str], str]:
    """The machine and software of a run beside tipg; and how many region geometries have a
    coordinate finer than 5 decimals (what our 4 can save against tipg's up to 9)."""
    with psycopg.connect(dsn) as conn:
        finer, total = conn.execute(
            "SELECT count(*) FILTER (WHERE ST_AsGeoJSON(geom) <> ST_AsGeoJSON(geom, 5)), count(*) "
            "FROM boundaries WHERE level = 'region'"
        ).fetchone()  # type: ignore[misc]
    tipg = subprocess.run([str(tipg_python), "-c", "import tipg; print(tipg.__version__)"],
                          capture_output=True, text=True).stdout.strip()
    return host() | postgis(dsn) | {
        "Servers": f"geo-service on Python {platform.python_version()}; tipg {tipg}, own venv",
    }, f"{finer} of {total}"


# ------------------------------------------------------------------------------------ servers
def start(name: str, cmd: list[str], env: dict[str, str], cwd: Path
          ) -> tuple[str, subprocess.Popen, Path]:
    """Start a server on a free loopback port in its own process group: (base URL, process, log
    bench/.work/features-NAME.log)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    log = WORK / f"features-{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "--port", port], env={**os.environ, **env}, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return f"http://127.0.0.1:{port}", proc, log


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Until GET /collections answers 200; exit with the server's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/collections", headers=ACCEPT, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"server at {base} not ready (exit code {proc.poll()}); log {log}:\n{log.read_text()}")


def server_problems(log: Path) -> int:
    """5xx responses and tracebacks in a server's log (0 if there is no log)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r'HTTP/1\.1" 5\d\d', text)) + text.count("Traceback")


# ------------------------------------------------------------------------------------ tipg
# tipg runs on the same HTTP server stack as ours (uvicorn with uvloop and httptools, the
# versions geo-service pins), so the ratios compare the applications, not their servers
TIPG_PACKAGES = ("tipg==1.6.1", "uvicorn==0.54.0", "httptools==0.9.0", "uvloop==0.23.0")


def ensure_tipg() -> Path:
    """tipg's Python, in its own venv under bench/.work/ (made on first run, brought to
    TIPG_PACKAGES when they change)."""
    venv = WORK / "tipg-venv"
    stamp = venv / "packages.txt"
    if not (venv / "bin/python").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text() != "\n".join(TIPG_PACKAGES):
        subprocess.run([str(venv / "bin/pip"), "install", "-q", *TIPG_PACKAGES], check=True)
        stamp.write_text("\n".join(TIPG_PACKAGES))
    return venv / "bin/python"


def tipg_command(tipg_python: Path) -> list[str]:
    """tipg served by uvicorn: one worker, uvloop and httptools as ours (access log on, as ours)."""
    return [str(tipg_python), "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1",
            "--workers", "1", "--loop", "uvloop", "--http", "httptools"]


@contextmanager
def scratch_views(conn: psycopg.Connection, schema: str, views: dict[str, str]) -> Iterator[None]:
    """A scratch schema of views for tipg to publish, dropped afterwards even on failure."""
    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    try:
        for name, body in views.items():
            conn.execute(f"CREATE VIEW {schema}.{name} AS {body}")
        yield
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


Servers = list[tuple[str, subprocess.Popen, Path]]


@contextmanager
def beside_tipg(geo_service: str, schema: str, views: dict[str, str]
                ) -> Iterator[tuple[str, Path, Servers]]:
    """The database URL, tipg's Python and a list for the servers a benchmark starts: tipg's
    scratch views exist, and the servers run, until the block ends."""
    dsn = database_url(geo_service)
    WORK.mkdir(parents=True, exist_ok=True)
    tipg_python = ensure_tipg()
    servers: Servers = []
    with psycopg.connect(dsn, autocommit=True) as conn, scratch_views(conn, schema, views):
        try:
            yield dsn, tipg_python, servers
        finally:
            for _, proc, _ in servers:
                stop(proc)


# ------------------------------------------------------------------------------------ processes
def rss_mb(pid: int, children: bool = False) -> float:
    """Resident memory of a process in MB (with its child processes when asked), from /proc."""
    pids = [pid]
    if children:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in found.split()]
    total = 0
    for one in pids:
        rss = _read(f"/proc/{one}/status", r"^VmRSS:\s+(\d+)")
        total += int(rss) if rss.isdigit() else 0
    return total / 1024


# ------------------------------------------------------------------------------------ HTTP
class RawConnection:
    """One keep-alive HTTP/1.1 connection that only reads the status and skips the body: a
    client light enough that the server, not the client, is what a flood of requests measures.
    Bodies must carry Content-Length (no chunked responses)."""

    def __init__(self, base: str) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: str = "") -> tuple[int, int]:
        """(status, body bytes) of GET `path`; reconnects when the server closed the socket."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                                  f"{headers}\r\n".encode())
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
                continue
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    raise ValueError(f"{path}: chunked response")
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await self.reader.readexactly(length)
            if close:
                self.close()
            return int(head[9:12]), length
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
