"""Importing territories (members): validate every row, match, then upsert with history.

Column layout (CSV, XLSX or JSON; names as in human_rights_territories.csv, aliases in brackets):
required `name`, `country_iso2` [country], `level` [kind], `commitment_kind`, `source` [sources],
`confidence`; optional `id`, `local_name`, `year`, `joined_on`, `commitment`, `campaign_wave`,
`status`, `website`, `sections`, `boundary_code`, `lon`, `lat`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from geo_service.campaign.matching import Match, Matcher
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
from geo_service.campaign.tabular import Table, read_table
from geo_service.domain import valid_country
from geo_service.errors import LoadError, Problem, RowProblem
from geo_service.manifests import file_sha256

if TYPE_CHECKING:  # the boundaries pipeline (GDAL, pandas...) only when boundaries are removed
    from geo_service.load.pipeline import RemoveResult

KIND_ALIASES = {
    "municipality": "municipality", "city": "municipality", "town": "municipality",
    "metropolitan area": "metropolitan-area", "metropolitan-area": "metropolitan-area",
    "metropolitan city": "metropolitan-area",
    "region": "region", "region-province-state": "region", "province": "region",
    "state": "region", "department": "region",
    "association": "association",
}
COMMITMENT_KINDS = ("campaign-signatory", "declared", "charter", "ordinance", "grassroots-pdhre",
                    "other-commitment", "engagement-only")
COLUMNS = {  # our field -> accepted column names
    "id": ("id",), "name": ("name",), "local_name": ("local_name",),
    "country": ("country_iso2", "country"), "kind": ("level", "kind"),
    "commitment_kind": ("commitment_kind",), "commitment": ("commitment",),
    "year": ("year",), "joined_on": ("joined_on",), "campaign_wave": ("campaign_wave",),
    "status": ("status",), "website": ("website",), "sections": ("sections", "uclg_sections"),
    "sources": ("source", "sources"), "confidence": ("confidence",),
    "boundary_code": ("boundary_code",), "lon": ("lon", "longitude"), "lat": ("lat", "latitude"),
}
REQUIRED = ("name", "country", "kind", "commitment_kind", "sources", "confidence")
STORED = ("name", "local_name", "kind", "iso3166_1", "sections", "commitment_kind", "commitment",
          "year", "joined_on", "campaign_wave", "status", "website", "sources", "confidence",
          "boundary_level", "boundary_code", "match_outcome", "match_method", "match_score",
          "match_candidates", "override_boundary_code", "lon", "lat")


def territory_key(name: str, country: str, kind: str) -> str:
    """The stable key of a territory without an explicit id: country, kind and name."""
    return f"{country.lower()}-{kind}-{slug(name)}"


def _column_names(table: Table) -> dict[str, str]:
    header = set(table.rows[0]) if table.rows else set()
    return {ours: next((c for c in names if c in header), names[0]) for ours, names in COLUMNS.items()}


@dataclass
class MemberRow:
    row: int
    key: str
    values: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    match: Match | None = None
    outcome: str = ""
    changed: list[str] = field(default_factory=list)


def validate_members(table: Table, sections: set[str]) -> tuple[list[MemberRow], list[Problem]]:
    """Every row checked; returns rows (with their errors) and every problem found."""
    problems = list(table.problems)
    columns = _column_names(table)
    header = set(table.rows[0]) if table.rows else set()
    missing = [columns[c] for c in REQUIRED if columns[c] not in header]
    if missing:
        raise LoadError([RowProblem(table.file, 1, m, "required column missing") for m in missing])
    rows: list[MemberRow] = []
    seen: dict[str, int] = {}
    for number, raw in zip(table.row_numbers, table.rows, strict=True):
        found: list[Problem] = []

        def cell(ours: str, raw: dict[str, str] = raw) -> str:
            return raw.get(columns[ours], "")

        def bad(ours: str, message: str, number: int = number, found: list[Problem] = found) -> None:
            found.append(RowProblem(table.file, number, columns[ours], message))

        for ours in REQUIRED:
            if not cell(ours):
                bad(ours, "is required")
        country = cell("country").upper()
        if country and not valid_country(country):
            bad("country", f"{cell('country')!r} is not an ISO 3166-1 alpha-2 country code")
        kind = KIND_ALIASES.get(cell("kind").lower().strip())
        if cell("kind") and kind is None:
            bad("kind", f"{cell('kind')!r} is not a known kind (municipality, metropolitan area, "
                        "region-province-state, association)")
        commitment_kind = cell("commitment_kind").lower()
        if commitment_kind and commitment_kind not in COMMITMENT_KINDS:
            bad("commitment_kind", f"{commitment_kind!r} is not one of {', '.join(COMMITMENT_KINDS)}")
        confidence = cell("confidence").lower()
        if confidence and confidence not in CONFIDENCE:
            bad("confidence", f"{confidence!r} is not high, medium or low")
        year = parse_year(cell("year"), found, table.file, number, columns["year"])
        joined_on = None
        if cell("joined_on"):
            try:
                joined_on = dt.date.fromisoformat(cell("joined_on"))
                if year and joined_on.year != year:
                    bad("joined_on", f"{joined_on} is not in the row's year {year}")
            except ValueError:
                bad("joined_on", f"{cell('joined_on')!r} is not a date (YYYY-MM-DD)")
        sources = split_list(cell("sources"))
        for url in sources:
            if not valid_url(url):
                bad("sources", f"{url!r} is not an http(s) URL")
        website = cell("website") or None
        if website and not valid_url(website):
            bad("website", f"{website!r} is not an http(s) URL")
        row_sections = [s.lower() for s in re.split(r"[;,\s]+", cell("sections")) if s]
        for section in row_sections:
            if section not in sections:
                bad("sections", f"{section!r} is not a UCLG section ({', '.join(sorted(sections))})")
        lon = lat = None
        if cell("lon") or cell("lat"):
            try:
                lon, lat = float(cell("lon")), float(cell("lat"))
                if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                    raise ValueError
            except ValueError:
                bad("lon", f"lon/lat {cell('lon')!r}, {cell('lat')!r} are not a WGS84 point")
                lon = lat = None
        name = cell("name")
        key = cell("id") or (territory_key(name, country, kind) if name and country and kind else "")
        if key and key in seen:
            bad("id" if cell("id") else "name",
                f"duplicate of row {seen[key]} (same {'id' if cell('id') else 'name, country and kind'})")
        elif key:
            seen[key] = number
        values = {
            "name": name, "local_name": cell("local_name") or None, "kind": kind,
            "iso3166_1": country, "sections": row_sections, "commitment_kind": commitment_kind,
            "commitment": cell("commitment") or None, "year": year, "joined_on": joined_on,
            "campaign_wave": cell("campaign_wave") or None,
            "status": cell("status").lower() or "active", "website": website, "sources": sources,
            "confidence": confidence, "boundary_code": cell("boundary_code") or None,
            "lon": lon, "lat": lat,
        }
        rows.append(MemberRow(number, key, values, [p.message for p in found]))
        problems += found
    for problem in table.problems:  # reader-level problems (oversized cells...) mark their row
        for member in rows:
            if member.row == problem.feature:
                member.errors.append(problem.message)
    return rows, problems


def _report_entry(member: MemberRow) -> dict[str, Any]:
    m = member.match
    return {
        "row": member.row, "name": member.values["name"], "country": member.values["iso3166_1"],
        "outcome": "invalid" if member.errors else (m.outcome if m else None),
        "boundary_code": m.boundary_code if m else None,
        "boundary_level": m.boundary_level if m else None,
        "method": m.method if m else None, "score": m.score if m else None,
        "lon": m.lon if m else None, "lat": m.lat if m else None,
        "candidates": m.candidates if m else [], "errors": member.errors,
        "change": member.outcome or None, "changed_fields": member.changed,
    }


def _current(conn: psycopg.Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT to_jsonb(t) - 'location' - 'bbox' || jsonb_build_object('lon', ST_X(location), "
        "'lat', ST_Y(location)) FROM territories t WHERE id = %s", (key,)).fetchone()
    return row[0] if row else None


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: values.get(k) for k in STORED}, default=str))


def import_members(dsn: str, path: Path, *, dry_run: bool = False, skip_invalid: bool = False,
                   delimiter: str = ",", sheet: str | None = None, prune: bool = False,
                   force: bool = False) -> ImportResult:
    """Validate all rows, match them, and upsert in one transaction (rolled back on dry runs).

    With `prune` the file is the whole roster: territories it does not name are removed (their
    last version, and their initiatives' with their themes, kept in history); more than
    prune_limit() only with `force`."""
    table = read_table(path, {n for names in COLUMNS.values() for n in names},
                       delimiter=delimiter, sheet=sheet)
    with psycopg.connect(dsn) as conn:
        sections = {r[0] for r in conn.execute("SELECT slug FROM uclg_sections").fetchall()}
        rows, problems = validate_members(table, sections)
        if problems and not skip_invalid:
            raise LoadError(problems)
        matcher = Matcher(conn)
        counts = {"rows": len(rows), "inserted": 0, "updated": 0, "unchanged": 0, "invalid": 0,
                  "removed": 0}
        with conn.transaction() as tx:
            import_id = open_import(conn, "members", path.name, file_sha256(path),
                                    {"dry_run": dry_run, "skip_invalid": skip_invalid,
                                     "prune": prune})
            for member in rows:
                if member.errors:
                    counts["invalid"] += 1
                    continue
                match = _place(conn, matcher, member)
                if member.errors:
                    counts["invalid"] += 1
                    problems.append(RowProblem(table.file, member.row, "name", member.errors[-1]))
                    continue
                member.outcome = _upsert(conn, member, import_id)
                counts[member.outcome] += 1
                counts[match.outcome] = counts.get(match.outcome, 0) + 1
            if problems and not skip_invalid:
                raise LoadError(problems)
            if prune:
                removed = _prune(conn, [m.key for m in rows if m.key], import_id, table.file,
                                 force=force or dry_run)
                counts["removed"] = len(removed)
                if dry_run and removed:
                    table.notes.append(f"--prune would remove {len(removed)}: "
                                       + ", ".join(removed))
            conn.execute("UPDATE imports SET counts = %s WHERE id = %s", (Jsonb(counts), import_id))
            if dry_run:
                raise psycopg.Rollback(tx)
    return ImportResult(counts, [_report_entry(m) for m in rows], table.notes, dry_run,
                        None if dry_run else import_id, problems)


PRUNE_SHARE = 0.10  # --prune removes at most this share of the territories without --force
PRUNE_ROWS = 20  # ... and at most this many


def prune_limit(territories: int) -> int:
    """How many territories a prune may remove without --force: 10 % of them, at most 20."""
    return min(PRUNE_ROWS, int(territories * PRUNE_SHARE))


def _prune(conn: psycopg.Connection, keep: list[str], import_id: int, file: str,
           force: bool = False) -> list[str]:
    """Remove territories absent from the file; history keeps them and their initiatives (with
    their themes). More than prune_limit() is refused without `force`, naming who would go."""
    found = conn.execute("SELECT id, name, iso3166_1 FROM territories WHERE NOT id = ANY(%s) "
                         "ORDER BY id", (keep,)).fetchall()
    gone = [r[0] for r in found]
    names = [f"{r[0]} ({r[1]}, {r[2]})" for r in found]
    total = conn.execute("SELECT count(*) FROM territories").fetchone()[0]  # type: ignore[index]
    if len(gone) > prune_limit(total) and not force:
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        raise LoadError([RowProblem(
            file, None, None,
            f"--prune would remove {len(gone)} of {total} territories (more than "
            f"{prune_limit(total)}: 10 % or {PRUNE_ROWS}, whichever is fewer): {shown}. Nothing "
            "was changed. If the file really is the whole roster, run again with --force.")])
    for key in gone:
        for initiative in conn.execute(
                "SELECT id, to_jsonb(i) || jsonb_build_object('themes', coalesce((SELECT "
                "jsonb_agg(theme_slug ORDER BY theme_slug) FROM initiative_themes "
                "WHERE initiative_id = i.id), '[]'::jsonb)) FROM initiatives i "
                "WHERE territory_id = %s", (key,)).fetchall():
            keep_history(conn, "initiatives", initiative[0], "delete", initiative[1], import_id)
        keep_history(conn, "territories", key, "delete", _current(conn, key), import_id)
        conn.execute("DELETE FROM territories WHERE id = %s", (key,))
    return names


def _place(conn: psycopg.Connection, matcher: Matcher, member: MemberRow) -> Match:
    """Match a row (errors noted on it); returns the match, also kept on the row."""
    v = member.values
    if not v["boundary_code"]:  # a manual override set earlier survives re-imports
        stored = conn.execute("SELECT override_boundary_code FROM territories WHERE id = %s",
                              (member.key,)).fetchone()
        v["boundary_code"] = stored[0] if stored else None
    match = member.match = matcher.match(
        name=v["name"], country=v["iso3166_1"], kind=v["kind"], local_name=v["local_name"],
        boundary_code=v["boundary_code"], lon=v["lon"], lat=v["lat"])
    if v["boundary_code"] and match.outcome == "unmatched":
        member.errors.append(f"boundary_code {v['boundary_code']!r} matches no boundary")
    elif match.lon is None:
        member.errors.append(f"no location: {v['iso3166_1']} has no boundary to fall back on")
    return match


def _upsert(conn: psycopg.Connection, member: MemberRow, import_id: int) -> str:
    v, m = member.values, member.match
    assert m is not None
    sections = v["sections"] or [r[0] for r in conn.execute(
        "SELECT section_slug FROM uclg_section_countries WHERE iso3166_1 = %s ORDER BY 1",
        (v["iso3166_1"],)).fetchall()]
    new = {**v, "sections": sections, "boundary_level": m.boundary_level,
           "boundary_code": m.boundary_code, "match_outcome": m.outcome,
           "match_method": m.method, "match_score": m.score, "match_candidates": m.candidates,
           "override_boundary_code": v["boundary_code"], "lon": m.lon, "lat": m.lat}
    old = _current(conn, member.key)
    if old is not None:
        before, after = _comparable(old), _comparable(new)
        member.changed = sorted(k for k in after if before.get(k) != after[k])
        if not member.changed:
            return "unchanged"
    if old is not None:
        keep_history(conn, "territories", member.key, "update", old, import_id)
    conn.execute(
        "INSERT INTO territories (id, name, local_name, kind, iso3166_1, sections, commitment_kind, "
        "commitment, year, joined_on, campaign_wave, status, website, sources, confidence, "
        "boundary_level, boundary_code, location, match_outcome, match_method, match_score, "
        "match_candidates, override_boundary_code, import_id, updated_at) VALUES "
        "(%(id)s, %(name)s, %(local_name)s, %(kind)s, %(iso3166_1)s, %(sections)s, "
        "%(commitment_kind)s, %(commitment)s, %(year)s, %(joined_on)s, %(campaign_wave)s, "
        "%(status)s, %(website)s, %(sources)s, %(confidence)s, %(boundary_level)s, "
        "%(boundary_code)s, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(match_outcome)s, "
        "%(match_method)s, %(match_score)s, %(match_candidates)s, %(override_boundary_code)s, "
        "%(import_id)s, now()) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, local_name = EXCLUDED.local_name, "
        "kind = EXCLUDED.kind, iso3166_1 = EXCLUDED.iso3166_1, sections = EXCLUDED.sections, "
        "commitment_kind = EXCLUDED.commitment_kind, commitment = EXCLUDED.commitment, "
        "year = EXCLUDED.year, joined_on = EXCLUDED.joined_on, "
        "campaign_wave = EXCLUDED.campaign_wave, status = EXCLUDED.status, "
        "website = EXCLUDED.website, sources = EXCLUDED.sources, "
        "confidence = EXCLUDED.confidence, boundary_level = EXCLUDED.boundary_level, "
        "boundary_code = EXCLUDED.boundary_code, location = EXCLUDED.location, "
        "match_outcome = EXCLUDED.match_outcome, match_method = EXCLUDED.match_method, "
        "match_score = EXCLUDED.match_score, match_candidates = EXCLUDED.match_candidates, "
        "override_boundary_code = EXCLUDED.override_boundary_code, "
        "import_id = EXCLUDED.import_id, updated_at = now()",
        {**new, "id": member.key, "match_candidates": Jsonb(m.candidates), "import_id": import_id},
    )
    return "updated" if old is not None else "inserted"



def _store_placement(conn: psycopg.Connection, territory_id: str, old: dict[str, Any],
                     match: Match, override: str | None, import_id: int | None) -> None:
    """Where a territory sits, written with its previous version kept in history (under
    `import_id`; the row's own import_id stays the file it came from)."""
    keep_history(conn, "territories", territory_id, "update", old, import_id)
    conn.execute(
        "UPDATE territories SET override_boundary_code = %s, boundary_level = %s, "
        "boundary_code = %s, location = ST_SetSRID(ST_MakePoint(%s, %s), 4326), "
        "match_outcome = %s, match_method = %s, match_score = %s, match_candidates = %s, "
        "updated_at = now() WHERE id = %s",
        (override, match.boundary_level, match.boundary_code, match.lon, match.lat,
         match.outcome, match.method, match.score, Jsonb(match.candidates), territory_id))


def set_override(dsn: str, territory_id: str, boundary_code: str | None) -> str:
    """Pin a territory to a boundary (or clear the pin and match again), keeping history."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        old = _current(conn, territory_id)
        if old is None:
            raise LoadError([RowProblem("territories", territory_id, "id", "no such territory")])
        matcher = Matcher(conn)
        match = matcher.match(name=old["name"], country=old["iso3166_1"], kind=old["kind"],
                              local_name=old["local_name"], boundary_code=boundary_code)
        if boundary_code and match.outcome != "matched":
            raise LoadError([RowProblem("territories", territory_id, "boundary_code",
                                        f"{boundary_code!r} gives {match.outcome}, not one boundary")])
        _store_placement(conn, territory_id, old, match, boundary_code, None)
    where = f"{match.boundary_level} {match.boundary_code}" if match.boundary_code else match.outcome
    return f"{territory_id}: {where} ({match.method or 'no method'})"


# what a re-match compares: the placement, not the territory's own data
PLACEMENT = ("match_outcome", "match_method", "boundary_level", "boundary_code", "match_score",
             "lon", "lat")


def _placement(values: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {k: values.get(k) for k in PLACEMENT}
    for axis in ("lon", "lat"):  # the same point read back from PostGIS
        found[axis] = None if found[axis] is None else round(float(found[axis]), 7)
    return found


@dataclass
class RematchResult:
    checked: int
    changes: list[dict[str, Any]]
    dry_run: bool
    import_id: int | None = None


def rematch_in(conn: psycopg.Connection, *, countries: list[str] | None = None,
               ids: list[str] | None = None, origin: str = "rematch") -> RematchResult:
    """Match stored territories again against the boundaries and gazetteer now in place (inside
    the caller's transaction). Manual overrides and given coordinates are kept as inputs; a
    territory whose placement changes keeps its previous version in history."""
    rows = conn.execute(
        "SELECT id FROM territories WHERE (%s::text[] IS NULL OR iso3166_1 = ANY(%s)) "
        "AND (%s::text[] IS NULL OR id = ANY(%s)) ORDER BY iso3166_1, name, id",
        (countries, countries, ids, ids)).fetchall()
    import_id = open_import(conn, "rematch", origin, "", {"countries": countries, "ids": ids})
    matcher = Matcher(conn)
    changes: list[dict[str, Any]] = []
    for (territory_id,) in rows:
        old = _current(conn, territory_id)
        assert old is not None
        given = old["match_method"] == "coordinates"
        match = matcher.match(name=old["name"], country=old["iso3166_1"], kind=old["kind"],
                              local_name=old["local_name"],
                              boundary_code=old["override_boundary_code"],
                              lon=old["lon"] if given else None, lat=old["lat"] if given else None)
        before = _placement(old)
        after = _placement({"match_outcome": match.outcome, "match_method": match.method,
                            "boundary_level": match.boundary_level,
                            "boundary_code": match.boundary_code, "match_score": match.score,
                            "lon": match.lon, "lat": match.lat})
        if before == after:
            continue
        _store_placement(conn, territory_id, old, match, old["override_boundary_code"], import_id)
        changes.append({"id": territory_id, "name": old["name"], "country": old["iso3166_1"],
                        "kind": old["kind"], "before": before, "after": after})
    conn.execute("UPDATE imports SET counts = %s WHERE id = %s",
                 (Jsonb({"checked": len(rows), "changed": len(changes)}), import_id))
    return RematchResult(len(rows), changes, False, import_id)


def rematch(dsn: str, *, countries: list[str] | None = None, dry_run: bool = False
            ) -> RematchResult:
    """Re-match territories (all, or those of some countries) in one transaction; a dry run
    reports the changes and writes nothing."""
    countries = [c.upper() for c in countries] if countries else None
    for code in countries or []:
        if not valid_country(code):
            raise LoadError([Problem("--country", None, "country",
                                     f"{code!r} is not an ISO 3166-1 alpha-2 country code")])
    with psycopg.connect(dsn) as conn, conn.transaction() as tx:
        result = rematch_in(conn, countries=countries)
        if dry_run:
            raise psycopg.Rollback(tx)
    if dry_run:
        return RematchResult(result.checked, result.changes, True, None)
    return result


def _rematch_ids(conn: psycopg.Connection, ids: list[str], origin: str) -> list[dict[str, Any]]:
    return rematch_in(conn, ids=ids, origin=origin).changes


def remove_boundaries(dsn: str, source: str, *, level: str | None = None, dry_run: bool = False
                      ) -> RemoveResult:
    """Remove a boundary source in one transaction, matching again the territories that sat on
    it (see geo_service.load.pipeline.remove_source)."""
    from geo_service.load.pipeline import remove_source

    return remove_source(dsn, source, rematch=_rematch_ids, level=level, dry_run=dry_run)
