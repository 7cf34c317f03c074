"""The one SQL layer the web API reads through: boundaries as GeoJSON built by PostGIS."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

BOUNDARY_COLLECTIONS: dict[str, str] = {
    "countries": "country",
    "regions": "region",
    "municipalities": "municipality",
}

_PROPERTIES = (
    "code", "name", "name_en", "name_fr", "name_es", "name_local", "iso3166_1", "iso3166_2",
    "national_code", "wikidata_id", "parent_code", "source", "area_km2",
)


async def health(conn: AsyncConnection) -> dict[str, Any]:
    """Versions and counts, read from the database itself."""
    row = await (await conn.execute(
        "SELECT version(), postgis_lib_version(), "
        "(SELECT version_num FROM alembic_version), "
        "(SELECT coalesce(max(id), 0) FROM data_sources), "
        "(SELECT count(*) FROM places)"
    )).fetchone()
    assert row is not None
    counts = await (await conn.execute(
        "SELECT level, count(*) FROM boundaries GROUP BY level"
    )).fetchall()
    return {
        "postgres": row[0].split(",")[0],
        "postgis": row[1],
        "schema_revision": row[2],
        "data_version": row[3],
        "boundaries": {level: 0 for level in BOUNDARY_COLLECTIONS.values()} | dict(counts),
        "places": row[4],
    }


async def boundary_items(conn: AsyncConnection, level: str, *, limit: int, offset: int,
                         country: str | None, parent: str | None) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of one level, built in SQL, plus the matched count."""
    where = [sql.SQL("level = {}").format(sql.Literal(level))]
    params: list[Any] = []
    if country:
        where.append(sql.SQL("iso3166_1 = %s"))
        params.append(country.upper())
    if parent:
        where.append(sql.SQL("parent_code = %s"))
        params.append(parent)
    condition = sql.SQL(" AND ").join(where)
    props = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in _PROPERTIES
    )
    query = sql.SQL(
        "WITH page AS (SELECT * FROM boundaries WHERE {cond} ORDER BY code LIMIT %s OFFSET %s) "
        "SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg("
        "json_build_object('type', 'Feature', 'id', code, "
        "'geometry', ST_AsGeoJSON(geom, 6)::json, 'properties', json_build_object({props}))"
        "), '[]'::json))::text, (SELECT count(*) FROM boundaries WHERE {cond}) FROM page"
    ).format(cond=condition, props=props)
    row = await (await conn.execute(query, [*params, limit, offset, *params])).fetchone()
    assert row is not None
    return {"body": row[0], "matched": row[1]}
