"""What the map pages show: the shown territories with their initiatives, and the labels of
themes and sections, in one language."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.domain import Credit
from geo_service.query import vocabulary as v


def _territories_sql(lang: str) -> sql.Composed:
    country_name = v.name_in(lang, "c", sql.SQL("c.name"), sql.SQL("t.iso3166_1"))
    return sql.SQL(
        "SELECT json_build_object("
        "'id', t.id, 'name', {name}, 'local_name', t.local_name, 'kind', t.kind, "
        "'commitment_kind', t.commitment_kind, 'commitment', t.commitment, 'year', t.year, "
        "'joined', extract(year FROM {joined})::int, "
        "'sections', t.sections, 'country', t.iso3166_1, 'country_name', {country_name}, "
        "'lat', round(ST_Y(t.location)::numeric, 5), 'lon', round(ST_X(t.location)::numeric, 5), "
        "'placed', t.match_outcome, 'boundary', t.boundary_code IS NOT NULL, "
        # the boundary it is drawn with: its level, area and source (for the popup, and to
        # draw it only where it is larger than its marker)
        "'shape', CASE WHEN b.id IS NOT NULL THEN json_build_object("
        "'level', b.level, 'area_km2', round(b.area_km2::numeric, 1), "
        "'source', {credit}) END, "
        "'sources', t.sources, 'confidence', t.confidence, 'website', t.website, "
        "'themes', to_json({themes}), "
        "'initiatives', (SELECT coalesce(json_agg(json_build_object("
        "'title', i.title, 'year', i.year_started, 'source', i.source) "
        "ORDER BY i.year_started NULLS LAST, i.title), '[]') "
        "FROM initiatives i WHERE i.territory_id = t.id)) "
        "FROM territories t {boundary} {themes_join} "
        "LEFT JOIN data_sources ds ON ds.id = b.data_source_id "
        "LEFT JOIN boundaries c ON c.level = 'country' AND c.code = t.iso3166_1 "
        "WHERE {shown} ORDER BY t.name, t.id").format(
            name=v.territory_name(lang), country_name=country_name, themes=v.TERRITORY_THEMES,
            joined=v.TERRITORY_JOINED,
            boundary=v.TERRITORY_BOUNDARY, themes_join=v.TERRITORY_THEMES_JOIN,
            shown=v.SHOWN_TERRITORY, credit=v.short_credit("ds", "b.source"))


async def page_data(conn: AsyncConnection, lang: str) -> dict[str, Any]:
    """Everything the page shows, in `lang`: territories with their initiatives, and the labels
    of themes and sections."""
    territories = [row[0] for row in await (await conn.execute(_territories_sql(lang))).fetchall()]
    labels: dict[str, dict[str, str]] = {}
    for table in ("rights_themes", "uclg_sections"):
        name = v.name_in(lang, "x")
        labels[table] = dict(await (await conn.execute(
            sql.SQL("SELECT x.slug, {name} FROM {table} x ORDER BY {name}").format(
                name=name, table=sql.Identifier(table)))).fetchall())
    return {"territories": territories, "themes": labels["rights_themes"],
            "sections": labels["uclg_sections"], "credits": await credits(conn)}


# the boundary sources in place (their latest load, not a removal), countries first
_CREDITS = sql.SQL(
    "SELECT {credit}, licence, attribution, level, title, version, origin "
    "FROM (SELECT DISTINCT ON (source, level) * FROM data_sources "
    "      WHERE level IN ('country', 'region', 'municipality') "
    "      ORDER BY source, level, id DESC) latest "
    "WHERE NOT details ? 'removed' AND features > 0 "
    "ORDER BY array_position(ARRAY['country', 'region', 'municipality'], level), "
    "features DESC, source").format(credit=v.short_credit("latest", "latest.source"))


async def credits(conn: AsyncConnection) -> list[Credit]:
    """Every boundary source in place (its latest load), countries first."""
    return [Credit(*row) for row in await (await conn.execute(_CREDITS)).fetchall()]


def _detail_sql(lang: str) -> sql.Composed:
    return sql.SQL(
        "SELECT t.joined_on, {boundary_name}, b.code, "
        "ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), ds.attribution, ds.licence, ds.origin, "
        "(SELECT coalesce(json_agg(json_build_object("
        "'title', i.title, 'summary', i.summary, 'year', i.year_started, 'status', i.status, "
        "'source', i.source, 'themes', to_json({themes})) "
        "ORDER BY i.year_started NULLS LAST, i.title), '[]') "
        "FROM initiatives i WHERE i.territory_id = t.id) "
        "FROM territories t {join} LEFT JOIN data_sources ds ON ds.id = b.data_source_id "
        "LEFT JOIN LATERAL (SELECT ST_Envelope(b.geom) AS e) box ON TRUE "
        "WHERE t.id = %s AND {shown}").format(
            boundary_name=v.boundary_name(lang), themes=v.INITIATIVE_THEMES,
            join=v.TERRITORY_BOUNDARY, shown=v.SHOWN_TERRITORY)


async def territory_detail(conn: AsyncConnection, territory_id: str, lang: str
                           ) -> dict[str, Any] | None:
    """What a territory's own page adds to its map entry: the date it joined, its boundary's
    name, code, box and full attribution, and its initiatives with their themes. None when no
    shown territory has this id."""
    row = await (await conn.execute(_detail_sql(lang), (territory_id,))).fetchone()
    if row is None:
        return None
    joined, name, code, minx, miny, maxx, maxy, attribution, licence, origin, initiatives = row
    return {"joined_on": joined.isoformat() if joined else None, "initiatives": initiatives,
            "boundary": None if code is None else {
                "name": name, "code": code, "bbox": [minx, miny, maxx, maxy],
                "attribution": attribution, "licence": licence, "origin": origin}}
