"""Campaign progress: totals against the 10, 100 and 1000 milestones, and breakdowns."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.query.vocabulary import shown_territory

MILESTONES = (10, 100, 1000)

STAT_QUERIES: dict[str, sql.SQL] = {
    "total": sql.SQL("SELECT count(*) FROM territories t WHERE {shown}"),
    "by_kind": sql.SQL("SELECT kind, count(*) FROM territories t WHERE {shown} GROUP BY 1 "
                       "ORDER BY 2 DESC, 1"),
    "by_commitment_kind": sql.SQL("SELECT commitment_kind, count(*) FROM territories t WHERE "
                                  "{shown} GROUP BY 1 ORDER BY 2 DESC, 1"),
    "by_section": sql.SQL("SELECT s.slug, count(t.id) FROM uclg_sections s LEFT JOIN territories "
                          "t ON s.slug = ANY(t.sections) AND {shown} GROUP BY 1 ORDER BY 2 DESC, 1"),
    "by_country": sql.SQL("SELECT iso3166_1, count(*) FROM territories t WHERE {shown} GROUP BY 1 "
                          "ORDER BY 2 DESC, 1"),
    "by_theme": sql.SQL("SELECT r.slug, count(DISTINCT t.id) FROM rights_themes r "
                        "LEFT JOIN initiative_themes it ON it.theme_slug = r.slug "
                        "LEFT JOIN initiatives i ON i.id = it.initiative_id "
                        "LEFT JOIN territories t ON t.id = i.territory_id AND {shown} "
                        "GROUP BY 1 ORDER BY 2 DESC, 1"),
    "by_year": sql.SQL("SELECT year, count(*) FROM territories t WHERE {shown} AND year IS NOT "
                       "NULL GROUP BY 1 ORDER BY 1"),
    "undated": sql.SQL("SELECT count(*) FROM territories t WHERE {shown} AND year IS NULL"),
    "by_match": sql.SQL("SELECT match_outcome, count(*) FROM territories t WHERE {shown} "
                        "GROUP BY 1 ORDER BY 2 DESC, 1"),
    "by_placement": sql.SQL("SELECT {placement}, count(*) FROM territories t WHERE {shown} "
                            "GROUP BY 1"),
    "initiatives": sql.SQL("SELECT count(*) FROM initiatives i JOIN territories t ON "
                           "t.id = i.territory_id WHERE {shown}"),
}


# Where a member sits on the map: on its own boundary (the level its kind states, or the
# first-level unit that is the city itself), on a larger unit (a region for a municipality, as a
# manual override may place it), or on a point (gazetteer, given coordinates, or its country).
PLACEMENTS = ("own_boundary", "larger_unit", "point")
PLACEMENT = sql.SQL(
    "CASE WHEN t.match_outcome <> 'matched' OR t.boundary_code IS NULL THEN 'point' "
    "WHEN t.match_method = 'first-level-city' OR t.boundary_level = t.kind "
    "OR (t.kind = 'metropolitan-area' AND t.boundary_level IN ('region', 'municipality')) "
    "THEN 'own_boundary' ELSE 'larger_unit' END")


def queries(include_engagement: bool) -> dict[str, sql.Composed]:
    shown = shown_territory(include_engagement)
    return {name: q.format(shown=shown, placement=PLACEMENT) for name, q in STAT_QUERIES.items()}


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
    results = {}
    for name, q in queries(include_engagement).items():
        results[name] = await (await conn.execute(q)).fetchall()
    return assemble(results, include_engagement)
