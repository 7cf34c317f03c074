"""docs/benchmarks.md: each benchmark owns the text between its own two markers."""

from __future__ import annotations

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
