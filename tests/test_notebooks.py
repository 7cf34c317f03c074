"""The researcher notebooks run, top to bottom, against a live service (nbclient), and are kept
in git without outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from geo_service.campaign.sample import load_sample
from tests.conftest import live_server

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def server(settings, database_url: str, default_data) -> Iterator[str]:
    load_sample(settings, database_url)
    with live_server(settings, database_url) as url:
        yield url


def test_there_are_notebooks_without_outputs() -> None:
    assert len(NOTEBOOKS) >= 2
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        stored = [c for c in book.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not stored, f"{path.name}: strip the outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(server: str, path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEO_SERVICE_URL", server)
    monkeypatch.setenv("MPLBACKEND", "agg")
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
