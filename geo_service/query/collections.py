"""The OGC API – Features collections: for each, its FROM clause, id, geometries, properties,
equality filters and how `region=` and `datetime=` apply. Every expression is a psycopg.sql
fragment built from the shared vocabulary; what depends on the tier of generalized shapes (the
FROM clause, a section's union) is a function of the tier chosen per request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from psycopg import sql

from geo_service.query import regions
from geo_service.query import vocabulary as v

Filter = Callable[[str], sql.Composable]  # a query parameter's value -> its condition
Tiered = Callable[[int | None], sql.Composable]  # an expression for a tier (None: full shapes)
RegionRule = Literal["boundary", "territory", "section"]


@dataclass(frozen=True)
class Collection:
    """How one collection is read."""

    id: str
    title: str
    description: str
    source: Tiered  # FROM ...
    id_sql: sql.Composable
    geometries: dict[str, sql.Composable | Tiered | None]  # geometry=boundary|point|none
    properties: dict[str, sql.Composable]  # name -> expression
    types: dict[str, str]  # name -> JSON schema type (queryables)
    filters: dict[str, Filter]  # query parameter -> its condition
    region: RegionRule
    spatial: sql.Composable | None  # the full-resolution geometry bbox and spatial filters test
    # an indexed expression whose box holds `spatial`'s (default: `spatial` itself, when it is
    # an indexed column): a spatial test looks candidates up by it first
    box: sql.Composable | None = None
    # `spatial` for the exact bbox test, written so that it is read only for the candidates
    # whose box crosses the query's edge (default: `spatial`)
    shape: sql.Composable | None = None
    level: str | None = None
    datetime_sql: sql.Composable | None = None
    base_where: sql.Composable = field(default_factory=lambda: sql.SQL("TRUE"))
    hidden: bool = False  # engagement-only rows shown only with include_engagement=true
    extra_params: tuple[str, ...] = ()

    @property
    def box_sql(self) -> sql.Composable | None:
        return self.box if self.box is not None else self.spatial

    @property
    def shape_sql(self) -> sql.Composable | None:
        return self.shape if self.shape is not None else self.spatial

    @property
    def default_geometry(self) -> str:
        return next(iter(self.geometries))

    def from_clause(self, tier: int | None) -> sql.Composable:
        return self.source(tier)

    def geometry(self, name: str | None, tier: int | None) -> sql.Composable | None:
        expression = self.geometries[name or self.default_geometry]
        return expression(tier) if callable(expression) else expression

    def region_condition(self, region: regions.Region) -> sql.Composable:
        if self.region == "boundary":
            return regions.boundaries_in(region, self.level or "region")
        if self.region == "territory":
            return regions.territories_in(region)
        return regions.sections_in(region)


def _equals(column: str) -> Filter:
    expression = sql.SQL(column)

    def condition(value: str) -> sql.Composable:
        return v.equals(expression, value)

    return condition


def _columns(mapping: dict[str, str]) -> dict[str, sql.Composable]:
    return {name: sql.SQL(expression) for name, expression in mapping.items()}


_BOUNDARY_PROPS = _columns({
    "code": "b.code", "name": "b.name", "name_en": "b.name_en", "name_fr": "b.name_fr",
    "name_es": "b.name_es", "name_local": "b.name_local", "level": "b.level",
    "iso3166_1": "b.iso3166_1", "iso3166_2": "b.iso3166_2", "national_code": "b.national_code",
    "wikidata_id": "b.wikidata_id", "parent_code": "b.parent_code", "source": "b.source",
    "area_km2": "round(b.area_km2::numeric, 1)",
})
_BOUNDARY_TYPES = {k: "string" for k in _BOUNDARY_PROPS} | {"area_km2": "number"}


def _boundary_source(tier: int | None) -> sql.Composable:
    return sql.SQL("boundaries b {}").format(v.tier_join(tier))


def _boundaries(cid: str, level: str, title: str, description: str) -> Collection:
    return Collection(
        id=cid, title=title, description=description, source=_boundary_source,
        id_sql=sql.SQL("b.code"),
        geometries={"boundary": sql.SQL("coalesce(bt.geom, b.geom)"),
                    "point": sql.SQL("b.label_point"), "none": None},
        properties=_BOUNDARY_PROPS, types=_BOUNDARY_TYPES,
        filters={"country": _equals("b.iso3166_1"), "parent": _equals("b.parent_code")},
        region="boundary", spatial=sql.SQL("b.geom"), level=level,
        base_where=v.equals(sql.SQL("b.level"), level),
    )


_TERRITORY_PROPS = _columns({
    "id": "t.id", "name": "t.name", "local_name": "t.local_name", "kind": "t.kind",
    "country": "t.iso3166_1", "sections": "t.sections", "commitment_kind": "t.commitment_kind",
    "commitment": "t.commitment", "year": "t.year", "joined_on": "t.joined_on",
    "campaign_wave": "t.campaign_wave", "status": "t.status", "website": "t.website",
    "sources": "t.sources", "confidence": "t.confidence", "boundary_level": "t.boundary_level",
    "boundary_code": "t.boundary_code", "match_outcome": "t.match_outcome",
    "match_method": "t.match_method", "match_score": "t.match_score",
}) | {"themes": v.TERRITORY_THEMES}
_TERRITORY_TYPES = {k: "string" for k in _TERRITORY_PROPS} | {
    "year": "integer", "match_score": "number", "sections": "array", "sources": "array",
    "themes": "array"}
_MEMBER_FILTERS: dict[str, Filter] = {
    "kind": _equals("t.kind"), "commitment_kind": _equals("t.commitment_kind"),
    "country": _equals("t.iso3166_1")}

TERRITORIES = Collection(
    id="territories", title="Human rights territories",
    description="Local and regional governments of the movement with their commitment, "
                "sources and confidence: documented public commitments, not the official "
                "campaign roster. Engagement-only rows appear with include_engagement=true.",
    source=lambda tier: sql.SQL("territories t {} {} {}").format(
        v.TERRITORY_BOUNDARY, v.TERRITORY_THEMES_JOIN, v.tier_join(tier)),
    id_sql=sql.SQL("t.id"),
    # points by default: one geometry type per collection, as desktop GIS declares a layer's
    # type from it (QGIS made this a point layer and could not draw the few polygons in it);
    # geometry=boundary gives each one's shape (its point where it has none)
    geometries={"point": sql.SQL("t.location"),
                "boundary": sql.SQL("coalesce(bt.geom, b.geom, t.location)"), "none": None},
    properties=_TERRITORY_PROPS, types=_TERRITORY_TYPES,
    filters=_MEMBER_FILTERS | {"theme": v.territory_has_theme},
    region="territory", spatial=sql.SQL("coalesce(b.geom, t.location)"),
    box=v.TERRITORY_BOX, shape=v.TERRITORY_SHAPE,
    datetime_sql=v.TERRITORY_JOINED,
    hidden=True, extra_params=("geometry", "include_engagement"),
)

TERRITORY_BOUNDARIES = Collection(
    id="territory-boundaries", title="Human rights territories: their boundaries",
    description="The territories that sit on a boundary of their own (a municipality, region "
                "or the first-level unit that is the city), as MultiPolygons only; the others "
                "are points in `territories`. Engagement-only rows appear with "
                "include_engagement=true.",
    source=lambda tier: sql.SQL("territories t JOIN boundaries b ON b.level = t.boundary_level "
                                "AND b.code = t.boundary_code {} {}").format(
        v.TERRITORY_THEMES_JOIN, v.tier_join(tier)),
    id_sql=sql.SQL("t.id"),
    geometries={"boundary": sql.SQL("coalesce(bt.geom, b.geom)"), "none": None},
    properties=_TERRITORY_PROPS | _columns({
        "boundary_name": "b.name", "boundary_source": "b.source",
        "area_km2": "round(b.area_km2::numeric, 1)"}),
    types=_TERRITORY_TYPES | {"area_km2": "number", "boundary_name": "string",
                              "boundary_source": "string"},
    filters=_MEMBER_FILTERS | {"theme": v.territory_has_theme},
    region="territory", spatial=sql.SQL("b.geom"), box=v.TERRITORY_BOX,
    datetime_sql=v.TERRITORY_JOINED,
    hidden=True, extra_params=("include_engagement",),
)

INITIATIVES = Collection(
    id="initiatives", title="Initiatives",
    description="What territories do for which rights, located at their territory.",
    source=lambda _: sql.SQL("initiatives i JOIN territories t ON t.id = i.territory_id"),
    id_sql=sql.SQL("i.id"), geometries={"point": sql.SQL("t.location"), "none": None},
    properties=_columns({
        "id": "i.id", "territory_id": "i.territory_id", "territory_name": "t.name",
        "country": "t.iso3166_1", "title": "i.title", "summary": "i.summary",
        "year_started": "i.year_started", "status": "i.status",
    }) | {"themes": v.INITIATIVE_THEMES} | _columns({"source": "i.source",
                                                    "confidence": "i.confidence"}),
    types={"year_started": "integer", "themes": "array"},
    filters=_MEMBER_FILTERS | {"theme": v.initiative_has_theme},
    region="territory", spatial=sql.SQL("t.location"),
    datetime_sql=sql.SQL("make_date(i.year_started, 1, 1)"),
    hidden=True, extra_params=("include_engagement",),
)

SECTIONS = Collection(
    id="uclg-sections", title="UCLG sections",
    description="The regional sections of UCLG, drawn as the union of their countries.",
    source=lambda _: sql.SQL("uclg_sections s"), id_sql=sql.SQL("s.slug"),
    geometries={"boundary": lambda tier: sql.SQL(
        "(SELECT ST_Multi(ST_Union(coalesce(bt.geom, b.geom))) FROM boundaries b JOIN "
        "uclg_section_countries c ON c.iso3166_1 = b.code {} WHERE b.level = 'country' AND "
        "c.section_slug = s.slug)").format(v.tier_join(tier or 1)), "none": None},
    properties=_columns({
        "slug": "s.slug", "name_en": "s.name_en", "name_fr": "s.name_fr", "name_es": "s.name_es",
        "body": "s.body", "country_list_status": "s.country_list_status",
    }) | {"countries": sql.SQL(
        "(SELECT coalesce(array_agg(iso3166_1 ORDER BY iso3166_1), {}) FROM "
        "uclg_section_countries WHERE section_slug = s.slug)").format(v.EMPTY_TEXT_ARRAY)},
    types={"countries": "array"}, filters={}, region="section", spatial=None,
    extra_params=("geometry",),
)

COLLECTIONS: dict[str, Collection] = {c.id: c for c in (
    _boundaries("countries", "country", "Countries",
                "Countries (ISO 3166-1), dissolved from Natural Earth admin-1."),
    _boundaries("regions", "region", "Regions",
                "First-level divisions: states, provinces, regions (Natural Earth 1:10m)."),
    _boundaries("municipalities", "municipality", "Municipalities",
                "Local governments with boundaries: the official municipal layers of South "
                "Korea, Spain, Italy, Germany, the United States, Brazil, Chile, Taiwan and "
                "Sweden (and any loaded as one's own)."),
    TERRITORIES, TERRITORY_BOUNDARIES, INITIATIVES, SECTIONS,
)}
