"""Campaign progress: totals against the 10, 100 and 1000 milestones, and breakdowns."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.query.vocabulary import shown_territory

MILESTONES = (10, 100, 1000)

# Each breakdown as (key, count) rows over `t`, the shown territories' few columns read once
# (the ordering is done in assemble). One statement: at 9,700 members the eleven statements
# this was each read the whole wide territories table (76 ms in all, against 13 ms at 97).
STAT_QUERIES: dict[str, sql.SQL] = {
    "total": sql.SQL("SELECT count(*) FROM t"),
    "by_kind": sql.SQL("SELECT kind, count(*) FROM t GROUP BY 1"),
    "by_commitment_kind": sql.SQL("SELECT commitment_kind, count(*) FROM t GROUP BY 1"),
    "by_section": sql.SQL("SELECT s.slug, count(m.id) FROM uclg_sections s LEFT JOIN (SELECT "
                          "id, unnest(sections) AS slug FROM t) m ON m.slug = s.slug GROUP BY 1"),
    "by_country": sql.SQL("SELECT iso3166_1, count(*) FROM t GROUP BY 1"),
    "by_theme": sql.SQL("SELECT r.slug, count(DISTINCT t.id) FROM rights_themes r "
                        "LEFT JOIN initiative_themes it ON it.theme_slug = r.slug "
                        "LEFT JOIN initiatives i ON i.id = it.initiative_id "
                        "LEFT JOIN t ON t.id = i.territory_id GROUP BY 1"),
    "by_year": sql.SQL("SELECT year, count(*) FROM t WHERE year IS NOT NULL GROUP BY 1"),
    "undated": sql.SQL("SELECT count(*) FROM t WHERE year IS NULL"),
    "by_match": sql.SQL("SELECT match_outcome, count(*) FROM t GROUP BY 1"),
    "by_placement": sql.SQL("SELECT placement, count(*) FROM t GROUP BY 1"),
    "initiatives": sql.SQL("SELECT count(*) FROM initiatives i JOIN t ON t.id = i.territory_id"),
}
SCALARS = ("total", "undated", "initiatives")  # one count, not (key, count) rows
ORDERED_BY_KEY = ("by_year",)  # the others: largest count first, then by key


# Where a member sits on the map: on its own boundary (the level its kind states, or the
# first-level unit that is the city itself), on a larger unit (a region for a municipality, as a
# manual override may place it), or on a point (gazetteer, given coordinates, or its country).
PLACEMENTS = ("own_boundary", "larger_unit", "point")
PLACEMENT = sql.SQL(
    "CASE WHEN t.match_outcome <> 'matched' OR t.boundary_code IS NULL THEN 'point' "
    "WHEN t.match_method = 'first-level-city' OR t.boundary_level = t.kind "
    "OR (t.kind = 'metropolitan-area' AND t.boundary_level IN ('region', 'municipality')) "
    "THEN 'own_boundary' ELSE 'larger_unit' END")


def stats_sql(include_engagement: bool) -> sql.Composed:
    """One statement: every breakdown as a JSON array of [key, count] pairs."""
    parts = sql.SQL(", ").join(
        sql.SQL("{}, (SELECT coalesce(json_agg(json_build_array({})), '[]') FROM ({}) q({}))"
                ).format(sql.Literal(name), sql.SQL("q.n" if name in SCALARS else "q.k, q.n"),
                         query, sql.SQL("n" if name in SCALARS else "k, n"))
        for name, query in STAT_QUERIES.items())
    return sql.SQL(
        "WITH t AS MATERIALIZED (SELECT t.id, t.kind, t.commitment_kind, t.sections, "
        "t.iso3166_1, t.year, t.match_outcome, {placement} AS placement FROM territories t "
        "WHERE {shown}) SELECT json_build_object({parts})").format(
            placement=PLACEMENT, shown=shown_territory(include_engagement), parts=parts)


def coverage_query(include_engagement: bool) -> sql.Composed:
    """Per country: members on their own boundary, on a larger unit, on a point."""
    return sql.SQL(
        "SELECT t.iso3166_1, {placement} AS placement, count(*) FROM territories t "
        "WHERE {shown} GROUP BY 1, 2 ORDER BY 1, 2").format(
        placement=PLACEMENT, shown=shown_territory(include_engagement))


def assemble(results: dict[str, list[tuple[Any, ...]]], include_engagement: bool) -> dict[str, Any]:
    """Shape the query results into the published document."""
    total = results["total"][0][0]
    cumulative, series = 0, []
    for year, count in results["by_year"]:
        cumulative += count
        series.append({"year": year, "new": count, "cumulative": cumulative})
    return {
        "territories": total,
        "includes_engagement_only": include_engagement,
        "milestones": [{"target": m, "reached": total >= m, "remaining": max(m - total, 0),
                        "share": round(total / m, 4)} for m in MILESTONES],
        "initiatives": results["initiatives"][0][0],
        "by_uclg_section": dict(results["by_section"]),
        "by_kind": dict(results["by_kind"]),
        "by_commitment_kind": dict(results["by_commitment_kind"]),
        "by_country": dict(results["by_country"]),
        "by_rights_theme": dict(results["by_theme"]),
        "by_match_outcome": dict(results["by_match"]),
        "by_placement": {p: dict(results["by_placement"]).get(p, 0) for p in PLACEMENTS},
        "by_year": series,
        "undated": results["undated"][0][0],
        "note": "Documented public commitments, not the official campaign roster.",
    }


async def stats(conn: AsyncConnection, include_engagement: bool = False) -> dict[str, Any]:
    row = await (await conn.execute(stats_sql(include_engagement))).fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    results: dict[str, list[tuple[Any, ...]]] = {}
    for name, pairs in row[0].items():
        rows = [tuple(pair) for pair in pairs]
        if name in ORDERED_BY_KEY:
            rows.sort(key=lambda r: r[0])
        else:  # largest first, then by key (None last)
            rows.sort(key=lambda r: (-r[-1], r[0] is None, r[0] or ""))
        results[name] = rows
    return assemble(results, include_engagement)
