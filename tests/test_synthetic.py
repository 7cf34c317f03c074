"""Synthetic rosters (`geo-service members synthetic`): importable as they are, every row on one
real boundary, the same file for the same seed, every country covered, labelled synthetic
everywhere, never in the default data; a count of nothing or more than the boundaries is refused."""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from typer.testing import CliRunner

from geo_service.campaign.members import import_members
from geo_service.campaign.synthetic import read_boundaries, write_synthetic
from geo_service.cli import app
from geo_service.errors import LoadError

ROOT = Path(__file__).resolve().parents[1]


def roster(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def available(dsn: str) -> tuple[int, set[str]]:
    """How many boundaries a roster may use, and the countries of the boundaries."""
    with psycopg.connect(dsn) as conn:
        subnational, countries = read_boundaries(conn)
        every = {r[0] for r in conn.execute(
            "SELECT DISTINCT iso3166_1 FROM boundaries WHERE iso3166_1 IS NOT NULL").fetchall()}
    return len(subnational) + len(countries), every


def test_a_roster_imports_with_every_row_on_its_own_boundary(sample_copy: str, tmp_path: Path
                                                             ) -> None:
    path = tmp_path / "synthetic.csv"
    write_synthetic(sample_copy, path, count=300, seed=7)
    result = import_members(sample_copy, path)
    assert result.problems == []
    assert result.counts["inserted"] == 300 and result.counts["invalid"] == 0
    assert result.counts.get("matched") == 300, result.counts
    written = {r["id"]: r["boundary_code"] for r in roster(path)}
    with psycopg.connect(sample_copy) as conn:
        stored = dict(conn.execute(
            "SELECT t.id, t.boundary_code FROM territories t JOIN boundaries b "
            "ON b.level = t.boundary_level AND b.code = t.boundary_code "
            "WHERE t.id LIKE 'synthetic-%%' AND ST_Intersects(b.geom, t.location)").fetchall())
    assert stored == written  # each on the boundary it names, its point inside it


def test_the_same_seed_gives_the_same_file(sample_dsn: str, tmp_path: Path) -> None:
    one, two, other = tmp_path / "1.csv", tmp_path / "2.csv", tmp_path / "3.csv"
    write_synthetic(sample_dsn, one, count=500, seed=1)
    write_synthetic(sample_dsn, two, count=500, seed=1)
    write_synthetic(sample_dsn, other, count=500, seed=2)
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes() != other.read_bytes()


def test_every_country_is_covered_and_every_row_says_it_is_synthetic(sample_dsn: str,
                                                                      tmp_path: Path) -> None:
    _, countries = available(sample_dsn)
    path = tmp_path / "synthetic.csv"
    write_synthetic(sample_dsn, path, count=len(countries) + 10, seed=3)
    rows = roster(path)
    assert {r["country_iso2"] for r in rows} == countries
    assert len({r["boundary_code"] for r in rows}) == len(rows)  # no boundary twice
    assert {r["level"] for r in rows} >= {"municipality", "region"}
    for number, row in enumerate(rows, start=1):
        assert row["id"] == f"synthetic-{number:05d}"
        assert row["name"].startswith(f"Synthetic {number:05d} (")
        assert "SYNTHETIC" in row["commitment"] and "not a member" in row["commitment"]
        assert urlsplit(row["source"]).hostname == "example.org"
        assert row["confidence"] == "low"


def test_fewer_territories_than_countries_take_one_country_each(sample_dsn: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "synthetic.csv"
    for count in (1, 5):
        write_synthetic(sample_dsn, path, count=count, seed=1)
        rows = roster(path)
        assert len(rows) == count
        assert len({r["country_iso2"] for r in rows}) == count


@pytest.mark.parametrize("count", [0, -3, None])
def test_a_count_of_nothing_or_more_than_the_boundaries_is_refused(
        sample_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int | None
) -> None:
    total, _ = available(sample_dsn)
    count = total + 1 if count is None else count
    path = tmp_path / "synthetic.csv"
    with pytest.raises(LoadError, match="at least 1" if count < 1 else f"{total} boundaries"):
        write_synthetic(sample_dsn, path, count=count, seed=1)
    monkeypatch.setenv("DATABASE_URL", sample_dsn)
    result = CliRunner().invoke(app, ["members", "synthetic", str(path), "--count", str(count)])
    assert result.exit_code == 2, result.output
    assert "synthetic roster refused" in result.output
    assert not path.exists()


def test_the_cli_writes_a_roster(sample_dsn: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sample_dsn)
    path = tmp_path / "synthetic.csv"
    result = CliRunner().invoke(app, ["members", "synthetic", str(path), "--count", "12",
                                      "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "12 synthetic territories" in " ".join(result.output.split())
    assert len(roster(path)) == 12


def test_synthetic_territories_are_never_default_data(sample_dsn: str) -> None:
    with psycopg.connect(sample_dsn) as conn:
        found = conn.execute("SELECT count(*) FROM territories WHERE id LIKE 'synthetic-%' "
                             "OR sources::text LIKE '%example.org/synthetic%'").fetchone()
    assert found == (0,)
    shipped = [p for folder in ("data", "boundaries") for p in (ROOT / folder).rglob("*")
               if p.is_file() and b"example.org/synthetic" in p.read_bytes()]
    assert shipped == []
