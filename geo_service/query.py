"""Service-level reads: what /health reports about the database (features live in features.py)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from geo_service.features import data_version

LEVELS = ("country", "region", "municipality")


async def health(conn: AsyncConnection) -> dict[str, Any]:
    """Versions and counts, read from the database itself."""
    row = await (await conn.execute(
        "SELECT version(), postgis_lib_version(), "
        "(SELECT version_num FROM alembic_version), "
        "(SELECT count(*) FROM places), "
        "(SELECT count(*) FROM territories)"
    )).fetchone()
    assert row is not None
    counts = await (await conn.execute(
        "SELECT level, count(*) FROM boundaries GROUP BY level"
    )).fetchall()
    return {
        "data_version": await data_version(conn),
        "postgres": row[0].split(",")[0],
        "postgis": row[1],
        "schema_revision": row[2],
        "boundaries": {level: 0 for level in LEVELS} | dict(counts),
        "places": row[3],
        "territories": row[4],
    }
