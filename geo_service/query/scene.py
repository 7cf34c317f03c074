"""What one map image shows, read in one short read-only transaction: the region and its name,
the countries and regions behind, the territories (by the same region rule as the API) and
their shapes, and the sources to credit. Rows only; geo_service.render.mapimage draws them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.domain import Credit
from geo_service.errors import ClientError
from geo_service.query import regions
from geo_service.query import vocabulary as v
from geo_service.query.service import data_version


@dataclass(frozen=True)
class SceneFilters:
    """The web map's filters, as map images take them."""

    theme: str | None = None
    section: str | None = None
    kind: str | None = None
    commitment_kind: str | None = None
    year: int | None = None  # the members who had joined by the end of it


@dataclass
class SceneRows:
    version: str
    region: regions.Region
    region_name: str  # "" for the world (the renderer names it in its language)
    focus: set[str]  # ISO 3166-1 codes drawn as the region
    tier: int
    countries: list[tuple[str, bytes]]  # code, WKB
    regions: list[tuple[str, str | None, bytes]] | None  # code, ISO 3166-2, WKB
    territories: list[dict[str, Any]]
    # territory id, commitment kind, WKB, and its boundary's source to credit where drawn
    polygons: list[tuple[str, str, bytes, Credit]]
    subdivision_shape: bytes | None  # the full shape of a subdivision region (to frame)
    # the sources of the boundaries behind: the countries and the regions drawn
    sources: list[Credit] = field(default_factory=list)
    stamp: dt.date | None = None  # when the data last changed
    # the territory a map is framed on: id, name, kind, lon, lat, bbox of its boundary (or None)
    territory: dict[str, Any] | None = None
    bbox: tuple[float, float, float, float] | None = None  # the box a map is framed on


def tier_for(region: regions.Region) -> int:
    """The generalized tier an image of this region draws."""
    return {"world": 1, "section": 1, "country": 2}.get(region.kind, 3)


async def _name_and_focus(conn: AsyncConnection, region: regions.Region, lang: str
                          ) -> tuple[str, set[str]]:
    code = sql.Literal(region.code)
    if region.kind == "world":
        return "", set()
    if region.kind == "section":
        row = await (await conn.execute(sql.SQL("SELECT {} FROM uclg_sections s WHERE slug = {}")
                                        .format(v.name_in(lang, "s"), code))).fetchone()
        members = await (await conn.execute(
            "SELECT iso3166_1 FROM uclg_section_countries WHERE section_slug = %s",
            (region.code,))).fetchall()
        return (row[0] if row else region.code), {r[0] for r in members}
    level = "country" if region.kind == "country" else "region"
    column = sql.Identifier("code" if level == "country" else "iso3166_2")
    row = await (await conn.execute(sql.SQL(
        "SELECT {}, b.iso3166_1 FROM boundaries b WHERE b.level = {} AND b.{} = {} "
        "ORDER BY b.code LIMIT 1").format(v.boundary_name(lang), sql.Literal(level), column,
                                          code))).fetchone()
    if row is None:
        raise ClientError(f"unknown region {region.code!r}")
    return row[0], {row[1]}


async def _territory(conn: AsyncConnection, territory_id: str, lang: str) -> dict[str, Any]:
    """The shown territory a map is framed on, or a ClientError."""
    row = await (await conn.execute(sql.SQL(
        "SELECT t.id, {name}, t.kind, t.iso3166_1, ST_X(t.location), ST_Y(t.location), "
        "ST_XMin(b.geom), ST_YMin(b.geom), ST_XMax(b.geom), ST_YMax(b.geom) "
        "FROM territories t {join} WHERE t.id = %s AND {shown}").format(
            name=v.territory_name(lang), join=v.TERRITORY_BOUNDARY, shown=v.SHOWN_TERRITORY),
        (territory_id,))).fetchone()
    if row is None:
        raise ClientError(f"territory={territory_id!r} is not a territory on the map "
                          "(see /territories)")
    return {"id": row[0], "name": row[1], "kind": row[2], "country": row[3], "lon": row[4],
            "lat": row[5], "bbox": list(row[6:10]) if row[6] is not None else None}


async def load(conn: AsyncConnection, region_text: str, lang: str, filters: SceneFilters,
               territory_id: str | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               shape_floor: Callable[[SceneRows], float] | None = None) -> SceneRows:
    """Everything the image shows, at one data version (REPEATABLE READ, READ ONLY). A map
    framed on a territory shows its country as the region.

    `shape_floor`, given the rows read so far (all but the members' shapes), answers the
    smallest box (degrees, its longer side) of a member's shape the image could draw: the
    shapes of members whose stored box is under it are not read (the map draws them as their
    markers), so a world map of ten thousand members reads the few hundred shapes it shows.
    The framed territory's shape is read whatever its size."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        version = await data_version(conn)
        known = await regions.known_regions(conn, version)
        focus_territory = None
        if territory_id is not None:
            focus_territory = await _territory(conn, territory_id, lang)
            region = (regions.Region("country", focus_territory["country"])
                      if focus_territory["country"] in known.countries else regions.WORLD)
        else:
            region = regions.resolve(region_text, known, allow_world=True)
        name, focus = await _name_and_focus(conn, region, lang)
        if filters.theme and not await _exists(conn, "rights_themes", filters.theme):
            raise ClientError(f"theme={filters.theme!r} is not a rights theme slug")
        if filters.section and not await _exists(conn, "uclg_sections", filters.section):
            raise ClientError(f"section={filters.section!r} is not a UCLG section slug")
        tier = tier_for(region) if focus_territory is None else 3
        box = sql.SQL("ST_MakeEnvelope({}, 4326)").format(
            sql.SQL(", ").join(sql.Literal(float(n)) for n in bbox)) if bbox else None
        if bbox:  # a web map's view: finer shapes as it narrows, regions below 40° across
            width = bbox[2] - bbox[0]
            tier = 1 if width > 120 else 2 if width > 40 else 3
        countries = await (await conn.execute(sql.SQL(
            "SELECT b.code, ST_AsBinary(bt.geom) FROM boundaries b {} WHERE b.level = 'country' "
            "ORDER BY b.code").format(v.tier_join(tier, outer=False)))).fetchall()
        region_rows = None
        region_countries = sorted(focus)
        if box is not None and bbox and bbox[2] - bbox[0] <= 40:
            region_rows = await (await conn.execute(sql.SQL(
                "SELECT b.code, b.iso3166_2, ST_AsBinary(bt.geom) FROM boundaries b {} "
                "WHERE b.level = 'region' AND b.geom && {} ORDER BY b.code").format(
                    v.tier_join(3, outer=False), box))).fetchall()
            region_countries = sorted({r[0] for r in await (await conn.execute(sql.SQL(
                "SELECT DISTINCT iso3166_1 FROM boundaries WHERE level = 'region' AND geom && {} "
                "AND iso3166_1 IS NOT NULL").format(box))).fetchall()})
        elif region.kind in ("country", "subdivision"):
            region_rows = await (await conn.execute(sql.SQL(
                "SELECT b.code, b.iso3166_2, ST_AsBinary(bt.geom) FROM boundaries b {} "
                "WHERE b.level = 'region' AND b.iso3166_1 = ANY({}) ORDER BY b.code").format(
                    v.tier_join(3, outer=False), sql.Literal(sorted(focus))))).fetchall()
        conditions = [v.SHOWN_TERRITORY, regions.territories_in(region)]
        if box is not None:
            conditions.append(sql.SQL("t.location && {}").format(box))
        if filters.kind:
            conditions.append(v.equals(sql.SQL("t.kind"), filters.kind))
        if filters.commitment_kind:
            conditions.append(v.equals(sql.SQL("t.commitment_kind"), filters.commitment_kind))
        if filters.section:
            conditions.append(v.territory_in_section(filters.section))
        if filters.theme:
            conditions.append(v.territory_has_theme(filters.theme))
        if filters.year:
            conditions.append(v.joined_by(filters.year))
        rows = await (await conn.execute(sql.SQL(
            "SELECT t.id, {name}, t.kind, t.commitment_kind, ST_X(t.location), ST_Y(t.location) "
            "FROM territories t {join} WHERE {where} ORDER BY t.name, t.id").format(
                name=v.territory_name(lang), join=v.TERRITORY_BOUNDARY,
                where=v.conjunction(conditions)))).fetchall()
        territories = [{"id": r[0], "name": r[1], "kind": r[2], "commitment_kind": r[3],
                        "lon": r[4], "lat": r[5]} for r in rows]
        shape = None
        if region.kind == "subdivision":
            found = await (await conn.execute(
                "SELECT ST_AsBinary(geom) FROM boundaries WHERE level = 'region' AND "
                "iso3166_2 = %s ORDER BY code LIMIT 1", (region.code,))).fetchone()
            shape = bytes(found[0]) if found else None
        sources = await (await conn.execute(sql.SQL(  # the sources of the boundaries behind:
            # the countries and the regions drawn (those of a country or subdivision shown);
            # the territories' shapes carry theirs, credited where drawn
            "SELECT {credit}, ds.licence, ds.attribution, ds.level FROM data_sources ds "
            "WHERE ds.id IN (SELECT DISTINCT data_source_id FROM boundaries WHERE "
            "level = 'country' OR (level = 'region' AND iso3166_1 = ANY(%s))) "
            "ORDER BY array_position(ARRAY['country', 'region'], ds.level), ds.id").format(
                credit=v.short_credit("ds", "ds.source")),
            (region_countries if region_rows is not None else [],))).fetchall()
        stamp = await (await conn.execute(
            "SELECT changed_at::date FROM data_version")).fetchone()
        scene = SceneRows(
            version=version, region=region, region_name=name, focus=focus, tier=tier,
            countries=[(r[0], bytes(r[1])) for r in countries],
            regions=None if region_rows is None else [(r[0], r[1], bytes(r[2]))
                                                      for r in region_rows],
            territories=territories, polygons=[], subdivision_shape=shape,
            sources=[Credit(*r) for r in sources], stamp=stamp[0] if stamp else None,
            territory=focus_territory, bbox=bbox)
        floor = shape_floor(scene) if shape_floor is not None else 0.0
        scene.polygons = await _shapes(conn, conditions, tier, floor, territory_id)
    return scene


async def _shapes(conn: AsyncConnection, conditions: list[sql.Composable], tier: int,
                  floor: float, keep: str | None) -> list[tuple[str, str, bytes, Credit]]:
    """The shapes at `tier` of the members meeting `conditions` whose stored box is at least
    `floor` degrees across (and territory `keep`'s), each with its boundary's source."""
    across = sql.SQL("greatest(ST_XMax({box}) - ST_XMin({box}), ST_YMax({box}) - ST_YMin({box}))"
                     ).format(box=v.TERRITORY_BOX)
    large = sql.SQL("({} >= {} OR t.id = {})").format(across, sql.Literal(float(floor)),
                                                       sql.Literal(keep))
    rows = await (await conn.execute(sql.SQL(
        "SELECT t.id, t.commitment_kind, ST_AsBinary(bt.geom), {credit}, ds.licence, "
        "ds.attribution, b.level "
        "FROM territories t {} {} LEFT JOIN data_sources ds ON ds.id = b.data_source_id "
        "WHERE {} ORDER BY t.id").format(
            v.TERRITORY_BOUNDARY, v.tier_join(tier, outer=False),
            v.conjunction([*conditions, large]),
            credit=v.short_credit("ds", "b.source")))).fetchall()
    return [(r[0], r[1], bytes(r[2]), Credit(*r[3:7])) for r in rows]


async def _exists(conn: AsyncConnection, table: str, slug: str) -> bool:
    query = sql.SQL("SELECT 1 FROM {} WHERE slug = %s").format(sql.Identifier(table))
    return await (await conn.execute(query, (slug,))).fetchone() is not None
