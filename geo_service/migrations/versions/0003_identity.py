"""A random identity for this database, so prebuilt tile archives know which database they hold
(data versions are only counters and repeat across databases); per-tier spatial indexes so a
tile reads only its own tier.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIERS = (1, 2, 3)


def upgrade() -> None:
    op.execute("CREATE TABLE service_identity (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
               "created_at timestamptz NOT NULL DEFAULT now(), one boolean NOT NULL DEFAULT true "
               "UNIQUE CHECK (one))")
    op.execute("INSERT INTO service_identity DEFAULT VALUES")
    for tier in TIERS:
        op.execute(f"CREATE INDEX boundary_tiers_geom_t{tier} ON boundary_tiers USING gist (geom) "
                   f"WHERE tier = {tier}")


def downgrade() -> None:
    for tier in TIERS:
        op.execute(f"DROP INDEX boundary_tiers_geom_t{tier}")
    op.execute("DROP TABLE service_identity")
