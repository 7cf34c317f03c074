"""Safe pruning: `members import --prune` removes at most 10 % of the territories (20 at most)
unless --force, says whom it would remove, and history keeps the removed initiatives' themes."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from geo_service.campaign.members import prune_limit

GEO = str(Path(sys.executable).with_name("geo-service"))


def geo(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's result, its output with line wrapping undone."""
    done = subprocess.run([GEO, *args], capture_output=True, text=True, timeout=300, cwd="/",
                          env={**os.environ, "DATABASE_URL": dsn})
    return subprocess.CompletedProcess(done.args, done.returncode, " ".join(done.stdout.split()),
                                       " ".join(done.stderr.split()))


def count(dsn: str, query: str = "SELECT count(*) FROM territories") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def roster_without(settings, tmp_path: Path, leave_out: int) -> tuple[Path, list[dict]]:
    with (settings.sample_dir / "human_rights_territories.csv").open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    path = tmp_path / f"roster-without-{leave_out}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows[:-leave_out])
    return path, rows[-leave_out:]


def test_the_limit_is_a_tenth_and_at_most_twenty() -> None:
    assert [prune_limit(n) for n in (5, 97, 150, 1000)] == [0, 9, 15, 20]


def test_a_one_row_roster_removes_nobody_without_force(sample_copy: str, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("name,country_iso2,level,commitment_kind,source,confidence\n"
                    "Grigny,FR,municipality,campaign-signatory,https://example.org/g,high\n")
    before = (count(sample_copy), count(sample_copy, "SELECT count(*) FROM imports"))
    refused = geo(sample_copy, "members", "import", str(path), "--prune")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = re.search(r"--prune would remove (\d+) of (\d+) territories", refused.stderr)
    assert said, refused.stderr[:400]
    # every territory but the one the file names (Grigny is in the sample)
    assert int(said[2]) == before[0] and int(said[1]) >= before[0] - 1
    assert "--force" in refused.stderr and "es-municipality-barcelona" in refused.stderr
    assert (count(sample_copy), count(sample_copy, "SELECT count(*) FROM imports")) == before
    listed = geo(sample_copy, "members", "import", str(path), "--prune", "--dry-run")
    assert listed.returncode == 0 and f"--prune would remove {said[1]}:" in listed.stderr


def test_force_removes_and_history_keeps_initiatives_with_their_themes(
        sample_copy: str, settings, tmp_path: Path) -> None:
    path, left_out = roster_without(settings, tmp_path, 12)  # more than 9 of 97
    before = count(sample_copy)
    refused = geo(sample_copy, "members", "import", str(path), "--prune")
    assert refused.returncode == 2 and "would remove 12 of" in refused.stderr
    assert count(sample_copy) == before
    with psycopg.connect(sample_copy) as conn:
        themed = conn.execute(
            "SELECT i.id, array_agg(it.theme_slug ORDER BY it.theme_slug) FROM initiatives i "
            "JOIN initiative_themes it ON it.initiative_id = i.id JOIN territories t "
            "ON t.id = i.territory_id WHERE (t.name, t.iso3166_1) IN (SELECT * FROM "
            "unnest(%s::text[], %s::text[])) GROUP BY i.id",
            ([r["name"] for r in left_out], [r["country_iso2"] for r in left_out])).fetchall()
    forced = geo(sample_copy, "members", "import", str(path), "--prune", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "removed 12" in forced.stdout and count(sample_copy) == before - 12
    with psycopg.connect(sample_copy) as conn:
        kept = dict(conn.execute(
            "SELECT row_id, previous->'themes' FROM history WHERE table_name = 'initiatives' "
            "AND operation = 'delete'").fetchall())
    assert themed, "the left-out territories had initiatives with themes (sample data)"
    for initiative, themes in themed:
        assert kept[initiative] == themes
    with psycopg.connect(sample_copy) as conn:  # put them back for the next test
        pruned = conn.execute("SELECT max(id) FROM imports").fetchone()[0]
    assert geo(sample_copy, "members", "restore", str(pruned)).returncode == 0
    assert count(sample_copy) == before


def _state(dsn: str) -> dict[str, tuple]:
    """Territories, initiatives and their themes, all columns but the time of the last change
    (and the import a row came from, which a restore records as itself)."""
    with psycopg.connect(dsn) as conn:
        return {table: conn.execute(
            f"SELECT count(*), md5(string_agg((to_jsonb(x) - 'updated_at' - 'import_id')::text, "
            f"',' ORDER BY {order})) FROM {table} x").fetchone()
            for table, order in (("territories", "x.id"), ("initiatives", "x.id"),
                                 ("initiative_themes", "x.initiative_id, x.theme_slug"))}


def test_restore_brings_back_what_a_prune_removed_and_an_import_changed(
        sample_copy: str, settings, tmp_path: Path) -> None:
    """Round trip: an import that changes one territory and prunes five, then `members restore`
    of it: territories, initiatives and themes are as they were (the rows it added stay out of
    it: it added none). The restore is an import too, and can itself be restored."""
    path, _ = roster_without(settings, tmp_path, 5)
    with path.open(encoding="utf-8") as f:
        text = f.read()
    changed = text.replace(",high\n", ",medium\n", 1)  # one territory's confidence changes
    assert changed != text
    path.write_text(changed, encoding="utf-8")
    before = _state(sample_copy)
    done = geo(sample_copy, "members", "import", str(path), "--prune")
    assert done.returncode == 0 and "removed 5" in done.stdout and "updated 1" in done.stdout, done
    assert _state(sample_copy) != before
    with psycopg.connect(sample_copy) as conn:
        import_id = conn.execute("SELECT max(id) FROM imports").fetchone()[0]
    listed = geo(sample_copy, "members", "imports")
    assert listed.returncode == 0 and str(import_id) in listed.stdout
    dry = geo(sample_copy, "members", "restore", str(import_id), "--dry-run")
    assert dry.returncode == 0 and "would restore (dry run, nothing written) 6 territories" \
        in dry.stdout, dry
    assert _state(sample_copy) != before  # a dry run writes nothing
    restored = geo(sample_copy, "members", "restore", str(import_id))
    assert restored.returncode == 0 and "restored 6 territories" in restored.stdout, restored
    assert _state(sample_copy) == before
    with psycopg.connect(sample_copy) as conn:
        restore_id = conn.execute("SELECT max(id) FROM imports WHERE kind = 'restore'"
                                  ).fetchone()[0]
    again = geo(sample_copy, "members", "restore", str(restore_id))  # undo the undo
    assert again.returncode == 0, again
    assert _state(sample_copy)["territories"][0] == before["territories"][0]
    missing = geo(sample_copy, "members", "restore", "999999")
    assert missing.returncode == 2 and "no such import" in missing.stderr
