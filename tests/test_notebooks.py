"""The researcher notebooks run, top to bottom, against a live service (nbclient), and are kept
in git without outputs. The one that loads its own boundaries leaves the database as it found it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient

from geo_service.campaign.members import remove_boundaries
from geo_service.errors import LoadError
from tests.conftest import counts

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
OWN_SOURCE = "es-ign-municipalities-notebook"  # what 03_own_boundaries loads, then removes


def placements(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, match_outcome, match_method, boundary_level, boundary_code, "
            "round(ST_X(location)::numeric, 6), round(ST_Y(location)::numeric, 6) "
            "FROM territories ORDER BY id").fetchall()


def test_there_are_notebooks_without_outputs() -> None:
    assert len(NOTEBOOKS) >= 3
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        stored = [c for c in book.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not stored, f"{path.name}: strip the outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(server: str, path: Path, database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("GEO_SERVICE_URL", server)
    monkeypatch.setenv("DATABASE_URL", database_url)  # the geo-service commands a notebook runs
    monkeypatch.setenv("MPLBACKEND", "agg")
    book = nbformat.read(path, as_version=4)
    before = (placements(database_url), counts(database_url))
    try:  # run from the notebooks folder, as a researcher opening them in Jupyter would
        NotebookClient(book, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    finally:
        try:  # a notebook stopped half-way must not leave its boundaries to the other tests
            left = remove_boundaries(database_url, OWN_SOURCE)
        except LoadError:
            left = None
    assert left is None, f"{path.name} left {OWN_SOURCE} loaded"
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    after = (placements(database_url), counts(database_url))
    assert after[0] == before[0], "every territory is back where it was"
    assert {k: v for k, v in after[1].items() if k != "data_sources"} == \
        {k: v for k, v in before[1].items() if k != "data_sources"}
