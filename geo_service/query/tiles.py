"""Mapbox vector tiles: one SQL statement per tile, reading the generalized tier made for the zoom.

Every layer is rendered by `ST_TileEnvelope` → `ST_AsMVTGeom` in a CTE → `ST_AsMVT`, and the
spatial test runs on the stored (tier or full) geometry in EPSG:4326 so its GiST index is used.
A generalized tier is read as stored in EPSG:3857 (`boundary_tiers.geom_3857`) and clipped to the
tile plus buffer there; a full shape is clipped in EPSG:4326 and projected. Nothing is simplified
per request. A multi-layer tile is the concatenation of single-layer tiles (protobuf messages merge),
so the `map` tileset holds exactly the bytes of the layer tilesets (geo_service.render.tiles cuts
a layer back out of it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql

from geo_service.errors import ClientError
from geo_service.query import vocabulary as v
from geo_service.query.service import DATA_VERSION_COLUMN, note_version

# Bump when tile content changes for the same data (layers, attributes, SQL): archives built by
# another renderer version are then rebuilt by `tiles build` and not served meanwhile.
RENDERER_VERSION = 5
EXTENT = 4096
BUFFER = 64
MAX_ZOOM = 22  # highest z a tile URL may carry
DATA_MAX_ZOOM = 14  # clients overzoom beyond this (TileJSON maxzoom)
SMALL_PX = 4  # a member's shape under this many pixels across is drawn as its point (see _drawn)
MAX_TILE_BYTES = 500_000  # uncompressed; a larger tile is rendered again from a coarser tier
WORLD = [-180.0, -85.051129, 180.0, 85.051129]

Tiered = Callable[[int | None], sql.Composable]


@dataclass(frozen=True)
class Layer:
    """One MVT layer: its attribute columns, its rows and their geometry."""

    name: str
    description: str
    minzoom: int
    fields: dict[str, str]  # attribute -> description (TileJSON vector_layers)
    columns: tuple[tuple[str, sql.Composable | None], ...]  # (attribute, SQL); None: the name
    name_sql: Callable[[str], sql.Composable]  # lang -> the name in that language
    source: Tiered  # FROM ... WHERE ... for a tier (None: full shapes)
    polygon: Tiered  # the stored geometry to clip (tier or full), EPSG:4326
    mercator: Callable[[int], sql.Composable]  # a tier's geometry as stored in EPSG:3857
    box_test: Callable[[sql.Composable], sql.Composable]  # the indexed test, given the polygon
    order: sql.Composable
    point: sql.Composable | None = None  # drawn where the polygon is missing or collapses
    point_in_box: bool = False  # box_test finds the rows by their point too


def _boundary_layer(name: str, level: str, description: str, minzoom: int,
                    extra: dict[str, tuple[str, str]]) -> Layer:
    fields = {"code": "Code (ISO 3166-1, Natural Earth adm1_code or national code)",
              "name": "Name in the language asked for (falls back to the source's name)"}
    fields |= {k: d for k, (_, d) in extra.items()}
    columns: list[tuple[str, sql.Composable | None]] = [("code", sql.SQL("b.code")), ("name", None)]
    columns += [(k, sql.SQL(e)) for k, (e, _) in extra.items()]
    return Layer(
        name=name, description=description, minzoom=minzoom, fields=fields,
        columns=tuple(columns), name_sql=v.boundary_name,
        source=lambda tier: sql.SQL("boundaries b {} WHERE b.level = {}").format(
            v.tier_join(tier, outer=False) if tier is not None else sql.SQL(""),
            sql.Literal(level)),
        polygon=lambda tier: sql.SQL("b.geom" if tier is None else "bt.geom"),
        mercator=lambda _: sql.SQL("bt.geom_3857"),
        box_test=lambda polygon: sql.SQL("{} && box.geo").format(polygon),
        order=sql.SQL("b.code"),
    )


LAYERS: dict[str, Layer] = {layer.name: layer for layer in (
    _boundary_layer("countries", "country", "Countries (dissolved from Natural Earth admin-1)", 0,
                    {}),
    _boundary_layer("regions", "region", "First-level divisions (Natural Earth 1:10m)", 2,
                    {"country": ("b.iso3166_1", "ISO 3166-1 alpha-2"),
                     "iso3166_2": ("b.iso3166_2", "ISO 3166-2, where known")}),
    # from z8, where the map draws them: below, a municipality is a few pixels across, and
    # Germany's 11,299 filled a z5 tile with 470 KB of outlines no page drew
    _boundary_layer("municipalities", "municipality", "Municipalities with boundaries", 8,
                    {"parent": ("b.parent_code", "Code of the region it lies in")}),
    Layer(
        name="territories",
        description="Human rights territories: their boundary where matched, else a point "
                    f"(also where the boundary is under {SMALL_PX} pixels across at this zoom)",
        minzoom=0,
        fields={"id": "Territory id", "name": "Name (the boundary's name in fr/es where known)",
                "kind": "municipality, metropolitan-area, region or association",
                "commitment_kind": "campaign-signatory, declared, charter, ordinance, ...",
                "year": "Year of joining or declaration",
                "themes": "Rights themes of its initiatives, comma-separated slugs"},
        columns=(("id", sql.SQL("t.id")), ("name", None), ("kind", sql.SQL("t.kind")),
                 ("commitment_kind", sql.SQL("t.commitment_kind")), ("year", sql.SQL("t.year")),
                 ("themes", sql.SQL("array_to_string({}, ',')").format(v.TERRITORY_THEMES))),
        name_sql=v.territory_name,
        source=lambda _: sql.SQL("territories t {} {} WHERE {}").format(
            v.TERRITORY_BOUNDARY, v.TERRITORY_THEMES_JOIN, v.SHOWN_TERRITORY),
        # few territories have a boundary: fetch its tier by key rather than joining all tiers,
        # and only where it would be drawn (a member under a pixel is drawn as its point)
        polygon=lambda tier: _drawn(sql.SQL("b.geom") if tier is None
                                    else v.tier_of(sql.SQL("b.id"), tier)),
        mercator=lambda tier: _drawn(v.tier_of(sql.SQL("b.id"), tier, "geom_3857")),
        # the stored box holds the boundary (a tier lies within its full shape's box) and the
        # point: one indexed test
        box_test=lambda _: sql.SQL("{} && box.geo").format(v.TERRITORY_BOX),
        point=sql.SQL("t.location"), point_in_box=True, order=sql.SQL("t.id"),
    ),
)}

def _drawn(shape: sql.Composable) -> sql.Composable:
    """A territory's shape, or NULL (its point is drawn) where its stored box is under SMALL_PX
    pixels of a 256-pixel tile at this zoom, across and high (heights stretched as Mercator
    stretches them). The map draws no shape under 8 pixels (MIN_SHAPE_PX in map.js: its
    12-pixel marker stands for it); at 100x the members most US places are that small at z2-z5,
    and reading and clipping their shapes was most of a low-zoom tile's time."""
    return sql.SQL(
        "CASE WHEN greatest(ST_XMax({b}) - ST_XMin({b}), (ST_YMax({b}) - ST_YMin({b})) / "
        "cos(radians(least(abs(ST_YMax({b}) + ST_YMin({b})) / 2, 85)))) < "
        "{px} * 360 / 2 ^ {z}::float8 / 256 THEN NULL ELSE {shape} END").format(
            b=v.TERRITORY_BOX, z=Z, shape=shape, px=sql.Literal(SMALL_PX))


TILESETS: dict[str, tuple[str, ...]] = {name: (name,) for name in LAYERS} | {
    "map": tuple(LAYERS)}
TILESET_TITLES = {
    "countries": "Countries", "regions": "Regions", "municipalities": "Municipalities",
    "territories": "Human rights territories",
    "map": "The world map: countries, regions, municipalities and territories, one layer each",
}


def vector_layers(tileset: str) -> list[dict[str, Any]]:
    """TileJSON `vector_layers` of a tileset."""
    return [{"id": name, "description": LAYERS[name].description, "minzoom": LAYERS[name].minzoom,
             "maxzoom": DATA_MAX_ZOOM, "fields": LAYERS[name].fields}
            for name in TILESETS[tileset]]


def check_tile(z: int, x: int, y: int) -> None:
    """z in 0..MAX_ZOOM and x, y on that zoom's grid, else a ClientError saying what is wrong."""
    if not 0 <= z <= MAX_ZOOM:
        raise ClientError(f"z={z} is outside 0–{MAX_ZOOM}")
    side = 1 << z
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < side:
            raise ClientError(f"{name}={value} is outside the zoom {z} grid (0–{side - 1})")


# ------------------------------------------------------------------------------------- the SQL
Z, X, Y = sql.Placeholder("z"), sql.Placeholder("x"), sql.Placeholder("y")
_M = sql.Literal(BUFFER / EXTENT)


def _lon(x: sql.Composable) -> sql.Composable:
    return sql.SQL("({}) / 2 ^ {}::float8 * 360 - 180").format(x, Z)


def _lat(y: sql.Composable) -> sql.Composable:
    return sql.SQL("degrees(atan(sinh(pi() * (1 - 2 * ({}) / 2 ^ {}::float8))))").format(y, Z)


# The tile and its buffer in EPSG:4326, from the tile grid's own formulas. (Projecting the
# buffered 3857 envelope instead would wrap longitudes past ±180 round the globe and turn the
# edge columns of tiles into wrong boxes.) Longitudes may pass ±180 a little; latitudes stay
# inside ±90, so clipped shapes always project.
GEO_BOX = sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, 4326)").format(
    _lon(sql.SQL("{}::float8 - {}").format(X, _M)),
    _lat(sql.SQL("{}::float8 + 1 + {}").format(Y, _M)),
    _lon(sql.SQL("{}::float8 + 1 + {}").format(X, _M)),
    _lat(sql.SQL("{}::float8 - {}").format(Y, _M)))


def _mvt_geom(geometry: sql.Composable, projected: bool = False) -> sql.Composable:
    """A shape in tile coordinates; `projected`: already in EPSG:3857."""
    if not projected:
        geometry = sql.SQL("ST_Transform({}, 3857)").format(geometry)
    return sql.SQL("ST_AsMVTGeom({}, box.merc, {}, {}, true)").format(
        geometry, sql.Literal(EXTENT), sql.Literal(BUFFER))


def _rows_name(layer: Layer) -> sql.Identifier:
    return sql.Identifier(f"rows_{layer.name}")


def _rows_sql(layer: Layer, langs: tuple[str, ...], tier: int | None) -> sql.Composable:
    """The layer's rows in the tile, once, with a name column per language and an order."""
    polygon = layer.polygon(tier)
    if tier is None:  # full shapes: clipped where they are stored, then projected
        shape = _mvt_geom(sql.SQL("ST_ClipByBox2D({}, box.geo)").format(polygon))
    else:  # a tier, stored projected: no projection per request
        shape = _mvt_geom(sql.SQL("ST_ClipByBox2D({}, box.clip)").format(layer.mercator(tier)),
                          projected=True)
    test = layer.box_test(polygon)
    if layer.point is not None:
        shape = sql.SQL("coalesce({}, {})").format(shape, _mvt_geom(layer.point))
        if not layer.point_in_box:
            test = sql.SQL("({} OR {} && box.geo)").format(test, layer.point)
    columns = [sql.SQL("{} AS {}").format(expression, sql.Identifier(alias))
               for alias, expression in layer.columns if expression is not None]
    columns += [sql.SQL("{} AS {}").format(layer.name_sql(lang), sql.Identifier(f"name_{lang}"))
                for lang in langs]
    return sql.SQL("SELECT {columns}, {shape} AS geom, row_number() OVER (ORDER BY {order}) AS ord "
                   "FROM box, {source} AND {test}").format(
        columns=sql.SQL(", ").join(columns), shape=shape, order=layer.order,
        source=layer.source(tier), test=test)


def _mvt_sql(layer: Layer, lang: str) -> sql.Composable:
    """ST_AsMVT over the layer's rows (rows whose geometry collapses to NULL are skipped)."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} AS name").format(sql.Identifier(f"name_{lang}")) if expression is None
        else sql.Identifier(alias) for alias, expression in layer.columns)
    return sql.SQL("(SELECT coalesce(ST_AsMVT(q.*, {}, {}, 'geom'), ''::bytea) FROM "
                   "(SELECT {}, geom FROM {} ORDER BY ord) q)").format(
        sql.Literal(layer.name), sql.Literal(EXTENT), columns, _rows_name(layer))


def tile_sql(tileset: str, langs: tuple[str, ...], z: int, tier: int | None,
             versioned: bool = False) -> sql.Composed:
    """One statement: per language, the tile's bytes with its layers concatenated. Geometry is
    computed once for all languages. Placeholders %(z)s %(x)s %(y)s. `versioned`: the data
    version, read in the same snapshot, as a last column."""
    layers = [LAYERS[name] for name in TILESETS[tileset] if LAYERS[name].minzoom <= z]
    version = sql.SQL(", {}").format(DATA_VERSION_COLUMN) if versioned else sql.SQL("")
    if not layers:
        return sql.SQL("SELECT {}{}").format(
            sql.SQL(", ").join(sql.SQL("''::bytea") for _ in langs), version)
    ctes = sql.SQL("").join(
        sql.SQL(", {} AS MATERIALIZED ({})").format(_rows_name(layer), _rows_sql(layer, langs, tier))
        for layer in layers)
    per_lang = sql.SQL(", ").join(
        sql.SQL(" || ").join(_mvt_sql(layer, lang) for layer in layers) for lang in langs)
    return sql.SQL("WITH box AS (SELECT ST_TileEnvelope({z}, {x}, {y}) AS merc, "
                   "ST_TileEnvelope({z}, {x}, {y}, margin => {m}) AS clip, {box} AS geo)"
                   "{ctes} SELECT {per_lang}{version}").format(
        z=Z, x=X, y=Y, m=_M, box=GEO_BOX, ctes=ctes, per_lang=per_lang, version=version)


@functools.lru_cache(maxsize=1024)
def _statement(tileset: str, langs: tuple[str, ...], z: int, tier: int | None,
               versioned: bool) -> bytes:
    """tile_sql composed once per tileset, languages, zoom and tier: composing it anew took
    1.1 ms (regions) to 3.3 ms (map) of the event loop's time per tile, measured on a loaded
    2-core machine, against 2-5 ms for PostGIS to run it at z5-z8."""
    return tile_sql(tileset, langs, z, tier, versioned).as_bytes(None)


async def tile(conn: AsyncConnection, tileset: str, langs: tuple[str, ...], z: int, x: int, y: int,
               tier: int | None, versioned: bool = False) -> tuple[list[bytes], str | None]:
    """The tile's bytes in each language, as one statement renders them at `tier`; and, when
    `versioned`, the data version that statement read them at (else None)."""
    cursor = await conn.execute(_statement(tileset, langs, z, tier, versioned),
                                {"z": z, "x": x, "y": y})
    row = await cursor.fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    if not versioned:
        return [bytes(data) for data in row], None
    version = str(row[-1])
    note_version(conn, version)
    return [bytes(data) for data in row[:-1]], version
