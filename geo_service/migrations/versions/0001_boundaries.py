"""Boundaries, their generalized tiers, the gazetteer of places and the record of loads.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "data_sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("version", sa.Text),
        sa.Column("licence", sa.Text),
        sa.Column("attribution", sa.Text),
        sa.Column("origin", sa.Text, comment="package and path, or file, the data came from"),
        sa.Column("checksum", sa.Text, nullable=False, comment="sha256 of the input"),
        sa.Column("features", sa.Integer, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("duration_s", sa.Float),
        sa.Column("details", JSONB, server_default="{}", nullable=False),
    )
    op.create_index("data_sources_source_level", "data_sources", ["source", "level"])

    op.create_table(
        "generalization_tiers",
        sa.Column("tier", sa.SmallInteger, primary_key=True),
        sa.Column("tolerance_deg", sa.Float, nullable=False),
        sa.Column("max_zoom", sa.SmallInteger, nullable=False,
                  comment="highest web-map zoom this tier is meant for"),
    )

    op.create_table(
        "boundaries",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False, comment="unique within the level"),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("iso3166_1", sa.String(2)),
        sa.Column("iso3166_2", sa.Text),
        sa.Column("national_code", sa.Text),
        sa.Column("wikidata_id", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text),
        sa.Column("name_fr", sa.Text),
        sa.Column("name_es", sa.Text),
        sa.Column("name_local", sa.Text),
        sa.Column("names", JSONB, server_default="{}", nullable=False),
        sa.Column("parent_code", sa.Text, comment="code of the boundary one level up"),
        sa.Column("geom", Geometry("MULTIPOLYGON", 4326, spatial_index=False), nullable=False),
        sa.Column("label_point", Geometry("POINT", 4326, spatial_index=False), nullable=False),
        sa.Column("area_km2", sa.Float),
        sa.Column("properties", JSONB, server_default="{}", nullable=False),
        sa.Column("data_source_id", sa.Integer, sa.ForeignKey("data_sources.id")),
        sa.CheckConstraint("level IN ('country', 'region', 'municipality')", name="level_known"),
        sa.UniqueConstraint("level", "code", name="boundaries_level_code"),
    )
    op.create_index("boundaries_geom", "boundaries", ["geom"], postgresql_using="gist")
    op.create_index("boundaries_iso3166_1", "boundaries", ["iso3166_1"])
    op.create_index("boundaries_iso3166_2", "boundaries", ["iso3166_2"])
    op.create_index("boundaries_parent", "boundaries", ["level", "parent_code"])
    op.create_index("boundaries_source", "boundaries", ["source", "level"])

    op.create_table(
        "boundary_tiers",
        sa.Column("boundary_id", sa.BigInteger,
                  sa.ForeignKey("boundaries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tier", sa.SmallInteger, sa.ForeignKey("generalization_tiers.tier"),
                  primary_key=True),
        sa.Column("geom", Geometry("MULTIPOLYGON", 4326, spatial_index=False), nullable=False),
    )
    op.create_index("boundary_tiers_geom", "boundary_tiers", ["geom"], postgresql_using="gist")

    op.create_table(
        "places",
        sa.Column("geonameid", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("ascii_name", sa.Text),
        sa.Column("alternate_names", ARRAY(sa.Text), server_default="{}", nullable=False),
        sa.Column("iso3166_1", sa.String(2), nullable=False),
        sa.Column("admin1_code", sa.Text),
        sa.Column("population", sa.BigInteger),
        sa.Column("timezone", sa.Text),
        sa.Column("geom", Geometry("POINT", 4326, spatial_index=False), nullable=False),
        sa.Column("data_source_id", sa.Integer, sa.ForeignKey("data_sources.id")),
    )
    op.create_index("places_geom", "places", ["geom"], postgresql_using="gist")
    op.create_index("places_country_name", "places", ["iso3166_1", "name"])


def downgrade() -> None:
    for table in ("places", "boundary_tiers", "boundaries", "generalization_tiers",
                  "data_sources"):
        op.drop_table(table)
