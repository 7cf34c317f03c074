"""What the roster importers (members, initiatives) share: checks of cell values, the record of
an import (its id, result and report) and the history of the rows it changes."""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from geo_service.errors import Problem, RowProblem

CONFIDENCE = ("high", "medium", "low")


def slug(text: str) -> str:
    """Lower case, accents dropped, anything but letters and digits becomes '-' (Hangul stays)."""
    decomposed = unicodedata.normalize("NFKD", normalize_key(text))
    plain = unicodedata.normalize("NFC", "".join(c for c in decomposed
                                                 if unicodedata.category(c) != "Mn"))
    return re.sub(r"[^a-z0-9\u0080-\uffff]+", "-", plain).strip("-")


def normalize_key(text: str) -> str:
    return " ".join(text.casefold().split())


def split_list(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"\s+;\s+|;|\n", value) if part.strip()]


def valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and "." in parts.netloc and " " not in url


def parse_year(value: str, problems: list[Problem], file: str, row: int, column: str) -> int | None:
    if not value:
        return None
    this_year = dt.date.today().year
    if not re.fullmatch(r"\d{4}", value) or not 1800 <= int(value) <= this_year + 1:
        problems.append(RowProblem(file, row, column, f"{value!r} is not a year (1800 to {this_year + 1})"))
        return None
    return int(value)


@dataclass
class ImportResult:
    counts: dict[str, int]
    report: list[dict[str, Any]]
    notes: list[str]
    dry_run: bool
    import_id: int | None = None
    problems: list[Problem] = field(default_factory=list)


def open_import(conn: psycopg.Connection, kind: str, file_name: str, checksum: str,
                options: dict[str, Any]) -> int:
    """Record an import (its counts are set when it ends) and return its id."""
    row = conn.execute(
        "INSERT INTO imports (kind, file_name, checksum, options) VALUES (%s, %s, %s, %s) "
        "RETURNING id", (kind, file_name, checksum, Jsonb(options))).fetchone()
    assert row is not None  # INSERT ... RETURNING gives its one row
    return int(row[0])


def keep_history(conn: psycopg.Connection, table: str, row_id: str, operation: str,
                 previous: dict[str, Any] | None, import_id: int | None) -> None:
    """The version of a row an import (or an override) is about to change or remove."""
    conn.execute("INSERT INTO history (table_name, row_id, operation, previous, import_id) "
                 "VALUES (%s, %s, %s, %s, %s)",
                 (table, row_id, operation, Jsonb(previous), import_id))


def report_json(result: ImportResult) -> str:
    return json.dumps(result.report, ensure_ascii=False, indent=2, default=str)
