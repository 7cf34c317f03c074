"""The project's sample campaign data (data/sample): loaded by `make run` on first start."""

from __future__ import annotations

from pathlib import Path

import psycopg

from geo_service.campaign.initiatives import import_initiatives
from geo_service.campaign.members import import_members
from geo_service.campaign.reference import load_reference
from geo_service.campaign.rows import ImportResult
from geo_service.manifests import file_sha256
from geo_service.settings import Settings


def _already_imported(dsn: str, kind: str, path: Path) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT 1 FROM imports WHERE kind = %s AND file_name = %s AND checksum = %s "
            "AND NOT coalesce((options->>'dry_run')::boolean, false) LIMIT 1",
            (kind, path.name, file_sha256(path))).fetchone()
    return row is not None


def load_sample(settings: Settings, dsn: str, force: bool = False
                ) -> list[tuple[str, ImportResult | None]]:
    """Themes and sections, then territories, then initiatives; files already imported are skipped.

    Initiatives of places with no territory row (four in the sample) are reported, not invented.
    """
    folder = settings.sample_dir
    with psycopg.connect(dsn) as conn:
        load_reference(conn, folder / "rights_themes.csv", folder / "uclg_sections.csv")
    results: list[tuple[str, ImportResult | None]] = []
    for kind, name, importer, skip_invalid in (
        ("members", "human_rights_territories.csv", import_members, False),
        ("initiatives", "initiatives.csv", import_initiatives, True),
    ):
        path = folder / name
        if not force and _already_imported(dsn, kind, path):
            results.append((kind, None))
            continue
        results.append((kind, importer(dsn, path, skip_invalid=skip_invalid)))
    return results
