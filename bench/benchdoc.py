"""docs/benchmarks.md: each benchmark owns the text between its own two markers."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between `start` and `end` (or append the section), keeping the rest of
    the file byte for byte."""
    text = path.read_bytes().decode() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text += ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "") + section
    path.write_bytes(text.encode())


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help with defaults shown and the description as written."""


def database_url(geo_service: str) -> str:
    """The URL `geo-service db url` prints (it starts the embedded PostGIS if need be)."""
    return subprocess.run([geo_service, "db", "url"], capture_output=True, text=True,
                          check=True).stdout.strip()


def load_average() -> str:
    """The 1/5/15-minute load averages, as the docs print them."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())
