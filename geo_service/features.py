"""OGC API – Features core: the collections, their properties and filters, and the one SQL
statement per request that PostGIS turns into GeoJSON. The web layer (ogc.py) only adapts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.load.prepare import ISO3166_2, TIERS

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# 4 decimal places of a degree are at most 11 m apart (half of that after rounding): finer than
# the 1:10m source data and the Korean municipal layer, and about a third fewer bytes than 6.
DEFAULT_PRECISION = 4
ISO2 = re.compile(r"^[A-Z]{2}$")


class ClientError(ValueError):
    """A request the client must change: becomes a 400 problem detail."""


class NotFound(LookupError):
    """An unknown collection or feature: becomes a 404 problem detail."""


@dataclass(frozen=True)
class Collection:
    """How one collection is read: its FROM clause, id, geometries, properties and filters."""

    id: str
    title: str
    description: str
    source: str  # FROM ... (aliases used by the expressions below)
    id_sql: str
    geometries: dict[str, str]  # geometry=boundary|point|none -> expression ("" = none)
    properties: dict[str, str]  # name -> SQL expression
    types: dict[str, str]  # name -> JSON schema type (queryables)
    filters: dict[str, str]  # query parameter -> SQL expression compared with =
    region: str  # how region= applies: boundary levels, territories, initiatives, sections
    level: str | None = None
    datetime_sql: str | None = None
    base_where: str = "TRUE"
    hidden_where: str | None = None  # rows shown only with include_engagement=true
    extra_params: tuple[str, ...] = field(default_factory=tuple)

    @property
    def default_geometry(self) -> str:
        return next(iter(self.geometries))


_BOUNDARY_PROPS = {
    "code": "b.code", "name": "b.name", "name_en": "b.name_en", "name_fr": "b.name_fr",
    "name_es": "b.name_es", "name_local": "b.name_local", "level": "b.level",
    "iso3166_1": "b.iso3166_1", "iso3166_2": "b.iso3166_2", "national_code": "b.national_code",
    "wikidata_id": "b.wikidata_id", "parent_code": "b.parent_code", "source": "b.source",
    "area_km2": "round(b.area_km2::numeric, 1)",
}
_BOUNDARY_TYPES = {k: "string" for k in _BOUNDARY_PROPS} | {"area_km2": "number"}


def _boundaries(cid: str, level: str, title: str, description: str) -> Collection:
    return Collection(
        id=cid, title=title, description=description,
        source="boundaries b LEFT JOIN boundary_tiers bt ON bt.boundary_id = b.id "
               "AND bt.tier = {tier}",
        id_sql="b.code", geometries={"boundary": "coalesce(bt.geom, b.geom)",
                                     "point": "b.label_point", "none": ""},
        properties=_BOUNDARY_PROPS, types=_BOUNDARY_TYPES,
        filters={"country": "b.iso3166_1", "parent": "b.parent_code"},
        region="boundary", level=level, base_where=f"b.level = '{level}'",
    )


_TERRITORY_PROPS = {
    "id": "t.id", "name": "t.name", "local_name": "t.local_name", "kind": "t.kind",
    "country": "t.iso3166_1", "sections": "t.sections", "commitment_kind": "t.commitment_kind",
    "commitment": "t.commitment", "year": "t.year", "joined_on": "t.joined_on",
    "campaign_wave": "t.campaign_wave", "status": "t.status", "website": "t.website",
    "sources": "t.sources", "confidence": "t.confidence", "boundary_level": "t.boundary_level",
    "boundary_code": "t.boundary_code", "match_outcome": "t.match_outcome",
    "match_method": "t.match_method", "match_score": "t.match_score",
    "themes": "(SELECT coalesce(array_agg(DISTINCT it.theme_slug ORDER BY it.theme_slug), '{{}}') "
              "FROM initiatives i2 JOIN initiative_themes it ON it.initiative_id = i2.id "
              "WHERE i2.territory_id = t.id)",
}
_TERRITORY_TYPES = {k: "string" for k in _TERRITORY_PROPS} | {
    "year": "integer", "match_score": "number", "sections": "array", "sources": "array",
    "themes": "array"}
_THEME_OF_TERRITORY = ("EXISTS (SELECT 1 FROM initiatives i3 JOIN initiative_themes it3 ON "
                       "it3.initiative_id = i3.id WHERE i3.territory_id = t.id AND "
                       "it3.theme_slug = {})")

COLLECTIONS: dict[str, Collection] = {c.id: c for c in (
    _boundaries("countries", "country", "Countries",
                "Countries (ISO 3166-1), dissolved from Natural Earth admin-1."),
    _boundaries("regions", "region", "Regions",
                "First-level divisions: states, provinces, regions (Natural Earth 1:10m)."),
    _boundaries("municipalities", "municipality", "Municipalities",
                "Local governments with boundaries (South Korea's si/gun/gu so far)."),
    Collection(
        id="territories", title="Human rights territories",
        description="Local and regional governments of the movement with their commitment, "
                    "sources and confidence: documented public commitments, not the official "
                    "campaign roster. Engagement-only rows appear with include_engagement=true.",
        source="territories t LEFT JOIN boundaries b ON b.level = t.boundary_level "
               "AND b.code = t.boundary_code LEFT JOIN boundary_tiers bt ON "
               "bt.boundary_id = b.id AND bt.tier = {tier}",
        id_sql="t.id",
        geometries={"boundary": "coalesce(bt.geom, b.geom, t.location)", "point": "t.location",
                    "none": ""},
        properties=_TERRITORY_PROPS, types=_TERRITORY_TYPES,
        filters={"kind": "t.kind", "commitment_kind": "t.commitment_kind",
                 "country": "t.iso3166_1", "theme": _THEME_OF_TERRITORY},
        region="territory", datetime_sql="coalesce(t.joined_on, make_date(t.year, 1, 1))",
        hidden_where="t.commitment_kind <> 'engagement-only'",
        extra_params=("geometry", "include_engagement"),
    ),
    Collection(
        id="initiatives", title="Initiatives",
        description="What territories do for which rights, located at their territory.",
        source="initiatives i JOIN territories t ON t.id = i.territory_id",
        id_sql="i.id", geometries={"point": "t.location", "none": ""},
        properties={
            "id": "i.id", "territory_id": "i.territory_id", "territory_name": "t.name",
            "country": "t.iso3166_1", "title": "i.title", "summary": "i.summary",
            "year_started": "i.year_started", "status": "i.status",
            "themes": "(SELECT coalesce(array_agg(theme_slug ORDER BY theme_slug), '{{}}') "
                      "FROM initiative_themes WHERE initiative_id = i.id)",
            "source": "i.source", "confidence": "i.confidence",
        },
        types={"year_started": "integer", "themes": "array"},
        filters={"kind": "t.kind", "commitment_kind": "t.commitment_kind",
                 "country": "t.iso3166_1",
                 "theme": "EXISTS (SELECT 1 FROM initiative_themes it4 WHERE "
                          "it4.initiative_id = i.id AND it4.theme_slug = {})"},
        region="territory", datetime_sql="make_date(i.year_started, 1, 1)",
        hidden_where="t.commitment_kind <> 'engagement-only'",
        extra_params=("include_engagement",),
    ),
    Collection(
        id="uclg-sections", title="UCLG sections",
        description="The regional sections of UCLG, drawn as the union of their countries.",
        source="uclg_sections s",
        id_sql="s.slug",
        geometries={"boundary": "(SELECT ST_Multi(ST_Union(coalesce(bt.geom, b.geom))) FROM "
                                "boundaries b JOIN uclg_section_countries c ON c.iso3166_1 = b.code "
                                "LEFT JOIN boundary_tiers bt ON bt.boundary_id = b.id AND "
                                "bt.tier = {tier_or_1} WHERE b.level = 'country' AND "
                                "c.section_slug = s.slug)", "none": ""},
        properties={
            "slug": "s.slug", "name_en": "s.name_en", "name_fr": "s.name_fr",
            "name_es": "s.name_es", "body": "s.body", "country_list_status": "s.country_list_status",
            "countries": "(SELECT coalesce(array_agg(iso3166_1 ORDER BY iso3166_1), '{{}}') FROM "
                         "uclg_section_countries WHERE section_slug = s.slug)",
        },
        types={"countries": "array"}, filters={}, region="section",
        extra_params=("geometry",),
    ),
)}

COMMON_PARAMS = ("f", "limit", "offset", "bbox", "bbox-crs", "crs", "datetime", "region",
                 "properties", "sortby", "precision", "zoom", "filter", "filter-lang", "filter-crs")
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@dataclass
class ItemsQuery:
    """The validated parameters of one items request."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    datetime: tuple[str | None, str | None] | None = None
    region: str | None = None
    properties: list[str] | None = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)
    precision: int = DEFAULT_PRECISION
    tier: int | None = None
    geometry: str | None = None
    include_engagement: bool = False
    equals: dict[str, str] = field(default_factory=dict)
    filter: Any = None  # a parsed CQL2 expression


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ClientError(f"{name}={value!r} is not an integer") from None
    if not low <= number <= high:
        raise ClientError(f"{name}={number} is outside {low}..{high}")
    return number


def _bbox(value: str) -> tuple[float, float, float, float]:
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


def _datetime(value: str) -> tuple[str | None, str | None]:
    parts = value.split("/")
    if len(parts) > 2:
        raise ClientError(f"datetime={value!r}: one instant or an interval start/end")
    bounds: list[str | None] = []
    for part in parts:
        if part in ("", ".."):
            bounds.append(None)
            continue
        if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?)?)?", part):
            raise ClientError(f"datetime part {part!r} is not an RFC 3339 date or date-time")
        bounds.append(part[:10] if len(part) >= 10 else part)
    if len(bounds) == 1:
        return bounds[0], bounds[0]
    return bounds[0], bounds[1]


def _date_bound(value: str, end: bool) -> str:
    if len(value) == 4:
        return f"{value}-12-31" if end else f"{value}-01-01"
    if len(value) == 7:
        return f"{value}-31" if end else f"{value}-01"  # compared as text-cast dates below
    return value


def tier_for_zoom(zoom: int) -> int | None:
    """The coarsest pre-generalized tier meant for this zoom, or None for full resolution."""
    for tier, (_, max_zoom) in sorted(TIERS.items(), key=lambda item: item[1][1]):
        if zoom <= max_zoom:
            return tier
    return None


def parse_items_query(collection: Collection, params: dict[str, str]) -> ItemsQuery:
    """Validate every query parameter; anything unknown or malformed is a ClientError."""
    allowed = set(COMMON_PARAMS) | set(collection.filters) | set(collection.extra_params)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ClientError(f"unknown query parameter(s): {', '.join(unknown)}; this collection "
                          f"takes {', '.join(sorted(allowed))}")
    q = ItemsQuery()
    if "limit" in params:
        q.limit = _int("limit", params["limit"], 1, MAX_LIMIT)
    if "offset" in params:
        q.offset = _int("offset", params["offset"], 0, 10**9)
    for name in ("bbox-crs", "crs", "filter-crs"):
        if name in params and params[name] not in (CRS84, f"[{CRS84}]"):
            raise ClientError(f"{name}: only {CRS84} (longitude, latitude)")
    if "bbox" in params:
        q.bbox = _bbox(params["bbox"])
    if "datetime" in params:
        if collection.datetime_sql is None:
            raise ClientError(f"collection {collection.id} has no time dimension")
        q.datetime = _datetime(params["datetime"])
    if "region" in params:
        q.region = params["region"].strip()
    if "properties" in params:
        names = [p.strip() for p in params["properties"].split(",") if p.strip()]
        bad = [n for n in names if n not in collection.properties]
        if bad:
            raise ClientError(f"unknown properties: {', '.join(bad)}")
        q.properties = names
    if "sortby" in params:
        for term in params["sortby"].split(","):
            term = term.strip()
            descending = term.startswith("-")
            name = term.lstrip("+-")
            if name not in collection.properties:
                raise ClientError(f"cannot sort by {name!r}; sortable: "
                                  f"{', '.join(collection.properties)}")
            q.sortby.append((name, descending))
    if "precision" in params:
        q.precision = _int("precision", params["precision"], 0, 15)
    if "zoom" in params:
        q.tier = tier_for_zoom(_int("zoom", params["zoom"], 0, 24))
    if "geometry" in params:
        if params["geometry"] not in collection.geometries:
            raise ClientError(f"geometry must be one of {', '.join(collection.geometries)}")
        q.geometry = params["geometry"]
    if "include_engagement" in params:
        if params["include_engagement"] not in ("true", "false"):
            raise ClientError("include_engagement must be true or false")
        q.include_engagement = params["include_engagement"] == "true"
    if "filter" in params:
        from geo_service import filters  # filters builds on this module's Collection

        q.filter = filters.parse(params["filter"], params.get("filter-lang"))
    elif "filter-lang" in params:
        raise ClientError("filter-lang without filter")
    for name in collection.filters:
        if name in params:
            value = params[name]
            q.equals[name] = value.upper() if name == "country" else value
    return q


_REGION_CODES: dict[str, dict[str, set[str]]] = {}


async def _region_codes(conn: AsyncConnection, version: str) -> dict[str, set[str]]:
    """Every section slug, country code and ISO 3166-2 code, read once per data version."""
    if version not in _REGION_CODES:
        found: dict[str, set[str]] = {"section": set(), "country": set(), "subdivision": set()}
        cursor = await conn.execute(
            "SELECT 'section', slug FROM uclg_sections UNION ALL "
            "SELECT 'country', code FROM boundaries WHERE level = 'country' UNION ALL "
            "SELECT 'subdivision', iso3166_2 FROM boundaries "
            "WHERE level = 'region' AND iso3166_2 IS NOT NULL")
        for kind, code in await cursor.fetchall():
            found[kind].add(code)
        _REGION_CODES.clear()
        _REGION_CODES[version] = found
    return _REGION_CODES[version]


async def _region_condition(conn: AsyncConnection, collection: Collection, region: str,
                            version: str) -> sql.Composable:
    """region= takes a UCLG section slug, an ISO 3166-1 or an ISO 3166-2 code."""
    known = await _region_codes(conn, version)
    code = region.upper()
    if region.lower() in known["section"]:
        kind, value = "section", region.lower()
    elif ISO2.match(code) and code in known["country"]:
        kind, value = "country", code
    elif ISO3166_2.match(code) and code in known["subdivision"]:
        kind, value = "subdivision", code
    else:
        raise ClientError(f"unknown region {region!r}: give a UCLG section slug, an ISO 3166-1 "
                          "code (FR) or an ISO 3166-2 code (KR-29)")
    v = sql.Literal(value)
    section_countries = sql.SQL(
        "(SELECT iso3166_1 FROM uclg_section_countries WHERE section_slug = {})").format(v)
    region_codes = sql.SQL(
        "(SELECT code FROM boundaries WHERE level = 'region' AND iso3166_2 = {})").format(v)
    if collection.region == "boundary":
        if kind == "section":
            return sql.SQL("b.iso3166_1 IN {}").format(section_countries)
        if kind == "country":
            return sql.SQL("b.iso3166_1 = {}").format(v)
        return {
            "country": sql.SQL("b.code IN (SELECT iso3166_1 FROM boundaries WHERE level = 'region' "
                               "AND iso3166_2 = {})").format(v),
            "region": sql.SQL("b.iso3166_2 = {}").format(v),
            "municipality": sql.SQL("b.parent_code IN {}").format(region_codes),
        }[collection.level or "region"]
    if collection.region == "territory":
        if kind == "section":
            return sql.SQL("{} = ANY(t.sections)").format(v)
        if kind == "country":
            return sql.SQL("t.iso3166_1 = {}").format(v)
        return sql.SQL(
            "((t.boundary_level = 'region' AND t.boundary_code IN {codes}) OR "
            "(t.boundary_level = 'municipality' AND t.boundary_code IN (SELECT code FROM boundaries "
            "WHERE level = 'municipality' AND parent_code IN {codes})) OR "
            "EXISTS (SELECT 1 FROM boundaries r WHERE r.level = 'region' AND r.iso3166_2 = {v} "
            "AND ST_Intersects(r.geom, t.location)))").format(codes=region_codes, v=v)
    if kind == "section":
        return sql.SQL("s.slug = {}").format(v)
    if kind == "country":
        return sql.SQL("EXISTS (SELECT 1 FROM uclg_section_countries c WHERE "
                       "c.section_slug = s.slug AND c.iso3166_1 = {})").format(v)
    return sql.SQL("EXISTS (SELECT 1 FROM uclg_section_countries c WHERE c.section_slug = s.slug "
                   "AND c.iso3166_1 = {})").format(sql.Literal(value[:2]))


def _source(collection: Collection, q: ItemsQuery) -> sql.Composable:
    tier = sql.Literal(q.tier) if q.tier is not None else sql.SQL("NULL")
    return sql.SQL(collection.source.replace("{tier}", "{t}")).format(t=tier) \
        if "{tier}" in collection.source else sql.SQL(collection.source)


def _geometry(collection: Collection, q: ItemsQuery) -> str:
    expression = collection.geometries[q.geometry or collection.default_geometry]
    return expression.replace("{tier_or_1}", str(q.tier or 1))


async def build_where(conn: AsyncConnection, collection: Collection, q: ItemsQuery, version: str
                      ) -> sql.Composable:
    conditions: list[sql.Composable] = [sql.SQL(collection.base_where)]
    if collection.hidden_where and not q.include_engagement:
        conditions.append(sql.SQL(collection.hidden_where))
    for name, value in q.equals.items():
        expression = collection.filters[name]
        if "{}" in expression:
            conditions.append(sql.SQL(expression).format(sql.Literal(value)))
        else:
            conditions.append(sql.SQL("{} = {}").format(sql.SQL(expression), sql.Literal(value)))
    if q.region:
        conditions.append(await _region_condition(conn, collection, q.region, version))
    if q.bbox:
        envelope = sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, 4326)").format(
            *(sql.Literal(v) for v in q.bbox))
        geometry = sql.SQL(filter_geometry(collection) or "NULL::geometry")
        conditions.append(sql.SQL("({g} && {e} AND ST_Intersects({g}, {e}))").format(
            g=geometry, e=envelope))
    if q.filter is not None:
        from geo_service import filters

        conditions.append(filters.to_sql(q.filter, collection, filter_geometry(collection)))
    if q.datetime and collection.datetime_sql:
        start, end = q.datetime
        expression = sql.SQL(collection.datetime_sql)
        if start:
            conditions.append(sql.SQL("{} >= {}::date").format(expression,
                                                                sql.Literal(_date_bound(start, False))))
        if end:
            conditions.append(sql.SQL("{} <= ({}::text)::date").format(
                expression, sql.Literal(_month_end(_date_bound(end, True)))))
    return sql.SQL(" AND ").join(conditions)


def filter_geometry(collection: Collection) -> str:
    """The full-resolution geometry that bbox and spatial filters test (never a simplified tier)."""
    if collection.region == "boundary":
        return "b.geom"
    if collection.id == "territories":
        return "coalesce(b.geom, t.location)"
    return collection.geometries.get("point", "")


def _month_end(value: str) -> str:
    """`YYYY-MM-31` becomes the month's real last day."""
    year, month, day = value.split("-")
    if day == "31" and month in ("04", "06", "09", "11"):
        return f"{year}-{month}-30"
    if day == "31" and month == "02":
        leap = int(year) % 4 == 0 and (int(year) % 100 != 0 or int(year) % 400 == 0)
        return f"{year}-02-{29 if leap else 28}"
    return value


def _properties_sql(collection: Collection, q: ItemsQuery) -> sql.Composable:
    names = q.properties if q.properties is not None else list(collection.properties)
    if not names:
        return sql.SQL("'{}'::json")
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(n), sql.SQL(collection.properties[n].replace("{{}}", "{}")))
        for n in names)
    return sql.SQL("json_build_object({})").format(pairs)


def _order(collection: Collection, q: ItemsQuery) -> sql.Composable:
    terms = [sql.SQL("{} {} NULLS LAST").format(
        sql.SQL(collection.properties[name].replace("{{}}", "{}")),
        sql.SQL("DESC" if descending else "ASC")) for name, descending in q.sortby]
    terms.append(sql.SQL(collection.id_sql))
    return sql.SQL(", ").join(terms)


def feature_sql(collection: Collection, q: ItemsQuery) -> sql.Composable:
    geometry = _geometry(collection, q)
    geojson = (sql.SQL("ST_AsGeoJSON({}, {})::json").format(sql.SQL(geometry), sql.Literal(q.precision))
               if geometry else sql.SQL("NULL::json"))
    return sql.SQL("json_build_object('type', 'Feature', 'id', {id}, 'geometry', {geom}, "
                   "'properties', {props})").format(id=sql.SQL(collection.id_sql), geom=geojson,
                                                    props=_properties_sql(collection, q))


async def items(conn: AsyncConnection, collection: Collection, q: ItemsQuery, version: str
                ) -> dict[str, Any]:
    """One page of features as a JSON text array, and how many match in all: one statement."""
    where = await build_where(conn, collection, q, version)
    query = sql.SQL(
        "SELECT (SELECT coalesce(json_agg(page.f), '[]'::json)::text FROM ("
        "SELECT {feature} AS f FROM {source} WHERE {where} "
        "ORDER BY {order} LIMIT {limit} OFFSET {offset}) page), "
        "(SELECT count(*) FROM {source} WHERE {where})"
    ).format(feature=feature_sql(collection, q), source=_source(collection, q), where=where,
             order=_order(collection, q), limit=sql.Literal(q.limit), offset=sql.Literal(q.offset))
    features, matched = (await (await conn.execute(query)).fetchone())  # type: ignore[misc]
    returned = max(0, min(q.limit, matched - q.offset))
    return {"features": features, "matched": matched, "returned": returned}


async def item(conn: AsyncConnection, collection: Collection, feature_id: str, q: ItemsQuery
               ) -> str:
    where = sql.SQL("{base} AND {id} = {value}").format(
        base=sql.SQL(collection.base_where), id=sql.SQL(collection.id_sql),
        value=sql.Literal(feature_id))
    query = sql.SQL("SELECT {feature}::text FROM {source} WHERE {where}").format(
        feature=feature_sql(collection, q), source=_source(collection, q), where=where)
    row = await (await conn.execute(query)).fetchone()
    if row is None:
        raise NotFound(f"no feature {feature_id!r} in {collection.id}")
    return row[0]


DATA_VERSION_SQL = ("SELECT (SELECT coalesce(max(id), 0) FROM data_sources) || '.' || "
                    "(SELECT coalesce(max(id), 0) FROM imports) || '.' || "
                    "(SELECT coalesce(max(id), 0) FROM history)")


async def data_version(conn: AsyncConnection) -> str:
    """Changes with every load and import: part of every ETag."""
    row = await (await conn.execute(DATA_VERSION_SQL)).fetchone()
    return row[0] if row else "0"


_EXTENTS: dict[tuple[str, str], list[float] | None] = {}


async def extent(conn: AsyncConnection, collection: Collection, version: str
                 ) -> list[float] | None:
    """The collection's bbox, computed once per data version (not on every /collections)."""
    key = (version, collection.id)
    if key in _EXTENTS:
        return _EXTENTS[key]
    geometry = filter_geometry(collection)
    if not geometry:
        return [-180.0, -90.0, 180.0, 90.0]
    row = await (await conn.execute(sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent({g}) AS e "
        "FROM {source} WHERE {where}) x").format(
            g=sql.SQL(geometry), source=_source(collection, ItemsQuery()),
            where=sql.SQL(collection.base_where)))).fetchone()
    bbox = None if row is None or row[0] is None else [round(v, 6) for v in row]
    if len(_EXTENTS) > 100:
        _EXTENTS.clear()
    _EXTENTS[key] = bbox
    return bbox


async def rows(conn: AsyncConnection, collection: Collection, q: ItemsQuery, version: str,
               as_wkt: bool = False) -> tuple[list[str], list[tuple[Any, ...]]]:
    """One page as plain rows (id, properties, geometry as WKB or WKT, point lon/lat) for CSV
    and GeoPackage; coordinates rounded to the requested precision in PostGIS."""
    where = await build_where(conn, collection, q, version)
    names = q.properties if q.properties is not None else list(collection.properties)
    names = [n for n in names if n != "id"]  # the id column comes first anyway
    geometry = _geometry(collection, q)
    point = collection.geometries.get("point")
    columns = [sql.SQL("{} AS id").format(sql.SQL(collection.id_sql))]
    columns += [sql.SQL("{} AS {}").format(sql.SQL(collection.properties[n].replace("{{}}", "{}")),
                                           sql.Identifier(n)) for n in names]
    if geometry and as_wkt:
        columns.append(sql.SQL("ST_AsText({}, {})").format(sql.SQL(geometry),
                                                           sql.Literal(q.precision)))
    elif geometry:
        columns.append(sql.SQL("ST_AsBinary({})").format(sql.SQL(geometry)))
    else:
        columns.append(sql.SQL("NULL"))
    columns.append(sql.SQL("ST_X({p}), ST_Y({p})").format(p=sql.SQL(point)) if point
                   else sql.SQL("NULL, NULL"))
    query = sql.SQL("SELECT {cols} FROM {source} WHERE {where} ORDER BY {order} LIMIT {limit} "
                    "OFFSET {offset}").format(
        cols=sql.SQL(", ").join(columns), source=_source(collection, q), where=where,
        order=_order(collection, q), limit=sql.Literal(q.limit), offset=sql.Literal(q.offset))
    result = await (await conn.execute(query)).fetchall()
    return ["id", *names], result
