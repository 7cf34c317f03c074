"""OGC API – Features reads: one SQL statement per request, which PostGIS turns into GeoJSON (or
plain rows for CSV and GeoPackage). The web layer validates parameters into an ItemsQuery."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.errors import ClientError, NotFound
from geo_service.query import filters, regions, service
from geo_service.query import vocabulary as v
from geo_service.query.collections import COLLECTIONS, Collection

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 10**9
# 4 decimal places of a degree are at most 11 m apart (half of that after rounding): finer than
# the 1:10m source data and the Korean municipal layer, and about a third fewer bytes than 6.
DEFAULT_PRECISION = 4
MAX_PRECISION = 15
MAX_ZOOM = 24
# A page is built in memory: beyond this many coordinates (about 25 MB of GeoJSON at the default
# precision) the request is refused with how to page instead. Pages of up to BUDGET_FREE
# features are not measured first.
MAX_POINTS = 1_000_000
BUDGET_FREE = 100
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

Bbox = tuple[float, float, float, float]
Interval = tuple[str | None, str | None]


@dataclass
class ItemsQuery:
    """The validated parameters of one items request."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: Bbox | None = None
    datetime: Interval | None = None
    region: regions.Region | None = None
    properties: list[str] | None = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)
    precision: int = DEFAULT_PRECISION
    tier: int | None = None
    geometry: str | None = None
    include_engagement: bool = False
    equals: dict[str, str] = field(default_factory=dict)
    filter: Any = None  # a parsed CQL2 expression


def collection(collection_id: str) -> Collection:
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFound(f"no collection {collection_id!r}; known: {', '.join(COLLECTIONS)}") from None


# ------------------------------------------------------------------- parameter values (pure)
def parse_bbox(value: str) -> Bbox:
    """`minLon,minLat,maxLon,maxLat` (or 6 numbers with heights) in CRS84."""
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise ClientError(f"bbox needs 4 numbers (or 6 with heights), got {len(parts)}")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ClientError(f"bbox={value!r} is not a list of numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    minx, miny, maxx, maxy = numbers
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ClientError("bbox must be lon/lat (CRS84): -180..180, -90..90, miny <= maxy")
    return minx, miny, maxx, maxy


_INSTANT = re.compile(r"\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?)?)?")


def parse_datetime(value: str) -> Interval:
    """An instant or an interval `start/end` (`..` or empty for open ends), as dates."""
    parts = value.split("/")
    if len(parts) > 2:
        raise ClientError(f"datetime={value!r}: one instant or an interval start/end")
    bounds: list[str | None] = []
    for part in parts:
        if part in ("", ".."):
            bounds.append(None)
            continue
        if not _INSTANT.fullmatch(part):
            raise ClientError(f"datetime part {part!r} is not an RFC 3339 date or date-time")
        _check_instant(part)
        bounds.append(part[:10] if len(part) >= 10 else part)
    if len(bounds) == 1:
        return bounds[0], bounds[0]
    return bounds[0], bounds[1]


def _check_instant(part: str) -> None:
    """Refuse a year, month, date or date-time that does not exist (2020-13, 2020-02-30)."""
    try:
        if len(part) == 4:
            dt.date(int(part), 1, 1)
        elif len(part) == 7:
            dt.date(int(part[:4]), int(part[5:7]), 1)
        elif len(part) == 10:
            dt.date.fromisoformat(part)
        else:
            dt.datetime.fromisoformat(part)
    except ValueError as exc:
        raise ClientError(f"datetime part {part!r} is not a real date: {exc}") from None


def first_day(value: str) -> str:
    """The first day a year, month or date stands for."""
    return {4: f"{value}-01-01", 7: f"{value}-01"}.get(len(value), value)


def last_day(value: str) -> str:
    """The last day a year, month or date stands for (a month's real last day)."""
    if len(value) == 4:
        return f"{value}-12-31"
    if len(value) == 7:
        year, month = int(value[:4]), int(value[5:7])  # a real month (parse_datetime checks)
        return f"{value}-{calendar.monthrange(year, month)[1]:02d}"
    return value


def parse_properties(c: Collection, value: str) -> list[str]:
    names = [p.strip() for p in value.split(",") if p.strip()]
    bad = [n for n in names if n not in c.properties]
    if bad:
        raise ClientError(f"unknown properties: {', '.join(bad)}")
    return names


def parse_sortby(c: Collection, value: str) -> list[tuple[str, bool]]:
    """`name,-year`: (property, descending) pairs."""
    terms = []
    for term in value.split(","):
        term = term.strip()
        name = term.lstrip("+-")
        if name not in c.properties:
            raise ClientError(f"cannot sort by {name!r}; sortable: {', '.join(c.properties)}")
        terms.append((name, term.startswith("-")))
    return terms


# -------------------------------------------------------------------------------------- SQL
def build_where(c: Collection, q: ItemsQuery) -> sql.Composable:
    conditions: list[sql.Composable] = [c.base_where]
    if c.hidden and not q.include_engagement:
        conditions.append(v.SHOWN_TERRITORY)
    for name, value in q.equals.items():
        conditions.append(c.filters[name](value))
    if q.region:
        conditions.append(c.region_condition(q.region))
    if q.bbox:
        envelope = sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, 4326)").format(
            *(sql.Literal(n) for n in q.bbox))
        conditions.append(bbox_condition(c, envelope))
    if q.filter is not None:
        conditions.append(filters.to_sql(q.filter, c))
    if q.datetime and c.datetime_sql is not None:
        start, end = q.datetime
        if start:
            conditions.append(sql.SQL("{} >= {}::date").format(
                c.datetime_sql, sql.Literal(first_day(start))))
        if end:
            conditions.append(sql.SQL("{} <= {}::date").format(
                c.datetime_sql, sql.Literal(last_day(end))))
    return v.conjunction(conditions)


def bbox_condition(c: Collection, envelope: sql.Composable) -> sql.Composable:
    """Rows whose shape meets the box: candidates by the indexed box, and the full shape read
    only for those whose box is not inside the query box (a box inside it meets it)."""
    if c.spatial is None:
        return sql.SQL("FALSE")
    return sql.SQL("({box} && {e} AND ({e} ~ {box} OR ST_Intersects({shape}, {e})))").format(
        box=c.box_sql, shape=c.shape_sql, e=envelope)


def _properties_sql(c: Collection, q: ItemsQuery) -> sql.Composable:
    names = q.properties if q.properties is not None else list(c.properties)
    if not names:
        return sql.SQL("'{}'::json")
    return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(n), c.properties[n]) for n in names))


def _order(c: Collection, q: ItemsQuery) -> sql.Composable:
    terms: list[sql.Composable] = [sql.SQL("{} {} NULLS LAST").format(c.properties[name],
                                                sql.SQL("DESC" if descending else "ASC"))
             for name, descending in q.sortby]
    terms.append(c.id_sql)
    return sql.SQL(", ").join(terms)


def _page(c: Collection, q: ItemsQuery) -> sql.Composable:
    """`WHERE` and `ORDER BY` of one page. Past the first page the page's keys are chosen
    first: PostgreSQL builds the select list of every row OFFSET skips, so a deep page of
    municipalities (offset 36,000) took 0.9 s in GeoJSON it threw away, against 7 ms."""
    where, order = build_where(c, q), _order(c, q)
    limit, offset = sql.Literal(q.limit), sql.Literal(q.offset)
    if q.offset == 0:
        return sql.SQL("{} ORDER BY {} LIMIT {}").format(where, order, limit)
    return sql.SQL("{where} AND {key} IN (SELECT {key} FROM {source} WHERE {where} "
                   "ORDER BY {order} LIMIT {limit} OFFSET {offset}) ORDER BY {order}").format(
        where=where, key=c.id_sql, source=c.from_clause(q.tier), order=order, limit=limit,
        offset=offset)


def feature_sql(c: Collection, q: ItemsQuery) -> sql.Composable:
    """One feature as GeoJSON text, byte for byte what json_build_object('type', 'Feature',
    'id', ..., 'geometry', ST_AsGeoJSON(...)::json, 'properties', ...) gives, but joined as text:
    the cast to json parses ST_AsGeoJSON's every coordinate again (France's 102 regions: 35 ms
    in PostgreSQL that way, 19 ms this way)."""
    geometry = c.geometry(q.geometry, q.tier)
    geojson = (sql.SQL("coalesce(ST_AsGeoJSON({}, {}), 'null')").format(
        geometry, sql.Literal(q.precision)) if geometry is not None else sql.SQL("'null'"))
    return sql.SQL("""('{{"type" : "Feature", "id" : ' || coalesce(to_json({id})::text, 'null') """
                   """|| ', "geometry" : ' || {geom} || ', "properties" : ' || {props}::text """
                   """|| '}}')""").format(id=c.id_sql, geom=geojson, props=_properties_sql(c, q))


def _budget_sql(c: Collection, q: ItemsQuery) -> sql.Composed | None:
    """The page's coordinates and features, `points, features` (None: the page is not measured:
    small pages, and pages of points, one coordinate each, within the budget however long). A
    measure reads the page's rows once more: 11 of 34 ms for 500 members' points at 100x."""
    geometry = c.geometry(q.geometry, q.tier)
    points_only = (q.geometry or c.default_geometry) == "point" and MAX_LIMIT <= MAX_POINTS
    if geometry is None or q.limit <= BUDGET_FREE or points_only:
        return None
    return sql.SQL("SELECT coalesce(sum(ST_NPoints(g)), 0), count(*) FROM (SELECT {g} AS g "
                   "FROM {source} WHERE {page}) page").format(
        g=geometry, source=c.from_clause(q.tier), page=_page(c, q))


def _refuse_over_budget(points: int, features: int) -> None:
    """A ClientError, saying how to page, when a page holds more than MAX_POINTS coordinates."""
    if points > MAX_POINTS:
        fits = max(1, int(MAX_POINTS / (points / max(features, 1))))
        raise ClientError(
            f"this page would hold {points:,} coordinates in {features:,} features, more than "
            f"{MAX_POINTS:,}: ask for limit={fits} or fewer and follow the next links, add zoom= "
            "for generalized shapes, or geometry=point")


async def check_budget(conn: AsyncConnection, c: Collection, q: ItemsQuery) -> None:
    """A ClientError, saying how to page, when the page would hold more than MAX_POINTS
    coordinates (measured in PostGIS before any JSON is built)."""
    budget = _budget_sql(c, q)
    if budget is None:
        return
    row = await (await conn.execute(budget)).fetchone()
    assert row is not None  # an aggregate always answers one row
    _refuse_over_budget(int(row[0]), int(row[1]))


# The statement of an items page, by collection and query: composing it anew (a few hundred
# psycopg fragments) took 1.5 ms (10 regions) to 2.3 ms (territories) of the event loop's time
# per request on a loaded 2-core machine. Queries with a CQL2 filter are not kept (their parsed
# form is not a value to key on).
_STATEMENTS: OrderedDict[tuple[str, str, bool], bytes] = OrderedDict()
STATEMENTS_KEPT = 256


def items_sql(c: Collection, q: ItemsQuery, count: bool = True) -> bytes:
    """One statement: the data version it reads at, the page as a UTF-8 JSON array (bytea, so
    the text is neither decoded nor encoded again in Python; NULL when over budget), how many
    match in all (NULL when not `count`), and the page's coordinates and features when it is
    measured (budget: PostgreSQL evaluates the page's JSON only when the page is within it)."""
    key = (c.id, repr(q), count)
    if q.filter is None and key in _STATEMENTS:
        _STATEMENTS.move_to_end(key)
        return _STATEMENTS[key]
    where = build_where(c, q)
    source = c.from_clause(q.tier)
    page = sql.SQL("(SELECT convert_to(coalesce('[' || string_agg(page.f, ', ') || ']', '[]'), "
                   "'UTF8') FROM (SELECT {feature} AS f FROM {source} WHERE {page}) page)").format(
        feature=feature_sql(c, q), source=source, page=_page(c, q))
    matched = sql.SQL("(SELECT count(*) FROM {source} WHERE {where})").format(
        source=source, where=where) if count else sql.SQL("NULL::bigint")
    budget = _budget_sql(c, q)
    if budget is None:
        query = sql.SQL("SELECT {}, {}, {}, NULL::bigint, NULL::bigint").format(
            service.DATA_VERSION_COLUMN, page, matched)
    else:
        query = sql.SQL("SELECT {version}, CASE WHEN m.points <= {max} THEN {page} END, "
                        "{matched}, m.points, m.features FROM ({budget}) m(points, features)"
                        ).format(version=service.DATA_VERSION_COLUMN, max=sql.Literal(MAX_POINTS),
                                 page=page, matched=matched, budget=budget)
    text = query.as_bytes(None)
    if q.filter is None:
        _STATEMENTS[key] = text
        while len(_STATEMENTS) > STATEMENTS_KEPT:
            _STATEMENTS.popitem(last=False)
    return text


# How many features match a query, by data version, collection and the query without its paging
# and shaping: numberMatched is counted once per data version, not for every page a client walks
# through (the count of 9,683 members was 14 ms of a 22 ms first page). Pages are still read
# from the database every time. Queries with a CQL2 filter are counted each time.
_COUNTS: OrderedDict[tuple[str, str, str], int] = OrderedDict()
COUNTS_KEPT = 1024


def _count_key(version: str | None, c: Collection, q: ItemsQuery) -> tuple[str, str, str] | None:
    if version is None or q.filter is not None:
        return None
    where = dataclasses.replace(q, limit=0, offset=0, sortby=[], properties=None, precision=0,
                                tier=None, geometry=None)
    return version, c.id, repr(where)


async def items(conn: AsyncConnection, c: Collection, q: ItemsQuery, version: str | None = None
                ) -> dict[str, Any]:
    """One page of features as a UTF-8 JSON array (bytes), and how many match in all: one
    statement, which also refuses (ClientError) a page over the coordinate budget before
    building it. With the data version, a count made before for the same filters is used (see
    _COUNTS)."""
    found = await _read(conn, c, q, version, strict=False)
    assert found is not None  # only a strict read gives up
    return found[1]


async def items_read(conn: AsyncConnection, c: Collection, q: ItemsQuery, expected: str
                     ) -> tuple[str, dict[str, Any]] | None:
    """One page as `items` gives it, with the data version it was read at, in one statement
    (no round trip for the version first): for a request that needs the version only for its
    ETag. A count kept for `expected` (the version this database answered last) is used, and
    the caller may have resolved regions at it: when the database is at another version now,
    nothing is kept and None says to start over, reading the version first."""
    return await _read(conn, c, q, expected, strict=True)


async def _read(conn: AsyncConnection, c: Collection, q: ItemsQuery, version: str | None,
                strict: bool) -> tuple[str, dict[str, Any]] | None:
    key = _count_key(version, c, q)
    known = _COUNTS.get(key) if key is not None else None
    cursor = await conn.execute(items_sql(c, q, count=known is None), binary=True)
    row = await cursor.fetchone()
    assert row is not None  # an aggregate always answers one row
    read_at, features, matched, points, count = row
    service.note_version(conn, read_at)
    if strict and read_at != version:
        return None
    if known is not None and read_at != version:  # the data changed since `version`: the count
        return await _read(conn, c, q, None, strict)  # kept for it may be wrong, count anew
    if points is not None:
        _refuse_over_budget(int(points), int(count))
    if key is not None and known is not None:
        matched = known
        _COUNTS.move_to_end(key)
    elif key is not None and read_at == version:  # a count is kept for the version it counted
        _COUNTS[key] = matched
        while len(_COUNTS) > COUNTS_KEPT:
            _COUNTS.popitem(last=False)
    returned = max(0, min(q.limit, matched - q.offset))
    return read_at, {"features": bytes(features), "matched": matched, "returned": returned}


async def item(conn: AsyncConnection, c: Collection, feature_id: str, q: ItemsQuery) -> str:
    """One feature as GeoJSON text, or NotFound."""
    where = sql.SQL("{} AND {} = {}").format(c.base_where, c.id_sql, sql.Literal(feature_id))
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        feature_sql(c, q), c.from_clause(q.tier), where)
    row = await (await conn.execute(query)).fetchone()
    if row is None:
        raise NotFound(f"no feature {feature_id!r} in {c.id}")
    return str(row[0])


_EXTENTS: dict[tuple[str, str], list[float] | None] = {}


async def extent(conn: AsyncConnection, c: Collection, version: str) -> list[float] | None:
    """The collection's bbox, computed once per data version (not on every /collections)."""
    key = (version, c.id)
    if key in _EXTENTS:
        return _EXTENTS[key]
    if c.spatial is None:
        return [-180.0, -90.0, 180.0, 90.0]
    row = await (await conn.execute(sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent({g}) AS e "
        "FROM {source} WHERE {where}) x").format(
            g=c.spatial, source=c.from_clause(None), where=c.base_where))).fetchone()
    bbox = None if row is None or row[0] is None else [round(n, 6) for n in row]
    if len(_EXTENTS) > 100:
        _EXTENTS.clear()
    _EXTENTS[key] = bbox
    return bbox


async def rows(conn: AsyncConnection, c: Collection, q: ItemsQuery, as_wkt: bool = False
               ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """One page as plain rows (id, properties, geometry as WKB or WKT, point lon/lat) for CSV
    and GeoPackage; coordinates rounded to the requested precision in PostGIS."""
    names = q.properties if q.properties is not None else list(c.properties)
    names = [n for n in names if n != "id"]  # the id column comes first anyway
    geometry = c.geometry(q.geometry, q.tier)
    point = c.geometry("point", None) if "point" in c.geometries else None
    columns: list[sql.Composable] = [sql.SQL("{} AS id").format(c.id_sql)]
    columns += [sql.SQL("{} AS {}").format(c.properties[n], sql.Identifier(n)) for n in names]
    if geometry is not None and as_wkt:
        columns.append(sql.SQL("ST_AsText({}, {})").format(geometry, sql.Literal(q.precision)))
    elif geometry is not None:
        columns.append(sql.SQL("ST_AsBinary({})").format(geometry))
    else:
        columns.append(sql.SQL("NULL"))
    columns.append(sql.SQL("ST_X({p}), ST_Y({p})").format(p=point) if point is not None
                   else sql.SQL("NULL, NULL"))
    query = sql.SQL("SELECT {cols} FROM {source} WHERE {page}").format(
        cols=sql.SQL(", ").join(columns), source=c.from_clause(q.tier), page=_page(c, q))
    result = await (await conn.execute(query)).fetchall()
    return ["id", *names], result
