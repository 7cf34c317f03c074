"""Incremental archive builds: after members change, only their tiles are rendered again and the
archives equal a full build byte for byte; a boundary change, another zoom or `force` renders
everything; a build that fails midway leaves the old archives in place."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from geo_service.campaign.members import import_members, set_override
from geo_service.render import tiles as tilestore
from geo_service.render.i18n import LANGS

ZOOM = 4  # 341 tiles: enough for a member's tiles to be a small share


def _build(dsn: str, directory: Path, force: bool = False, zoom: int = ZOOM,
           progress: Callable[[int, int], None] | None = None) -> tilestore.BuildResult:
    return asyncio.run(tilestore.build(dsn, directory, max_zoom=zoom, force=force,
                                       progress=progress))


def _tiles(directory: Path) -> dict[str, dict[int, bytes]]:
    """Every language's stored tiles by id, as bytes."""
    out = {}
    for lang in LANGS:
        archive = tilestore.Archive.open(tilestore.archive_path(directory, lang))
        out[lang] = {tile_id: bytes(archive.stored(tile_id)) for tile_id in archive.tile_ids()}
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _change_members(dsn: str, roster: Path) -> None:
    """An override, an import (one new member, one changed), a theme dropped, a deletion."""
    set_override(dsn, "jo-municipality-irbid", "JO-IR")
    roster.write_text(
        "name,country_iso2,level,year,commitment_kind,commitment,source,confidence\n"
        "Tromsø,NO,municipality,2025,declared,declared HRC (synthetic test row),"
        "https://example.org/tromso,low\n"
        "Graz,AT,municipality,2002,declared,declared HRC (year changed in a test),"
        "https://example.org/graz,high\n", encoding="utf-8")
    import_members(dsn, roster)
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM initiative_themes WHERE ctid = (SELECT min(ctid) "
                     "FROM initiative_themes)")
        gone = conn.execute("SELECT id FROM territories WHERE id <> 'jo-municipality-irbid' "
                            "AND commitment_kind <> 'engagement-only' ORDER BY id DESC LIMIT 1"
                            ).fetchone()
        assert gone is not None
        conn.execute("DELETE FROM territories WHERE id = %s", gone)


@pytest.fixture(scope="module")
def base(sample_copy: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Archives of the copy's data as it was loaded (a full build)."""
    directory = tmp_path_factory.mktemp("base")
    result = _build(sample_copy, directory)
    assert result.full_because and result.rendered == result.grid
    return directory


def test_incremental_build_equals_a_full_build(sample_copy: str, base: Path, tmp_path: Path
                                               ) -> None:
    incremental = tmp_path / "incremental"
    shutil.copytree(base, incremental)
    before = _tiles(base)
    old_version = tilestore.Archive.open(tilestore.archive_path(base, "en")).version
    _change_members(sample_copy, tmp_path / "roster.csv")

    result = _build(sample_copy, incremental)
    assert not result.skipped and result.full_because == "" and result.base == old_version
    assert 0 < result.rendered <= result.grid // 5, result.rendered  # only the members' tiles
    full = tmp_path / "full"
    forced = _build(sample_copy, full, force=True)
    assert forced.full_because == "--force" and forced.rendered == forced.grid
    assert forced.version == result.version != old_version

    got, want = _tiles(incremental), _tiles(full)
    for lang in LANGS:
        assert set(got[lang]) == set(want[lang]), lang
        wrong = [tile_id for tile_id in want[lang] if got[lang][tile_id] != want[lang][tile_id]]
        assert wrong == [], (lang, wrong)
        # the changes reached the tiles: an archive copied whole would not pass
        assert any(before[lang].get(tile_id) != data for tile_id, data in want[lang].items())
    for lang in LANGS:
        ours = tilestore.Archive.open(tilestore.archive_path(incremental, lang)).metadata
        theirs = tilestore.Archive.open(tilestore.archive_path(full, lang)).metadata
        assert ours["fingerprints"] == theirs["fingerprints"]
    assert _build(sample_copy, incremental).skipped  # current now


def test_a_boundary_change_or_another_zoom_renders_every_tile(sample_copy: str, base: Path,
                                                              tmp_path: Path) -> None:
    directory = tmp_path / "archives"
    shutil.copytree(base, directory)
    other_zoom = _build(sample_copy, tmp_path / "z3", zoom=3)
    assert other_zoom.full_because  # no archives there
    shutil.copytree(tmp_path / "z3", tmp_path / "z3-then-4")
    assert _build(sample_copy, tmp_path / "z3-then-4").full_because == "the archives go to z3"

    with psycopg.connect(sample_copy) as conn:  # a boundary's French name, as a reload might
        conn.execute("UPDATE boundaries SET name_fr = name_fr || ' (test)' "
                     "WHERE level = 'country' AND code = 'JO'")
    result = _build(sample_copy, directory)
    assert result.full_because == "the boundaries changed" and result.rendered == result.grid
    assert _build(sample_copy, directory, force=True).full_because == "--force"


def test_a_failed_build_leaves_the_old_archives(sample_copy: str, tmp_path: Path) -> None:
    directory = tmp_path / "archives"
    _build(sample_copy, directory, force=True)
    kept = _files(directory)
    _bump_year(sample_copy, "jo-municipality-irbid")  # a change to build

    def stop(done: int, total: int) -> None:
        raise RuntimeError("stopped while rendering")  # as a lost connection would

    with pytest.raises(RuntimeError, match="stopped"):
        _build(sample_copy, directory, progress=stop)
    assert _files(directory) == kept  # nothing replaced, nothing left beside them
    # and the next build still starts from them
    result = _build(sample_copy, directory)
    assert result.full_because == "" and result.rendered < result.grid


def test_a_write_during_the_build_waits_for_the_next_build(sample_copy: str, tmp_path: Path
                                                           ) -> None:
    """The build reads one snapshot: a member changed while it renders is not half in it."""
    before = _build(sample_copy, tmp_path / "before", force=True)
    written = []

    def write_once(done: int, total: int) -> None:
        if not written:  # after the first 50 tiles (Irbid's z3 and z4 tiles come later)
            _bump_year(sample_copy, "jo-municipality-irbid")
            written.append(done)

    during = _build(sample_copy, tmp_path / "during", force=True, progress=write_once)
    assert written and written[0] < during.grid
    assert during.version == before.version and _tiles(tmp_path / "during") == _tiles(
        tmp_path / "before")
    after = _build(sample_copy, tmp_path / "during")  # the write is newer than the archives
    assert not after.skipped and after.base == during.version and after.rendered < after.grid
    _build(sample_copy, tmp_path / "full", force=True)
    assert _tiles(tmp_path / "during") == _tiles(tmp_path / "full")


def _bump_year(dsn: str, territory: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE territories SET year = coalesce(year, 2000) + 1 WHERE id = %s",
                     (territory,))
