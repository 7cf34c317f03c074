"""One data version for every write: a counter bumped in the same transaction as any change to
the data tables (boundary loads and removals, imports, overrides, re-matches, reference data),
by triggers, so no writer can forget it. Every write statement first takes one advisory lock,
so writers are serialised (a second writer waits for the first to commit) and the counter grows
in commit order. Readers see the new version exactly when they see the new data.

Revision ID: 0004
"""

from alembic import op
from psycopg import sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("data_sources", "generalization_tiers", "boundaries", "boundary_tiers", "places",
          "rights_themes", "uclg_sections", "uclg_section_countries", "imports", "territories",
          "initiatives", "initiative_themes", "history")
WRITERS_LOCK = 727_001  # pg_advisory_xact_lock key of the data writers

FUNCTIONS = sql.SQL("""
CREATE FUNCTION data_writers_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock({lock});
  RETURN NULL;
END $$;

CREATE FUNCTION data_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' OR EXISTS (SELECT 1 FROM changed) THEN
    UPDATE data_version SET n = n + 1, changed_at = now(), txid = txid_current()
    WHERE txid IS DISTINCT FROM txid_current();
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION data_version_bump_always() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE data_version SET n = n + 1, changed_at = now(), txid = txid_current()
  WHERE txid IS DISTINCT FROM txid_current();
  RETURN NULL;
END $$;
""").format(lock=sql.Literal(WRITERS_LOCK))


def _triggers(table: str) -> list[sql.Composed]:
    t = sql.Identifier(table)

    def name(kind: str) -> sql.Identifier:
        return sql.Identifier(f"{table}_{kind}")

    return [
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                "FOR EACH STATEMENT EXECUTE FUNCTION data_writers_lock()").format(name("lock"), t),
        sql.SQL("CREATE TRIGGER {} AFTER INSERT ON {} REFERENCING NEW TABLE AS changed "
                "FOR EACH STATEMENT EXECUTE FUNCTION data_version_bump()").format(name("ins"), t),
        sql.SQL("CREATE TRIGGER {} AFTER UPDATE ON {} REFERENCING NEW TABLE AS changed "
                "FOR EACH STATEMENT EXECUTE FUNCTION data_version_bump()").format(name("upd"), t),
        sql.SQL("CREATE TRIGGER {} AFTER DELETE ON {} REFERENCING OLD TABLE AS changed "
                "FOR EACH STATEMENT EXECUTE FUNCTION data_version_bump()").format(name("del"), t),
        sql.SQL("CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT "
                "EXECUTE FUNCTION data_version_bump_always()").format(name("trunc"), t),
    ]


def upgrade() -> None:
    op.execute("CREATE TABLE data_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
               "n bigint NOT NULL, changed_at timestamptz NOT NULL DEFAULT now(), txid bigint)")
    op.execute("INSERT INTO data_version (n) VALUES (1)")  # never equal to an old "a.b.c" version
    op.execute(FUNCTIONS.as_string())
    for table in TABLES:
        for statement in _triggers(table):
            op.execute(statement.as_string())


def downgrade() -> None:
    for table in TABLES:
        for kind in ("lock", "ins", "upd", "del", "trunc"):
            op.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(f"{table}_{kind}"), sql.Identifier(table)).as_string())
    op.execute("DROP FUNCTION data_writers_lock(), data_version_bump(), "
               "data_version_bump_always()")
    op.execute("DROP TABLE data_version")
