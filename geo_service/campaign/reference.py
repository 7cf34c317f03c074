"""Reference data: rights themes and UCLG sections (with their countries), loaded from CSV."""

from __future__ import annotations

from pathlib import Path

import psycopg

from geo_service.campaign.tabular import read_table
from geo_service.errors import LoadError, RowProblem

THEME_COLUMNS = ("slug", "group", "name_en", "name_fr", "name_es")
SECTION_COLUMNS = ("slug", "name_en", "name_fr", "name_es", "body", "country_list_status",
                   "countries_iso2")


def _require(table_file: str, rows: list[dict[str, str]], numbers: list[int],
             columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    problems = [RowProblem(table_file, n, c, "is required")
                for n, row in zip(numbers, rows, strict=True)
                for c in columns if c not in optional and not row.get(c)]
    if problems:
        raise LoadError(problems)


def load_reference(conn: psycopg.Connection, themes_csv: Path, sections_csv: Path) -> dict[str, int]:
    """Upsert themes and sections; a section's country list is replaced by the file's."""
    themes = read_table(themes_csv, set(THEME_COLUMNS))
    _require(themes.file, themes.rows, themes.row_numbers, THEME_COLUMNS)
    sections = read_table(sections_csv, set(SECTION_COLUMNS))
    _require(sections.file, sections.rows, sections.row_numbers, SECTION_COLUMNS,
             optional=("body", "country_list_status"))
    with conn.transaction():
        for row in themes.rows:
            conn.execute(
                "INSERT INTO rights_themes (slug, theme_group, name_en, name_fr, name_es) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (slug) DO UPDATE SET "
                "theme_group = EXCLUDED.theme_group, name_en = EXCLUDED.name_en, "
                "name_fr = EXCLUDED.name_fr, name_es = EXCLUDED.name_es",
                tuple(row[c] for c in THEME_COLUMNS))
        for row in sections.rows:
            conn.execute(
                "INSERT INTO uclg_sections (slug, name_en, name_fr, name_es, body, "
                "country_list_status) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (slug) DO UPDATE "
                "SET name_en = EXCLUDED.name_en, name_fr = EXCLUDED.name_fr, "
                "name_es = EXCLUDED.name_es, body = EXCLUDED.body, "
                "country_list_status = EXCLUDED.country_list_status",
                tuple(row.get(c) or None for c in SECTION_COLUMNS[:-1]))
            conn.execute("DELETE FROM uclg_section_countries WHERE section_slug = %s", (row["slug"],))
            for iso in row["countries_iso2"].split():
                conn.execute("INSERT INTO uclg_section_countries VALUES (%s, %s)",
                             (row["slug"], iso.upper()))
    return {"rights_themes": len(themes.rows), "uclg_sections": len(sections.rows)}
