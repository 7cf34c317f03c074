"""A match outcome more: `implausible`, a boundary found by name but rejected at match time (its
shape does not hold the gazetteer's place of that name, or has no municipality's area); the
territory sits on the gazetteer point and the rejected boundary is kept among the candidates.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE territories DROP CONSTRAINT match_outcome_known")
    op.execute("ALTER TABLE territories ADD CONSTRAINT match_outcome_known CHECK (match_outcome "
               "IN ('matched', 'point', 'ambiguous', 'unmatched', 'implausible'))")


def downgrade() -> None:
    op.execute("UPDATE territories SET match_outcome = 'point' WHERE match_outcome = "
               "'implausible'")
    op.execute("ALTER TABLE territories DROP CONSTRAINT match_outcome_known")
    op.execute("ALTER TABLE territories ADD CONSTRAINT match_outcome_known CHECK (match_outcome "
               "IN ('matched', 'point', 'ambiguous', 'unmatched'))")
