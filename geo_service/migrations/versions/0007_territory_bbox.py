"""Each territory's box, stored and indexed: `territories.bbox`, the box around the full shape of
the boundary it sits on and its own point (its point alone when it has no boundary).

A spatial read of the members (items with `bbox=`, a tile, a map image of part of the world) used
to test `coalesce(b.geom, t.location)`: an expression over the territory -> boundary join, which
no index serves. With 9,700 members the planner hashed the whole boundaries table (68,827 rows,
2.2 KB of shape each) for every such request. With the box indexed, the candidates are found in
the territories' own GiST index, and a member whose box lies inside the query box is known to
intersect it without reading its shape.

The box is kept by triggers, so no writer can forget it: a territory's row gets its box whenever
it is written (an import, an override, a restore), and a statement that inserts, changes or
removes boundaries gives new boxes to the territories sitting on them (a layer reloaded, a region
redrawn). It is derived from data already counted, so filling it leaves the data version alone.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FUNCTIONS = """
CREATE FUNCTION territory_bbox(level text, code text, location geometry) RETURNS geometry
LANGUAGE sql STABLE AS $$
  SELECT ST_Envelope(ST_Collect((SELECT ST_Envelope(b.geom) FROM boundaries b
                                 WHERE b.level = $1 AND b.code = $2), $3))
$$;

CREATE FUNCTION territory_bbox_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.bbox := territory_bbox(NEW.boundary_level, NEW.boundary_code, NEW.location);
  RETURN NEW;
END $$;

CREATE FUNCTION territory_bbox_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE territories t SET bbox = territory_bbox(t.boundary_level, t.boundary_code, t.location)
  FROM (SELECT DISTINCT level, code FROM changed) c
  WHERE t.boundary_level = c.level AND t.boundary_code = c.code
    AND t.bbox IS DISTINCT FROM territory_bbox(t.boundary_level, t.boundary_code, t.location);
  RETURN NULL;
END $$;
"""

TRIGGERS = [
    "CREATE TRIGGER territories_bbox BEFORE INSERT OR UPDATE ON territories FOR EACH ROW "
    "EXECUTE FUNCTION territory_bbox_row()",
    "CREATE TRIGGER boundaries_bbox_ins AFTER INSERT ON boundaries REFERENCING NEW TABLE AS "
    "changed FOR EACH STATEMENT EXECUTE FUNCTION territory_bbox_follow()",
    "CREATE TRIGGER boundaries_bbox_upd_new AFTER UPDATE ON boundaries REFERENCING NEW TABLE AS "
    "changed FOR EACH STATEMENT EXECUTE FUNCTION territory_bbox_follow()",
    "CREATE TRIGGER boundaries_bbox_upd_old AFTER UPDATE ON boundaries REFERENCING OLD TABLE AS "
    "changed FOR EACH STATEMENT EXECUTE FUNCTION territory_bbox_follow()",
    "CREATE TRIGGER boundaries_bbox_del AFTER DELETE ON boundaries REFERENCING OLD TABLE AS "
    "changed FOR EACH STATEMENT EXECUTE FUNCTION territory_bbox_follow()",
]


def upgrade() -> None:
    op.execute("ALTER TABLE territories ADD COLUMN bbox geometry(Geometry, 4326)")
    op.execute(FUNCTIONS)
    # filled without the data version's triggers: the box is derived from counted data
    op.execute("ALTER TABLE territories DISABLE TRIGGER USER")
    op.execute("UPDATE territories SET bbox = territory_bbox(boundary_level, boundary_code, "
               "location)")
    op.execute("ALTER TABLE territories ENABLE TRIGGER USER")
    op.execute("ALTER TABLE territories ALTER COLUMN bbox SET NOT NULL")
    op.execute("CREATE INDEX territories_bbox ON territories USING gist (bbox)")
    for statement in TRIGGERS:
        op.execute(statement)
    op.execute("ANALYZE territories")


def downgrade() -> None:
    for trigger, table in (("territories_bbox", "territories"), ("boundaries_bbox_ins", "boundaries"),
                           ("boundaries_bbox_upd_new", "boundaries"),
                           ("boundaries_bbox_upd_old", "boundaries"),
                           ("boundaries_bbox_del", "boundaries")):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute("ALTER TABLE territories DROP COLUMN bbox")
    op.execute("DROP FUNCTION territory_bbox_follow(), territory_bbox_row(), "
               "territory_bbox(text, text, geometry)")
