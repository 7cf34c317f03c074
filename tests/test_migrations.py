"""Migrations upgrade a database that holds data, in place."""

from __future__ import annotations

import psycopg
from alembic import command

from geo_service import db

MERCATOR = ("ST_Transform(ST_ClipByBox2D(geom, ST_MakeEnvelope(-180, -89, 180, 89, 4326)), "
            "3857)")


def _tiers(dsn: str) -> tuple[int, int, int, str]:
    """Tier rows, those whose geom_3857 is the projection of geom, those reaching past ±89°,
    and the data version."""
    with psycopg.connect(dsn) as conn:
        rows, projected, polar = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE ST_SRID(geom_3857) = 3857 AND "
            f"ST_OrderingEquals(geom_3857, {MERCATOR})), count(*) FILTER (WHERE "
            "ST_YMin(geom) < -89 OR ST_YMax(geom) > 89) FROM boundary_tiers").fetchone()
        version = conn.execute("SELECT n::text FROM data_version").fetchone()[0]
    return rows, projected, polar, version


def test_0006_fills_the_web_mercator_tiers_from_the_rows_already_there(sample_copy: str) -> None:
    """Down to 0005 (no geom_3857) and up again: every tier row of the loaded data gets its
    projection, Antarctica's cut at -89° included, without a new data version; rows written
    afterwards get theirs from PostgreSQL too."""
    rows, projected, polar, version = _tiers(sample_copy)
    assert rows > 10_000 and projected == rows and polar >= 1
    command.downgrade(db.alembic_config(sample_copy), "0005")
    with psycopg.connect(sample_copy) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                            "'boundary_tiers' AND column_name = 'geom_3857'").fetchone() == (0,)
    db.upgrade(sample_copy)
    assert _tiers(sample_copy) == (rows, rows, polar, version)  # filled; the data unchanged
    with psycopg.connect(sample_copy) as conn:
        conn.execute("UPDATE boundary_tiers SET geom = ST_Multi(ST_Translate(geom, 0.5, 0)) "
                     "WHERE tier = 1 AND boundary_id = (SELECT min(boundary_id) FROM "
                     "boundary_tiers)")
    after = _tiers(sample_copy)
    assert after[:3] == (rows, rows, polar) and after[3] != version  # a write bumps it
