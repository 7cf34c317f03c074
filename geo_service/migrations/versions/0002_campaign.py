"""Campaign data: rights themes, UCLG sections, territories, initiatives, imports and history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KINDS = ("municipality", "metropolitan-area", "region", "association")
COMMITMENTS = ("campaign-signatory", "declared", "charter", "ordinance", "grassroots-pdhre",
               "other-commitment", "engagement-only")
CONFIDENCE = ("high", "medium", "low")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "rights_themes",
        sa.Column("slug", sa.Text, primary_key=True),
        sa.Column("theme_group", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text, nullable=False),
        sa.Column("name_fr", sa.Text, nullable=False),
        sa.Column("name_es", sa.Text, nullable=False),
    )
    op.create_table(
        "uclg_sections",
        sa.Column("slug", sa.Text, primary_key=True),
        sa.Column("name_en", sa.Text, nullable=False),
        sa.Column("name_fr", sa.Text, nullable=False),
        sa.Column("name_es", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("country_list_status", sa.Text),
    )
    op.create_table(
        "uclg_section_countries",
        sa.Column("section_slug", sa.Text, sa.ForeignKey("uclg_sections.slug", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("iso3166_1", sa.String(2), primary_key=True),
    )
    op.create_index("uclg_section_countries_country", "uclg_section_countries", ["iso3166_1"])

    op.create_table(
        "imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("counts", JSONB, server_default="{}", nullable=False),
        sa.Column("options", JSONB, server_default="{}", nullable=False),
    )

    op.create_table(
        "territories",
        sa.Column("id", sa.Text, primary_key=True, comment="explicit id, else country-kind-name"),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("local_name", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("iso3166_1", sa.String(2), nullable=False),
        sa.Column("sections", ARRAY(sa.Text), server_default="{}", nullable=False),
        sa.Column("commitment_kind", sa.Text, nullable=False),
        sa.Column("commitment", sa.Text, comment="what was committed, in the source's words"),
        sa.Column("year", sa.SmallInteger),
        sa.Column("joined_on", sa.Date),
        sa.Column("campaign_wave", sa.Text),
        sa.Column("status", sa.Text, server_default="active", nullable=False),
        sa.Column("website", sa.Text),
        sa.Column("sources", ARRAY(sa.Text), server_default="{}", nullable=False),
        sa.Column("confidence", sa.Text, nullable=False),
        sa.Column("boundary_level", sa.Text),
        sa.Column("boundary_code", sa.Text),
        sa.Column("location", Geometry("POINT", 4326, spatial_index=False), nullable=False),
        sa.Column("match_outcome", sa.Text, nullable=False),
        sa.Column("match_method", sa.Text),
        sa.Column("match_score", sa.Float),
        sa.Column("match_candidates", JSONB, server_default="[]", nullable=False),
        sa.Column("override_boundary_code", sa.Text, comment="manual override, wins over matching"),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id")),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint(_in("kind", KINDS), name="territory_kind_known"),
        sa.CheckConstraint(_in("commitment_kind", COMMITMENTS), name="commitment_kind_known"),
        sa.CheckConstraint(_in("confidence", CONFIDENCE), name="territory_confidence_known"),
        sa.CheckConstraint("match_outcome IN ('matched', 'point', 'ambiguous', 'unmatched')",
                           name="match_outcome_known"),
    )
    op.create_index("territories_location", "territories", ["location"], postgresql_using="gist")
    op.create_index("territories_country", "territories", ["iso3166_1"])
    op.create_index("territories_boundary", "territories", ["boundary_level", "boundary_code"])

    op.create_table(
        "initiatives",
        sa.Column("id", sa.Text, primary_key=True, comment="explicit id, else territory-title"),
        sa.Column("territory_id", sa.Text,
                  sa.ForeignKey("territories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("year_started", sa.SmallInteger),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("confidence", sa.Text, nullable=False),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id")),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("status IN ('active', 'ended', 'unknown')", name="initiative_status"),
        sa.CheckConstraint(_in("confidence", CONFIDENCE), name="initiative_confidence_known"),
    )
    op.create_index("initiatives_territory", "initiatives", ["territory_id"])
    op.create_table(
        "initiative_themes",
        sa.Column("initiative_id", sa.Text, sa.ForeignKey("initiatives.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("theme_slug", sa.Text, sa.ForeignKey("rights_themes.slug"), primary_key=True),
    )

    op.create_table(
        "history",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("row_id", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("previous", JSONB, nullable=False, comment="the row as it was before"),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id")),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("operation IN ('update', 'delete')", name="history_operation"),
    )
    op.create_index("history_row", "history", ["table_name", "row_id"])


def downgrade() -> None:
    for table in ("history", "initiative_themes", "initiatives", "territories", "imports",
                  "uclg_section_countries", "uclg_sections", "rights_themes"):
        op.drop_table(table)
