"""Migrations upgrade a database that holds data, in place."""

from __future__ import annotations

import psycopg
import pytest
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


# a territory's box as 0007 defines it, from the join itself (not the stored function)
_BOX_MISMATCHES = ("SELECT count(*) FILTER (WHERE NOT ST_OrderingEquals(t.bbox, ST_Envelope("
                   "ST_Collect(ST_Envelope(b.geom), t.location)))), count(b.id), count(*) "
                   "FROM territories t LEFT JOIN boundaries b ON b.level = t.boundary_level "
                   "AND b.code = t.boundary_code")


def _boxes(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Territories whose stored box is not the box of their boundary and point, those with a
    boundary, and all."""
    return conn.execute(_BOX_MISMATCHES).fetchone()


def test_0007_fills_the_territory_boxes_and_keeps_them_as_boundaries_change(
        sample_copy: str) -> None:
    """Down to 0006 and up: every territory gets the box of its boundary and its point, without
    a new data version; then the box follows its boundary redrawn, removed and put back, and
    the territory pinned elsewhere."""
    command.downgrade(db.alembic_config(sample_copy), "0006")
    with psycopg.connect(sample_copy) as conn:
        version = conn.execute("SELECT n FROM data_version").fetchone()[0]
    db.upgrade(sample_copy)
    with psycopg.connect(sample_copy, autocommit=True) as conn:
        wrong, placed, territories = _boxes(conn)
        assert (wrong, territories) == (0, 97) and placed >= 30
        assert conn.execute("SELECT n FROM data_version").fetchone()[0] == version
        tid, bid = conn.execute(
            "SELECT t.id, b.id FROM territories t JOIN boundaries b ON b.level = t.boundary_level"
            " AND b.code = t.boundary_code WHERE b.level = 'municipality' ORDER BY t.id LIMIT 1"
        ).fetchone()

        def box() -> tuple[float, float]:
            return conn.execute("SELECT ST_XMin(bbox), ST_XMax(bbox) FROM territories "
                                "WHERE id = %s", (tid,)).fetchone()

        west, east = box()
        assert east - west > 0.01  # a municipality's box, not a point's
        conn.execute("UPDATE boundaries SET geom = ST_Translate(geom, 2, 0) WHERE id = %s", (bid,))
        assert box()[1] == pytest.approx(east + 2)  # redrawn: the box follows
        conn.execute("CREATE TEMP TABLE kept AS SELECT * FROM boundaries WHERE id = %s", (bid,))
        conn.execute("DELETE FROM boundaries WHERE id = %s", (bid,))
        west_gone, east_gone = box()
        assert west_gone == east_gone  # no boundary: the point's box
        conn.execute("INSERT INTO boundaries SELECT * FROM kept")
        assert box()[1] == pytest.approx(east + 2)  # put back: the boundary's box again
        other = conn.execute("SELECT code FROM boundaries WHERE level = 'country' AND code = 'BR'"
                             ).fetchone()[0]
        conn.execute("UPDATE territories SET boundary_level = 'country', boundary_code = %s "
                     "WHERE id = %s", (other, tid))
        assert box()[1] - box()[0] > 30  # pinned to Brazil: Brazil's box (and its point)
        assert _boxes(conn)[0] == 0
