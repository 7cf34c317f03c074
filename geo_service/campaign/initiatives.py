"""Importing initiatives: validate every row, find its territory, upsert with history.

Columns as in initiatives.csv: required `territory_name` (or `territory_id`), `country_iso2`,
`title`, `status`, `themes` (slugs separated by `;`), `source`, `confidence`; optional `id`,
`year_started`, `summary`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from geo_service.campaign.rows import (
    CONFIDENCE,
    ImportResult,
    keep_history,
    open_import,
    parse_year,
    slug,
    split_list,
    valid_url,
)
from geo_service.campaign.tabular import read_table
from geo_service.errors import LoadError, Problem, RowProblem
from geo_service.manifests import file_sha256

STATUSES = ("active", "ended", "unknown")
COLUMNS = ("id", "territory_id", "territory_name", "country_iso2", "title", "year_started",
           "status", "themes", "summary", "source", "confidence")


def _territories(conn: psycopg.Connection) -> dict[tuple[str, str], list[str]]:
    index: dict[tuple[str, str], list[str]] = {}
    for key, name, country in conn.execute("SELECT id, name, iso3166_1 FROM territories"):
        index.setdefault((" ".join(name.casefold().split()), country), []).append(key)
    return index


def import_initiatives(dsn: str, path: Path, *, dry_run: bool = False, skip_invalid: bool = False,
                       delimiter: str = ",", sheet: str | None = None) -> ImportResult:
    table = read_table(path, set(COLUMNS), delimiter=delimiter, sheet=sheet)
    header = set(table.rows[0]) if table.rows else set()
    missing = [c for c in ("country_iso2", "title", "status", "themes", "source", "confidence")
               if c not in header]
    if "territory_name" not in header and "territory_id" not in header:
        missing.append("territory_name")
    if missing:
        raise LoadError([RowProblem(table.file, 1, c, "required column missing") for c in missing])
    problems = list(table.problems)
    report: list[dict[str, Any]] = []
    counts = {"rows": len(table.rows), "inserted": 0, "updated": 0, "unchanged": 0, "invalid": 0}
    with psycopg.connect(dsn) as conn:
        themes = {r[0] for r in conn.execute("SELECT slug FROM rights_themes")}
        territories = _territories(conn)
        known_ids = {k for keys in territories.values() for k in keys}
        valid: list[tuple[int, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for number, row in zip(table.row_numbers, table.rows, strict=True):
            errors: list[str] = [p.message for p in table.problems if p.feature == number]

            def bad(column: str, message: str, errors: list[str] = errors, number: int = number) -> None:
                errors.append(f"{column}: {message}")
                problems.append(RowProblem(table.file, number, column, message))

            for column in ("title", "status", "themes", "source", "confidence"):
                if not row.get(column):
                    bad(column, "is required")
            country = row.get("country_iso2", "").upper()
            territory = row.get("territory_id") or None
            if territory and territory not in known_ids:
                bad("territory_id", f"{territory!r} is not a known territory")
            elif not territory:
                name = row.get("territory_name", "")
                found = territories.get((" ".join(name.casefold().split()), country), [])
                if len(found) == 1:
                    territory = found[0]
                elif found:
                    bad("territory_name", f"{name!r} ({country}) names {len(found)} territories: "
                                          f"give territory_id ({', '.join(found)})")
                else:
                    bad("territory_name", f"{name!r} ({country}) is not a known territory; "
                                          "import it with `members import` first")
            status = row.get("status", "").lower()
            if status and status not in STATUSES:
                bad("status", f"{status!r} is not one of {', '.join(STATUSES)}")
            confidence = row.get("confidence", "").lower()
            if confidence and confidence not in CONFIDENCE:
                bad("confidence", f"{confidence!r} is not high, medium or low")
            row_themes = [t.strip().lower() for t in row.get("themes", "").split(";") if t.strip()]
            for theme in row_themes:
                if theme not in themes:
                    bad("themes", f"{theme!r} is not a known rights theme slug")
            sources = split_list(row.get("source", ""))
            for url in sources:
                if not valid_url(url):
                    bad("source", f"{url!r} is not an http(s) URL")
            year_problems: list[Problem] = []
            year = parse_year(row.get("year_started", ""), year_problems, table.file, number,
                              "year_started")
            for p in year_problems:
                bad("year_started", p.message)
            key = row.get("id") or (f"{territory}--{slug(row.get('title', ''))}" if territory else "")
            if key and key in seen:
                bad("title", f"duplicate of row {seen[key]} (same territory and title)")
            elif key:
                seen[key] = number
            report.append({"row": number, "territory": territory, "title": row.get("title"),
                           "outcome": "invalid" if errors else "valid", "errors": errors})
            if not errors:
                valid.append((number, {
                    "id": key, "territory_id": territory, "title": row["title"],
                    "summary": row.get("summary") or None, "year_started": year,
                    "status": status, "source": " ; ".join(sources), "confidence": confidence,
                    "themes": sorted(set(row_themes)),
                }))
            else:
                counts["invalid"] += 1
        if problems and not skip_invalid:
            raise LoadError(problems)
        with conn.transaction() as tx:
            import_id = open_import(conn, "initiatives", path.name, file_sha256(path),
                                    {"dry_run": dry_run, "skip_invalid": skip_invalid})
            outcomes = {n: _upsert(conn, values, import_id) for n, values in valid}
            for entry in report:
                if entry["row"] in outcomes:
                    entry["outcome"] = outcomes[entry["row"]]
                    counts[entry["outcome"]] += 1
            conn.execute("UPDATE imports SET counts = %s WHERE id = %s", (Jsonb(counts), import_id))
            if dry_run:
                raise psycopg.Rollback(tx)
    return ImportResult(counts, report, table.notes, dry_run, None if dry_run else import_id,
                        problems)


def _upsert(conn: psycopg.Connection, v: dict[str, Any], import_id: int) -> str:
    old_row = conn.execute(
        "SELECT to_jsonb(i) || jsonb_build_object('themes', coalesce((SELECT jsonb_agg(theme_slug "
        "ORDER BY theme_slug) FROM initiative_themes WHERE initiative_id = i.id), '[]'::jsonb)) "
        "FROM initiatives i WHERE id = %s", (v["id"],)).fetchone()
    old = old_row[0] if old_row else None
    fields = ("territory_id", "title", "summary", "year_started", "status", "source", "confidence",
              "themes")
    if old is not None and all(json.dumps(old.get(f)) == json.dumps(v[f]) for f in fields):
        return "unchanged"
    if old is not None:
        keep_history(conn, "initiatives", v["id"], "update", old, import_id)
    conn.execute(
        "INSERT INTO initiatives (id, territory_id, title, summary, year_started, status, source, "
        "confidence, import_id) VALUES (%(id)s, %(territory_id)s, %(title)s, %(summary)s, "
        "%(year_started)s, %(status)s, %(source)s, %(confidence)s, %(import_id)s) "
        "ON CONFLICT (id) DO UPDATE SET territory_id = EXCLUDED.territory_id, "
        "title = EXCLUDED.title, summary = EXCLUDED.summary, year_started = EXCLUDED.year_started, "
        "status = EXCLUDED.status, source = EXCLUDED.source, confidence = EXCLUDED.confidence, "
        "import_id = EXCLUDED.import_id, updated_at = now()", {**v, "import_id": import_id})
    conn.execute("DELETE FROM initiative_themes WHERE initiative_id = %s", (v["id"],))
    for theme in v["themes"]:
        conn.execute("INSERT INTO initiative_themes VALUES (%s, %s)", (v["id"], theme))
    return "updated" if old is not None else "inserted"
