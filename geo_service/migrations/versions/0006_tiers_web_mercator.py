"""The generalized tiers also stored in Web Mercator (EPSG:3857), as the vector tiles draw them:
a live tile then clips the stored 3857 shape instead of projecting every clipped shape on every
request.

`geom_3857` is a stored generated column, so PostgreSQL computes it from `geom` in the statement
that writes the row: every writer (the loader's INSERT, the region redraw, a restore) keeps it
right without knowing it exists, a load stays one transaction, and the upgrade fills it from the
rows already there (one table rewrite). It is a projection of data already counted, so the data
version is left alone. Latitudes are cut at ±89° first: the poles have no Mercator image, and no
tile (its buffer included) reaches past ±85.6°.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MERCATOR = ("ST_Transform(ST_ClipByBox2D(geom, ST_MakeEnvelope(-180, -89, 180, 89, 4326)), "
            "3857)")


def upgrade() -> None:
    op.execute("ALTER TABLE boundary_tiers ADD COLUMN geom_3857 geometry(Geometry, 3857) "
               f"GENERATED ALWAYS AS ({MERCATOR}) STORED")


def downgrade() -> None:
    op.execute("ALTER TABLE boundary_tiers DROP COLUMN geom_3857")
