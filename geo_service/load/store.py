"""Writing loads to PostGIS: staging tables, then one transaction swaps them in.

A failed or interrupted load rolls back and leaves the previous data exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from geo_service.domain import TIERS
from geo_service.errors import LoadError, Problem
from geo_service.load.prepare import BoundaryRows

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SourceRecord:
    """What the data_sources table keeps about one load."""

    source: str
    level: str
    title: str | None
    version: str | None
    licence: str | None
    attribution: str | None
    origin: str
    checksum: str
    options: dict[str, Any]


def latest_load(conn: psycopg.Connection, source: str, level: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, checksum, details, features FROM data_sources "
        "WHERE source = %s AND level = %s ORDER BY id DESC LIMIT 1",
        (source, level),
    ).fetchone()
    if row is None:
        return None
    return {"id": row[0], "checksum": row[1], "details": row[2], "features": row[3]}


def already_loaded(conn: psycopg.Connection, record: SourceRecord) -> bool:
    """Same input and options as the last load of this source, and its rows are still there."""
    last = latest_load(conn, record.source, record.level)
    if last is None or last["checksum"] != record.checksum:
        return False
    if last["details"].get("options") != record.options:
        return False
    if record.level == "place":
        present = conn.execute("SELECT count(*) FROM places WHERE data_source_id = %s",
                               (last["id"],)).fetchone()
    else:  # rows another layer redrew (pipeline.redraw_regions) still count as this load's
        present = conn.execute(
            "SELECT count(*) FROM boundaries WHERE source = %(source)s AND level = %(level)s "
            "AND (data_source_id = %(id)s OR "
            "(properties->>'replaced_data_source_id')::bigint = %(id)s)",
            {"id": last["id"], "source": record.source, "level": record.level},
        ).fetchone()
    return bool(present and present[0] == last["features"])


def insert_source(conn: psycopg.Connection, record: SourceRecord, features: int,
                   details: dict[str, Any]) -> int:
    row = conn.execute(
        "INSERT INTO data_sources (source, level, title, version, licence, attribution, origin, "
        "checksum, features, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (record.source, record.level, record.title, record.version, record.licence,
         record.attribution, record.origin, record.checksum, features,
         Jsonb({"options": record.options, **details})),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _ensure_tiers(conn: psycopg.Connection) -> None:
    for tier, (tolerance, max_zoom) in TIERS.items():
        conn.execute(
            "INSERT INTO generalization_tiers (tier, tolerance_deg, max_zoom) VALUES (%s, %s, %s) "
            "ON CONFLICT (tier) DO UPDATE SET tolerance_deg = EXCLUDED.tolerance_deg, "
            "max_zoom = EXCLUDED.max_zoom",
            (tier, tolerance, max_zoom),
        )


_STAGE = """
DROP TABLE IF EXISTS pg_temp.stage_boundaries, pg_temp.stage_tiers;
CREATE TEMP TABLE stage_boundaries (
    ord integer PRIMARY KEY, code text, name text, name_en text, name_fr text, name_es text,
    name_local text, iso3166_1 text, iso3166_2 text, national_code text, wikidata_id text,
    parent_code text, names jsonb, properties jsonb, geom bytea, label bytea
) ON COMMIT DROP;
CREATE TEMP TABLE stage_tiers (ord integer, tier smallint, geom bytea) ON COMMIT DROP;
"""
_COLUMNS = ("code", "name", "name_en", "name_fr", "name_es", "name_local", "iso3166_1",
            "iso3166_2", "national_code", "wikidata_id", "parent_code")


def _column_list() -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))


def _copy_rows(conn: psycopg.Connection, rows: BoundaryRows, progress: Progress) -> None:
    geoms = shapely.to_wkb(rows.geoms)
    labels = shapely.to_wkb(rows.labels)
    with conn.cursor().copy(
        sql.SQL("COPY stage_boundaries (ord, {}, names, properties, geom, label) FROM STDIN")
        .format(_column_list())
    ) as copy:
        for index in range(len(rows)):
            copy.write_row((
                index, *(rows.text[c][index] for c in _COLUMNS),
                json.dumps(rows.names[index], ensure_ascii=False),
                json.dumps(rows.properties[index], ensure_ascii=False),
                geoms[index], labels[index],
            ))
            progress(1)
    with conn.cursor().copy("COPY stage_tiers (ord, tier, geom) FROM STDIN") as copy:
        for tier, tier_geoms in rows.tiers.items():
            for index, wkb in enumerate(shapely.to_wkb(tier_geoms)):
                copy.write_row((index, tier, wkb))


def _check_conflicts(conn: psycopg.Connection, record: SourceRecord) -> None:
    clashes = conn.execute(
        "SELECT s.ord + 1, s.code, b.source FROM stage_boundaries s "
        "JOIN boundaries b ON b.level = %s AND b.code = s.code AND b.source <> %s "
        "ORDER BY s.ord LIMIT 20",
        (record.level, record.source),
    ).fetchall()
    if clashes:
        raise LoadError([
            Problem(record.origin, ord_, "code",
                    f"code {code!r} already belongs to source {other!r} at level {record.level}")
            for ord_, code, other in clashes
        ])


def _link_parents(conn: psycopg.Connection, record: SourceRecord, parent_match: str | None,
                  key_chars: int | None) -> list[str]:
    """Municipalities find their region: by national code prefix, or the region containing the
    label point, else the one the shape overlaps most (or lies nearest, within 0.1°), else the
    region of most municipalities that share its first `key_chars` code characters (an island
    off the coast takes its province's region). Returns a note per municipality left without
    a region: where the region layer has none (Natural Earth lacks Taiwan's Matsu islands)."""
    if record.level != "municipality":
        return []
    if parent_match == "national_code":
        conn.execute(
            "UPDATE stage_boundaries s SET parent_code = r.code FROM boundaries r "
            "WHERE s.parent_code IS NULL AND r.level = 'region' AND r.iso3166_1 = s.iso3166_1 "
            "AND r.national_code = left(s.national_code, %s)",
            (key_chars or 2,),
        )
        orphans = conn.execute(
            "SELECT ord + 1, code, national_code FROM stage_boundaries WHERE parent_code IS NULL "
            "ORDER BY ord LIMIT 20"
        ).fetchall()
        if orphans:
            raise LoadError([
                Problem(record.origin, o, "national_code",
                        f"{code}: no region has national code {str(nat)[: key_chars or 2]!r}")
                for o, code, nat in orphans
            ])
        return []
    # the region holding each label point: the points indexed, so that each region is tested
    # against the points in its box in turn and PostGIS prepares its shape once (the US
    # places took 16.5 s point by point against the states, 0.4 s so)
    conn.execute(
        "DROP TABLE IF EXISTS pg_temp.stage_labels; "
        "CREATE TEMP TABLE stage_labels ON COMMIT DROP AS SELECT ord, iso3166_1, "
        "ST_GeomFromWKB(label, 4326) AS geom FROM stage_boundaries WHERE parent_code IS NULL; "
        "CREATE INDEX ON stage_labels USING gist (geom); ANALYZE stage_labels")
    conn.execute(
        "UPDATE stage_boundaries s SET parent_code = m.code, "
        "iso3166_1 = coalesce(s.iso3166_1, m.country) FROM ("
        "  SELECT DISTINCT ON (l.ord) l.ord, r.code, r.iso3166_1 AS country "
        "  FROM boundaries r JOIN stage_labels l ON ST_Contains(r.geom, l.geom) "
        "  WHERE r.level = 'region' AND (l.iso3166_1 IS NULL OR r.iso3166_1 = l.iso3166_1) "
        "  ORDER BY l.ord, r.code) m "
        "WHERE s.ord = m.ord"
    )
    # a label in water the region's coastline leaves out (Boston's harbour): the region the
    # shape overlaps most, then, for a shape wholly offshore, the nearest within 0.1°
    conn.execute(
        "UPDATE stage_boundaries s SET parent_code = ("
        "  SELECT r.code FROM boundaries r WHERE r.level = 'region' "
        "  AND (s.iso3166_1 IS NULL OR r.iso3166_1 = s.iso3166_1) "
        "  AND ST_DWithin(r.geom, ST_GeomFromWKB(s.geom, 4326), 0.1) "
        "  ORDER BY ST_Area(ST_Intersection(r.geom, ST_GeomFromWKB(s.geom, 4326))) DESC, "
        "  ST_Distance(r.geom, ST_GeomFromWKB(s.label, 4326)) LIMIT 1) "
        "WHERE s.parent_code IS NULL"
    )
    if key_chars:
        conn.execute(
            "UPDATE stage_boundaries s SET parent_code = g.parent FROM ("
            "  SELECT prefix, parent FROM (SELECT left(national_code, %(n)s) AS prefix, "
            "  parent_code AS parent, count(*) AS n, sum(count(*)) OVER (PARTITION BY "
            "  left(national_code, %(n)s)) AS total FROM stage_boundaries "
            "  WHERE parent_code IS NOT NULL GROUP BY 1, 2) c WHERE n * 2 > total) g "
            "WHERE s.parent_code IS NULL AND left(s.national_code, %(n)s) = g.prefix",
            {"n": key_chars})
    orphans = conn.execute(
        "SELECT code, name FROM stage_boundaries WHERE parent_code IS NULL ORDER BY ord").fetchall()
    return [f"{len(orphans)} municipalit{'y' if len(orphans) == 1 else 'ies'} lie in no region "
            f"of the region layer, nor next to one: "
            f"{', '.join(f'{code} {name}' for code, name in orphans[:20])}"] if orphans else []


def write_boundaries(dsn: str, rows: BoundaryRows, record: SourceRecord, *,
                     parent_match: str | None = None, key_chars: int | None = None,
                     before_swap: Callable[[psycopg.Connection], None] | None = None,
                     progress: Progress = lambda _: None) -> int:
    """Stage, check and swap in one transaction; returns the data_sources id of this load."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        return write_boundaries_in(conn, rows, record, parent_match=parent_match,
                                   key_chars=key_chars, before_swap=before_swap,
                                   progress=progress)


def write_boundaries_in(conn: psycopg.Connection, rows: BoundaryRows, record: SourceRecord, *,
                        parent_match: str | None = None, key_chars: int | None = None,
                        before_swap: Callable[[psycopg.Connection], None] | None = None,
                        progress: Progress = lambda _: None) -> int:
    """write_boundaries inside the caller's transaction (to swap several layers at once)."""
    conn.execute(_STAGE)
    _copy_rows(conn, rows, progress)
    _check_conflicts(conn, record)
    if before_swap:
        before_swap(conn)
    rows.warnings += _link_parents(conn, record, parent_match, key_chars)
    _ensure_tiers(conn)
    source_id = insert_source(conn, record, len(rows), {"warnings": rows.warnings[:200]})
    # Links a national layer attached to these rows (national code, local name) survive a
    # reload of the geometry source that does not carry them itself.
    conn.execute(
        "UPDATE stage_boundaries s SET national_code = b.national_code, "
        "name_local = b.name_local FROM boundaries b "
        "WHERE b.level = %s AND b.code = s.code AND s.national_code IS NULL "
        "AND b.national_code IS NOT NULL",
        (record.level,),
    )
    conn.execute("DELETE FROM boundaries WHERE level = %s AND source = %s",
                 (record.level, record.source))
    conn.execute(
        sql.SQL(
            "INSERT INTO boundaries (level, source, {columns}, names, properties, geom, "
            "label_point, area_km2, data_source_id) "
            "SELECT %s, %s, {columns}, names, properties, ST_GeomFromWKB(geom, 4326), "
            "ST_GeomFromWKB(label, 4326), ST_Area(ST_GeomFromWKB(geom, 4326)::geography) / 1e6, "
            "%s FROM stage_boundaries ORDER BY ord"
        ).format(columns=_column_list()),
        (record.level, record.source, source_id),
    )
    conn.execute(
        "INSERT INTO boundary_tiers (boundary_id, tier, geom) "
        "SELECT b.id, t.tier, ST_GeomFromWKB(t.geom, 4326) FROM stage_tiers t "
        "JOIN stage_boundaries s ON s.ord = t.ord "
        "JOIN boundaries b ON b.level = %s AND b.code = s.code",
        (record.level,),
    )
    return source_id


def write_places(dsn: str, places: list[dict[str, Any]], record: SourceRecord,
                 progress: Progress = lambda _: None) -> int:
    """Replace the gazetteer in one transaction."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        source_id = insert_source(conn, record, len(places), {})
        conn.execute("DELETE FROM places")
        conn.execute(
            "CREATE TEMP TABLE stage_places (geonameid bigint, name text, ascii_name text, "
            "alternate_names text[], iso3166_1 text, admin1_code text, population bigint, "
            "timezone text, lon double precision, lat double precision) ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY stage_places FROM STDIN") as copy:
            for place in places:
                copy.write_row((
                    place["geonameid"], place["name"], place.get("asciiname"),
                    place.get("alternatenames") or [], place["countrycode"],
                    place.get("admin1code"), place.get("population"), place.get("timezone"),
                    place["longitude"], place["latitude"],
                ))
                progress(1)
        conn.execute(
            "INSERT INTO places (geonameid, name, ascii_name, alternate_names, iso3166_1, "
            "admin1_code, population, timezone, geom, data_source_id) "
            "SELECT geonameid, name, ascii_name, alternate_names, iso3166_1, admin1_code, "
            "population, timezone, ST_SetSRID(ST_MakePoint(lon, lat), 4326), %s FROM stage_places",
            (source_id,),
        )
    return source_id


def status_in(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per source and level: features, version and load time of the data in place (a source
    whose last record is its removal is not in place)."""
    rows = conn.execute(
        "SELECT source, level, features, version, loaded_at FROM ("
        "SELECT DISTINCT ON (source, level) * FROM data_sources ORDER BY source, level, id DESC"
        ") latest WHERE NOT details ? 'removed' ORDER BY source, level"
    ).fetchall()
    return [
        {"source": s, "level": lv, "features": f, "version": v, "loaded_at": t.isoformat()}
        for s, lv, f, v, t in rows
    ]


def status(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        return status_in(conn)
