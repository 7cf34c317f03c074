"""Campaign progress: totals against the 10, 100 and 1000 milestones, and breakdowns."""

from __future__ import annotations

from typing import Any

from psycopg import sql

MILESTONES = (10, 100, 1000)
HIDDEN = "engagement-only"  # took part in processes, not a human rights territory


def _shown(include_engagement: bool) -> sql.Composable:
    if include_engagement:
        return sql.SQL("TRUE")
    return sql.SQL("t.commitment_kind <> {}").format(sql.Literal(HIDDEN))


STAT_QUERIES: dict[str, str] = {
    "total": "SELECT count(*) FROM territories t WHERE {shown}",
    "by_kind": "SELECT kind, count(*) FROM territories t WHERE {shown} GROUP BY 1 ORDER BY 2 DESC, 1",
    "by_commitment_kind": "SELECT commitment_kind, count(*) FROM territories t WHERE {shown} "
                          "GROUP BY 1 ORDER BY 2 DESC, 1",
    "by_section": "SELECT s.slug, count(t.id) FROM uclg_sections s LEFT JOIN territories t "
                  "ON s.slug = ANY(t.sections) AND {shown} GROUP BY 1 ORDER BY 2 DESC, 1",
    "by_country": "SELECT iso3166_1, count(*) FROM territories t WHERE {shown} GROUP BY 1 "
                  "ORDER BY 2 DESC, 1",
    "by_theme": "SELECT r.slug, count(DISTINCT t.id) FROM rights_themes r "
                "LEFT JOIN initiative_themes it ON it.theme_slug = r.slug "
                "LEFT JOIN initiatives i ON i.id = it.initiative_id "
                "LEFT JOIN territories t ON t.id = i.territory_id AND {shown} "
                "GROUP BY 1 ORDER BY 2 DESC, 1",
    "by_year": "SELECT year, count(*) FROM territories t WHERE {shown} AND year IS NOT NULL "
               "GROUP BY 1 ORDER BY 1",
    "undated": "SELECT count(*) FROM territories t WHERE {shown} AND year IS NULL",
    "by_match": "SELECT match_outcome, count(*) FROM territories t WHERE {shown} GROUP BY 1 "
                "ORDER BY 2 DESC, 1",
    "initiatives": "SELECT count(*) FROM initiatives i JOIN territories t ON t.id = i.territory_id "
                   "WHERE {shown}",
}


def queries(include_engagement: bool) -> dict[str, sql.Composed]:
    shown = _shown(include_engagement)
    return {name: sql.SQL(q).format(shown=shown) for name, q in STAT_QUERIES.items()}  # type: ignore[arg-type]


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
        "by_year": series,
        "undated": results["undated"][0][0],
        "note": "Documented public commitments, not the official campaign roster.",
    }


def stats_sync(conn: Any, include_engagement: bool = False) -> dict[str, Any]:
    results = {name: conn.execute(q).fetchall() for name, q in queries(include_engagement).items()}
    return assemble(results, include_engagement)


async def stats_async(conn: Any, include_engagement: bool = False) -> dict[str, Any]:
    results = {}
    for name, q in queries(include_engagement).items():
        results[name] = await (await conn.execute(q)).fetchall()
    return assemble(results, include_engagement)
