"""A random identity for this database, so prebuilt tile archives know which database they hold
(data versions are only counters and repeat across databases); per-tier spatial indexes so a
tile reads only its own tier.

Revision ID: 0003
"""

from alembic import op
from psycopg import sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIERS = (1, 2, 3)


def _index(tier: int) -> sql.Identifier:
    return sql.Identifier(f"boundary_tiers_geom_t{tier}")


def upgrade() -> None:
    op.execute("CREATE TABLE service_identity (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
               "created_at timestamptz NOT NULL DEFAULT now(), one boolean NOT NULL DEFAULT true "
               "UNIQUE CHECK (one))")
    op.execute("INSERT INTO service_identity DEFAULT VALUES")
    for tier in TIERS:
        op.execute(sql.SQL("CREATE INDEX {} ON boundary_tiers USING gist (geom) WHERE tier = {}")
                   .format(_index(tier), sql.Literal(tier)).as_string())


def downgrade() -> None:
    for tier in TIERS:
        op.execute(sql.SQL("DROP INDEX {}").format(_index(tier)).as_string())
    op.execute("DROP TABLE service_identity")
