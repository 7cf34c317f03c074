"""Undo an import: bring back, from history, the territories and initiatives it removed or
changed, in one transaction. The restore is an import of its own (kind "restore"): the rows it
overwrites are kept in history too, so a restore can itself be restored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from geo_service.campaign.rows import keep_history, open_import
from geo_service.errors import LoadError, Problem

# the version of a row as history keeps it: the row as JSON (a territory's point as lon/lat,
# an initiative with its themes)
_TERRITORY_NOW = ("SELECT to_jsonb(t) - 'location' - 'bbox' || jsonb_build_object('lon', ST_X(location), "
                  "'lat', ST_Y(location)) FROM territories t WHERE id = %s")
_INITIATIVE_NOW = ("SELECT to_jsonb(i) || jsonb_build_object('themes', coalesce((SELECT "
                   "jsonb_agg(theme_slug ORDER BY theme_slug) FROM initiative_themes "
                   "WHERE initiative_id = i.id), '[]'::jsonb)) FROM initiatives i WHERE id = %s")


@dataclass(frozen=True)
class RestoreResult:
    import_id: int  # the import undone
    restore_id: int | None  # the restore's own import (None on a dry run)
    territories: list[str]
    initiatives: list[str]
    without_themes: list[str]  # initiatives kept in history before themes were kept


def _columns(conn: psycopg.Connection, table: str, leave_out: set[str]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
        if r[0] not in leave_out]


def _put_back(conn: psycopg.Connection, table: str, columns: list[str], previous: dict[str, Any],
              extra: dict[str, sql.Composable]) -> None:
    """Insert or overwrite one row with its previous version (updated_at set to now)."""
    names = [*columns, *extra, "updated_at"]
    values: list[sql.Composable] = [sql.SQL("r.{}").format(sql.Identifier(c)) for c in columns]
    values += [*extra.values(), sql.SQL("now()")]
    conn.execute(sql.SQL(
        "INSERT INTO {table} ({names}) SELECT {values} "
        "FROM jsonb_populate_record(NULL::{table}, %(row)s) r "
        "ON CONFLICT (id) DO UPDATE SET ({names}) = ({excluded})").format(
            table=sql.Identifier(table),
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join(values),
            excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n))
                                        for n in names)),
        {"row": Jsonb(previous), "lon": previous.get("lon"), "lat": previous.get("lat")})


def restore_import(dsn: str, import_id: int, dry_run: bool = False) -> RestoreResult:
    """Put back every territory and initiative import `import_id` removed or changed, as they
    were before it (rows it added stay). One transaction; a dry run writes nothing."""
    with psycopg.connect(dsn) as conn, conn.transaction() as tx:
        found = conn.execute("SELECT kind, file_name FROM imports WHERE id = %s",
                             (import_id,)).fetchone()
        if found is None:
            raise LoadError([Problem(f"import {import_id}", None, None, "no such import "
                                     "(see `geo-service members history`)")])
        # the earliest version an import kept of a row is the one before it: newest first,
        # so the earliest is written last
        entries = conn.execute(
            "SELECT table_name, row_id, previous FROM history WHERE import_id = %s "
            "AND table_name IN ('territories', 'initiatives') AND previous IS NOT NULL "
            "ORDER BY id DESC", (import_id,)).fetchall()
        if not entries:
            raise LoadError([Problem(f"import {import_id}", None, None,
                                     "it removed or changed nothing: there is nothing to restore")])
        restore_id = open_import(conn, "restore", f"import {import_id} ({found[1]})", "",
                                 {"restores": import_id, "dry_run": dry_run})
        territory_columns = _columns(conn, "territories", {"location", "bbox", "updated_at"})
        initiative_columns = _columns(conn, "initiatives", {"updated_at"})
        territories: list[str] = []
        initiatives: list[str] = []
        without_themes: list[str] = []
        for table in ("territories", "initiatives"):  # a territory before its initiatives
            for name, row_id, previous in entries:
                if name != table:
                    continue
                now = conn.execute(_TERRITORY_NOW if table == "territories" else _INITIATIVE_NOW,
                                   (row_id,)).fetchone()
                if now is not None:
                    keep_history(conn, table, row_id, "update", now[0], restore_id)
                if table == "territories":
                    _put_back(conn, table, territory_columns, previous, {"location": sql.SQL(
                        "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)")})
                    territories.append(row_id)
                    continue
                _put_back(conn, table, initiative_columns, previous, {})
                if "themes" in previous:
                    conn.execute("DELETE FROM initiative_themes WHERE initiative_id = %s",
                                 (row_id,))
                    for theme in previous["themes"]:
                        conn.execute("INSERT INTO initiative_themes (initiative_id, theme_slug) "
                                     "VALUES (%s, %s)", (row_id, theme))
                else:
                    without_themes.append(row_id)
                initiatives.append(row_id)
        counts = {"territories": len(set(territories)), "initiatives": len(set(initiatives))}
        conn.execute("UPDATE imports SET counts = %s WHERE id = %s", (Jsonb(counts), restore_id))
        if dry_run:
            raise psycopg.Rollback(tx)
    return RestoreResult(import_id, None if dry_run else restore_id, sorted(set(territories)),
                         sorted(set(initiatives)), sorted(set(without_themes)))
