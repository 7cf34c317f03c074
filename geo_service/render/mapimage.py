"""Presentation map images (PNG, SVG, PDF) drawn server-side with geopandas and matplotlib.

The world is drawn in Equal Earth; a section, a country or a province in a Lambert azimuthal
equal-area projection centred on it (Equal Earth recentred when it spans more than a hemisphere's
width). Boundaries come from the generalized tiers, territories from the campaign tables, with the
same colours (commitment kind) and shapes (kind) as the web map. Text is Noto Sans with Noto Sans
CJK KR as fallback, so Hangul names render; SVG keeps text as text, PDF embeds the fonts. The
same parameters and data version give the same bytes: no dates or software versions are written
into the files, and SVG ids are salted with a constant.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, get_args

import geopandas as gpd
import matplotlib
import numpy as np
import shapely
from psycopg import AsyncConnection
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pyproj import Transformer
from shapely.geometry import box

from geo_service.domain import Credit
from geo_service.errors import ClientError
from geo_service.query import scene as scene_query
from geo_service.query.features import parse_bbox
from geo_service.query.scene import SceneFilters, SceneRows
from geo_service.query.service import READ_OPTIONS
from geo_service.render import credits, i18n

matplotlib.use("agg")
from matplotlib import pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
Preset = Literal["slide-16x9", "slide-4k", "slide-4x3", "a4-landscape", "square", "social"]
PRESETS: dict[Preset, tuple[int, int, int]] = {  # width px, height px, dpi
    "slide-16x9": (1920, 1080, 144),
    "slide-4k": (3840, 2160, 288),
    "slide-4x3": (1600, 1200, 144),
    "a4-landscape": (3508, 2480, 300),  # 297 × 210 mm at 300 dpi
    "square": (1080, 1080, 144),
    "social": (1200, 630, 120),  # Open Graph and Twitter cards
}
assert set(PRESETS) == set(get_args(Preset))
DEFAULT_PRESET: Preset = "slide-16x9"
MIN_PIXELS, MAX_PIXELS = 200, 10_000
MIN_DPI, MAX_DPI = 50, 600
FONTS = ["Noto Sans", "Noto Sans CJK KR", "DejaVu Sans"]
MARKERS = {"circle": "o", "square": "s", "diamond": "D", "triangle": "^"}
EQUAL_EARTH = "EPSG:8857"
THEMES = {
    False: {"sea": "#dce8f0", "land": "#f3f1ec", "focus": "#e6e1d6", "edge": "#a8a294",
            "inner": "#c9c3b6", "text": "#1d1d1b", "muted": "#555550", "marker_edge": "#1d1d1b"},
    True: {"sea": "#14202b", "land": "#2b3540", "focus": "#3a4653", "edge": "#5d6b78",
           "inner": "#4a5764", "text": "#f1f1ee", "muted": "#b9bec4", "marker_edge": "#f1f1ee"},
}
TEXT = {
    "world": {"en": "World", "fr": "Monde", "es": "Mundo"},
    "view": {"en": "Map view", "fr": "Vue de la carte", "es": "Vista del mapa"},
    "version": {"en": "data version {v} of {d}", "fr": "version des données {v} du {d}",
                "es": "versión de los datos {v} del {d}"},
}
LOCK = threading.Lock()  # matplotlib's pyplot state and font cache are not thread-safe


@dataclass(frozen=True)
class MapRequest:
    """Validated parameters of one image: the same for the CLI and the HTTP endpoint."""

    format: str = "png"
    region: str = "world"
    territory: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    theme: str | None = None
    section: str | None = None
    kind: str | None = None
    commitment_kind: str | None = None
    year: int | None = None
    lang: str = "en"
    title: str | None = None
    subtitle: str | None = None
    legend: bool = True
    labels: bool = False
    preset: str | None = None
    width: int = 1920
    height: int = 1080
    dpi: int = 144
    transparent: bool = False
    dark: bool = False
    filters: dict[str, str] = field(default_factory=dict)

    def key(self, version: str) -> str:
        return repr(sorted(asdict(self).items())) + "|" + version


def _flag(value: Any) -> Any:
    """on/off, true/false, yes/no, 1/0 (or a bool) as a bool."""
    if value is None or isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use on/off (true/false)")


Flag = Annotated[bool | None, BeforeValidator(_flag), Field(description="on/off")]


class MapParams(BaseModel):
    """The parameters of a map image, declared once: GET /export/map.{fmt} takes them as its
    query (and documents them from here); `geo-service export` passes the same names."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(None, max_length=100, description=(
        "world (default), a UCLG section slug, ISO 3166-1 (FR) or ISO 3166-2 (KR-29)"))
    territory: str | None = Field(None, max_length=200, description=(
        "A territory's id: the map is framed on it (its boundary, or its point), with its name "
        "as the title; not with `region`"))
    bbox: str | None = Field(None, max_length=200, description=(
        "minLon,minLat,maxLon,maxLat: the map framed on this box (a web map's view, as its "
        "Download control sends it), with the members inside; not with `region` or `territory`"))
    theme: str | None = Field(None, max_length=100, description="Rights theme slug")
    section: str | None = Field(None, max_length=100, description="UCLG section slug")
    kind: str | None = Field(None, max_length=100, description=", ".join(i18n.KINDS))
    commitment_kind: str | None = Field(None, max_length=100,
                                        description=", ".join(i18n.COMMITMENTS))
    year: int | None = Field(None, ge=i18n.FIRST_YEAR, le=i18n.LAST_YEAR, description=(
        "The members who had joined by the end of this year (their joining date, else their "
        "year)"))
    lang: i18n.Lang | None = Field(None, description="Language of the text")
    title: str | None = Field(None, max_length=200)
    subtitle: str | None = Field(None, max_length=200)
    legend: Flag = None
    labels: Flag = None
    transparent: Flag = None
    dark: Flag = None
    preset: Preset | None = Field(None, description="Size for slides and print (default "
                                                    "slide-16x9)")
    width: int | None = Field(None, ge=MIN_PIXELS, le=MAX_PIXELS, description="pixels, 200–10000")
    height: int | None = Field(None, ge=MIN_PIXELS, le=MAX_PIXELS, description="pixels, 200–10000")
    dpi: int | None = Field(None, ge=MIN_DPI, le=MAX_DPI, description="50–600")

    @field_validator("kind", "commitment_kind")
    @classmethod
    def _known(cls, value: str | None, info: ValidationInfo) -> str | None:
        table = i18n.KINDS if info.field_name == "kind" else i18n.COMMITMENTS
        if value and value not in table:
            raise ValueError(f"one of {', '.join(table)}")
        return value


def client_error(exc: ValidationError) -> ClientError:
    """Pydantic's findings about parameters, as one ClientError naming each parameter."""
    unknown = [str(e["loc"][-1]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    if unknown:
        return ClientError(f"unknown parameter(s): {', '.join(unknown)}")
    found = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        what = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("greater_than_equal", "less_than_equal"):
            what = f"is outside the range ({what})"
        found.append(f"{name}={error.get('input')!r}: {what}")
    return ClientError("; ".join(found))


def request_from(params: MapParams, fmt: str) -> MapRequest:
    """The image a validated set of parameters asks for (presets or sizes, flags, filters)."""
    if fmt not in FORMATS:
        raise ClientError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    sizes = {k: getattr(params, k) for k in ("width", "height", "dpi")
             if getattr(params, k) is not None}
    if params.preset and sizes:
        raise ClientError("give a preset or width/height/dpi, not both")
    if params.territory and params.region:
        raise ClientError("give a region or a territory, not both")
    box = None
    if params.bbox:
        if params.region or params.territory:
            raise ClientError("give a bbox, a region or a territory, only one")
        box = parse_bbox(params.bbox)
        if not box[2] - box[0] > 1e-4 or not box[3] - box[1] > 1e-4:
            raise ClientError("bbox: minLon < maxLon and minLat < maxLat (a box across the "
                              "antimeridian is not drawn: split it)")
    width, height, dpi = PRESETS[params.preset or DEFAULT_PRESET]
    width, height = sizes.get("width", width), sizes.get("height", height)
    dpi = sizes.get("dpi", 144 if sizes else dpi)
    filters = {name: value for name in ("theme", "section", "kind", "commitment_kind")
               if (value := getattr(params, name))}
    return MapRequest(
        format=fmt, region=(params.region or "world").strip() or "world",
        territory=params.territory.strip() if params.territory else None, bbox=box,
        lang=params.lang or "en", title=params.title, subtitle=params.subtitle,
        legend=params.legend is not False, labels=bool(params.labels),
        preset=params.preset or (None if sizes else DEFAULT_PRESET), width=width, height=height,
        dpi=dpi, transparent=bool(params.transparent), dark=bool(params.dark), filters=filters,
        year=params.year, **filters)


def parse(params: dict[str, Any], fmt: str) -> MapRequest:
    """Check parameters given as a mapping (the command line, scripts); anything unknown or out
    of range is a ClientError."""
    try:
        checked = MapParams.model_validate(params)
    except ValidationError as exc:
        raise client_error(exc) from None
    return request_from(checked, fmt)


# ------------------------------------------------------------------------------------ the data
@dataclass
class Scene:
    """Everything one image shows, read in one short transaction."""

    region_kind: str  # world, section, country, subdivision, view (a bbox)
    region_name: str
    focus: set[str]  # ISO 3166-1 codes drawn as the region
    countries: gpd.GeoDataFrame
    regions: gpd.GeoDataFrame | None
    territories: list[dict[str, Any]]
    polygons: gpd.GeoDataFrame  # with each one's source to credit (`credit`)
    extent: tuple[float, float, float, float]  # lon/lat of what to frame
    sources: list[Credit]  # of the boundaries behind (countries, regions)
    lang: str
    version_text: str  # "data version 12 of 2026-12-03", in the image's language
    subtitle: str | None = None  # of a territory's map: its kind and country
    territory: str | None = None  # the id of the territory the map is framed on

    def credit(self, polygons: gpd.GeoDataFrame | None) -> str:
        """The credit line: one short credit per source drawn (the boundaries behind, then the
        members' shapes of `polygons`), the members, the data version."""
        drawn = [] if polygons is None or polygons.empty else list(polygons["credit"])
        return f"{credits.line(self.sources, drawn, self.lang)} · {self.version_text}"

    def full_credit(self, polygons: gpd.GeoDataFrame | None) -> str:
        """The full attributions of what is drawn, for the file's metadata."""
        drawn = [] if polygons is None or polygons.empty else list(polygons["credit"])
        return credits.full(self.sources + drawn)


def _frame(geoms: list[Any]) -> tuple[float, float, float, float]:
    """The lon/lat box to frame: the largest part of each shape (so France means the
    mainland, not its overseas regions), with a margin."""
    parts = []
    for geom in geoms:
        if geom is None or geom.is_empty:
            continue
        pieces = list(getattr(geom, "geoms", [geom]))
        parts.append(max(pieces, key=lambda p: p.area))
    if not parts:
        return (-180.0, -60.0, 180.0, 85.0)
    minx, miny, maxx, maxy = shapely.union_all(parts).bounds
    dx, dy = max(maxx - minx, 1.0) * 0.08, max(maxy - miny, 1.0) * 0.08
    return (max(minx - dx, -180.0), max(miny - dy, -89.0), min(maxx + dx, 180.0),
            min(maxy + dy, 89.0))


def _frame_of(rows: list[tuple[Any, ...]]) -> gpd.GeoDataFrame:
    """Rows whose last item is WKB as a GeoDataFrame in EPSG:4326 (the other items as columns
    `code` and, for regions, `iso3166_2`; territory shapes: `id`, `commitment_kind`)."""
    names = ["code", "iso3166_2"] if rows and len(rows[0]) == 3 else ["code"]
    return gpd.GeoDataFrame({name: [r[i] for r in rows] for i, name in enumerate(names)},
                            geometry=shapely.from_wkb([r[-1] for r in rows]), crs="EPSG:4326")


def scene_from(rows: SceneRows, lang: str) -> Scene:
    """The rows as frames to draw, the extent to frame and the credit line, in `lang`."""
    countries = _frame_of(rows.countries)
    regions = _frame_of(rows.regions) if rows.regions is not None else None
    polygons = gpd.GeoDataFrame(
        {"id": [r[0] for r in rows.polygons], "commitment_kind": [r[1] for r in rows.polygons],
         "credit": [r[3] for r in rows.polygons]},
        geometry=shapely.from_wkb([r[2] for r in rows.polygons]), crs="EPSG:4326")
    focus = rows.territory
    kind, extent = _kind_and_extent(rows)
    stamp = rows.stamp.isoformat() if rows.stamp else "?"
    version_text = TEXT["version"][lang].format(v=rows.version, d=stamp)
    name = rows.region_name or TEXT["view" if kind == "view" else "world"][lang]
    subtitle = None
    if focus is not None:
        name = focus["name"]
        subtitle = i18n.STRINGS["territory_of"][lang].format(
            kind=i18n.KINDS[focus["kind"]][lang], country=rows.region_name)
    return Scene(kind, name, rows.focus, countries, regions, rows.territories, polygons, extent,
                 rows.sources, lang, version_text, subtitle,
                 focus["id"] if focus is not None else None)


def _kind_and_extent(rows: SceneRows) -> tuple[str, tuple[float, float, float, float]]:
    """The kind of map (a region's, or "view" for a bbox) and the lon/lat box it frames."""
    focus = rows.territory
    if rows.bbox is not None:
        return "view", rows.bbox
    kind = rows.region.kind
    if focus is not None:
        return kind, _around(focus["bbox"], focus["lon"], focus["lat"])
    if kind == "world":
        return kind, (-180.0, -58.0, 180.0, 84.0)
    if kind == "subdivision" and rows.subdivision_shape is not None:
        return kind, _frame([shapely.from_wkb(rows.subdivision_shape)])
    return kind, _frame(list(shapely.from_wkb([wkb for code, wkb in rows.countries
                                               if code in rows.focus])))


def _around(bbox: list[float] | None, lon: float, lat: float) -> tuple[float, float, float, float]:
    """The frame of a territory's map: its boundary's box with its surroundings (half its size
    on each side), or its point; at least a degree of latitude tall, so a city shows where it
    lies."""
    minx, miny, maxx, maxy = bbox if bbox else (lon, lat, lon, lat)
    dx, dy = (maxx - minx) * 0.5, (maxy - miny) * 0.5
    minx, miny, maxx, maxy = minx - dx, miny - dy, maxx + dx, maxy + dy
    half = 0.5  # degrees of latitude
    if maxy - miny < 2 * half:
        middle = (miny + maxy) / 2
        miny, maxy = middle - half, middle + half
    half_x = half / max(math.cos(math.radians((miny + maxy) / 2)), 0.2)
    if maxx - minx < 2 * half_x:
        middle = (minx + maxx) / 2
        minx, maxx = middle - half_x, middle + half_x
    return (max(minx, -180.0), max(miny, -89.0), min(maxx, 180.0), min(maxy, 89.0))


def filters_of(request: MapRequest) -> SceneFilters:
    return SceneFilters(theme=request.theme, section=request.section, kind=request.kind,
                        commitment_kind=request.commitment_kind, year=request.year)


async def load(conn: AsyncConnection, request: MapRequest) -> SceneRows:
    """The rows of the image `request` asks for (one read-only transaction)."""
    return await scene_query.load(conn, request.region, request.lang, filters_of(request),
                                  request.territory, request.bbox,
                                  shape_floor=lambda rows: shape_floor(rows, request))


def draw_rows(rows: SceneRows, request: MapRequest) -> bytes:
    """The image of rows read by `load` (no database: may run in a worker thread)."""
    built = scene_from(rows, request.lang)
    with LOCK:
        return draw(built, request)


def render(dsn: str, request: MapRequest) -> tuple[bytes, str]:
    """The image's bytes and the data version they show, on a connection of its own (for the
    command line and scripts; the web server reads with its pool and draws with draw_rows)."""

    async def read() -> SceneRows:
        async with await AsyncConnection.connect(dsn, autocommit=True, options=READ_OPTIONS) as conn:
            return await load(conn, request)

    rows = asyncio.run(read())
    return draw_rows(rows, request), rows.version


# ----------------------------------------------------------------------------------- projection
def projection(kind: str, extent: tuple[float, float, float, float]) -> str:
    """The map's projection: Equal Earth for the world, else centred on `extent`."""
    if kind == "world":
        return EQUAL_EARTH
    minx, miny, maxx, maxy = extent
    lon0, lat0 = (minx + maxx) / 2, (miny + maxy) / 2
    if maxx - minx > 150:
        return f"+proj=eqearth +lon_0={lon0:.2f} +datum=WGS84 +units=m +no_defs"
    return f"+proj=laea +lat_0={lat0:.2f} +lon_0={lon0:.2f} +datum=WGS84 +units=m +no_defs"


def _clip_box(kind: str, extent: tuple[float, float, float, float]) -> Any:
    """What may be projected: the frame widened a lot (LAEA is only sane on one hemisphere)."""
    if kind == "world":
        return box(-180, -89.9, 180, 89.9)
    minx, miny, maxx, maxy = extent
    dx, dy = (maxx - minx) * 0.9 + 5, (maxy - miny) * 0.9 + 5
    return box(max(minx - dx, -180), max(miny - dy, -89.9), min(maxx + dx, 180), min(maxy + dy, 89.9))


# -------------------------------------------------------------------------------------- drawing
def styled() -> Any:
    """matplotlib's settings for every image: our fonts, text kept as text in SVG and embedded
    in PDF, stable SVG ids, and text drawn as written ("$x$" in a title or a member's name is
    not math markup, which could also fail to parse)."""
    return plt.rc_context({"font.family": FONTS, "svg.fonttype": "none", "pdf.fonttype": 42,
                           "svg.hashsalt": "geo-service", "path.simplify": True,
                           "text.parse_math": False})


def draw(scene: Scene, request: MapRequest) -> bytes:
    colours = THEMES[request.dark]
    lang = request.lang
    with styled():
        figure = Figure(figsize=(request.width / request.dpi, request.height / request.dpi),
                        dpi=request.dpi)
        DrawnOnce(figure)  # label placement measures text with it
        layout = Layout.of(request)
        scale, text_size, frac = layout.scale, layout.text_size, layout.frac
        title_pt, sub_pt, credit_pt = layout.title_pt, layout.sub_pt, layout.credit_pt
        y_title, y_sub, map_top = layout.y_title, layout.y_sub, layout.map_top
        crs = projection(scene.region_kind, scene.extent)
        clip = _clip_box(scene.region_kind, scene.extent)

        def project(frame: gpd.GeoDataFrame, in_order: bool = False) -> gpd.GeoDataFrame:
            if frame is None or frame.empty:
                return frame
            clipped = frame.clip(clip)
            if in_order:  # the rows' order (clip answers in its index's), so a member's shape
                clipped = clipped.sort_index()  # is drawn over the same others whichever
                # smaller shapes were left unread
            clipped = clipped[~clipped.geometry.is_empty]
            return clipped.to_crs(crs)

        bounds = _projected_frame(crs, scene.extent)
        size = layout.marker_size
        # the territories' shapes drawn: those larger than their marker at the image's scale
        polygons = _larger_than(project(scene.polygons, in_order=True),
                                layout.shape_length(bounds),
                                keep=scene.territory)
        credit_lines = _wrap(figure, scene.credit(polygons), credit_pt, 0.96 * request.width)
        credit_h = 0.015 + frac(credit_pt) * 1.6 * len(credit_lines)
        ax_box = (0.02, credit_h + 0.01, 0.96, map_top - credit_h - 0.02)
        ax = figure.add_axes(ax_box)
        ax.set_axis_off()
        background = "none" if request.transparent else colours["sea"]
        figure.patch.set_facecolor("none" if request.transparent else colours["sea"])
        ax.set_facecolor(background)

        countries = project(scene.countries)
        if countries is not None and not countries.empty:
            focus = countries["code"].isin(scene.focus) if scene.focus else None
            countries.plot(ax=ax, color=colours["land"], edgecolor=colours["edge"],
                           linewidth=0.4 * scale / 7.5)
            if focus is not None and focus.any():
                countries[focus].plot(ax=ax, color=colours["focus"], edgecolor=colours["edge"],
                                      linewidth=0.6 * scale / 7.5)
        regions = project(scene.regions) if scene.regions is not None else None
        if regions is not None and not regions.empty:
            regions.plot(ax=ax, facecolor="none", edgecolor=colours["inner"],
                         linewidth=0.3 * scale / 7.5)
        if polygons is not None and not polygons.empty:
            for commitment, group in polygons.groupby("commitment_kind", sort=True):
                group.plot(ax=ax, color=i18n.COLOURS.get(commitment, "#777777"), alpha=0.35,
                           edgecolor=i18n.COLOURS.get(commitment, "#777777"),
                           linewidth=0.8 * scale / 7.5)
        _fit(ax, bounds, ax_box[2] * request.width, ax_box[3] * request.height)
        # territories
        points = bool(scene.territories)
        if points:  # projected as coordinates: no geometry objects for thousands of markers
            xs, ys = _to_map(crs).transform(
                np.array([t["lon"] for t in scene.territories], dtype=float),
                np.array([t["lat"] for t in scene.territories], dtype=float))
            styles: dict[tuple[str, str], list[int]] = {}  # one scatter per kind and colour
            for i, t in enumerate(scene.territories):
                styles.setdefault((t["kind"], t["commitment_kind"]), []).append(i)
            for kind, shape in i18n.SHAPES.items():
                for commitment, colour in i18n.COLOURS.items():
                    chosen = styles.get((kind, commitment))
                    if chosen:
                        ax.scatter(xs[chosen], ys[chosen], s=size, marker=MARKERS[shape],
                                   c=colour, edgecolors=colours["marker_edge"],
                                   linewidths=0.5 * scale / 7.5, zorder=5)
        legend = _legend(ax, lang, text_size * 0.75, colours, size,
                         {t["commitment_kind"] for t in scene.territories},
                         {t["kind"] for t in scene.territories}) \
            if request.legend and scene.territories else None
        if legend is not None and points:
            _place_legend(figure, ax, legend, xs, ys, math.sqrt(size) * request.dpi / 72)
        if points and (request.labels or scene.territory):
            named = [i for i, t in enumerate(scene.territories)
                     if request.labels or t["id"] == scene.territory]
            _labels(figure, ax, xs[named], ys[named], [scene.territories[i]["name"] for i in named],
                    text_size, colours, math.sqrt(size) * request.dpi / 72, legend)
        # title, subtitle, legend, credit
        title = request.title if request.title is not None else (
            f"{i18n.STRINGS['title'][lang]} — {scene.region_name}")
        heading = figure.text(0.02, y_title, title, ha="left", va="top", fontsize=title_pt,
                              fontweight="bold", color=colours["text"])
        _shrink_to_width(figure, heading, 0.96 * request.width)
        subtitle = request.subtitle if request.subtitle is not None else scene.subtitle or (
            i18n.STRINGS["counter"][lang].format(n=len(scene.territories))
            if scene.region_kind == "world" and not request.filters and not request.year else
            i18n.STRINGS["shown"][lang].format(n=len(scene.territories)))
        if request.year and request.subtitle is None:
            subtitle += " · " + i18n.STRINGS["by_year"][lang].format(year=request.year)
        if subtitle:
            figure.text(0.02, y_sub, subtitle, ha="left", va="top", fontsize=sub_pt,
                        color=colours["muted"])
        figure.text(0.02, 0.008, "\n".join(credit_lines), ha="left", va="bottom",
                    fontsize=credit_pt, color=colours["muted"], linespacing=1.3)
        return save(figure, request, title, scene.full_credit(polygons))


class DrawnOnce(FigureCanvasAgg):
    """An Agg canvas that draws the figure only when it is saved. geopandas asks for a draw after
    each layer it plots (draw_idle, which Agg does at once): drawing every layer so far again
    each time took about a fifth of a world map's drawing with ten thousand members."""

    def draw_idle(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: the figure is drawn when saved."""


def _renderer(figure: Figure) -> RendererAgg:
    """The Agg renderer text is measured with (draw() gives every figure an Agg canvas)."""
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    return canvas.get_renderer()


def _wrap(figure: Figure, text: str, size: float, width_px: float) -> list[str]:
    """Words into lines no wider than `width_px` once drawn (measured, not guessed from a
    character count: the credit line must never run off the image). Each word is measured once
    (text layout costs about 0.05 ms a character) and 1% is kept spare for kerning."""
    renderer = _renderer(figure)
    font = FontProperties(family=FONTS, size=size)
    measured: dict[str, float] = {}

    def width(piece: str) -> float:
        if piece not in measured:
            measured[piece] = renderer.get_text_width_height_descent(piece, font, ismath=False)[0]
        return measured[piece]

    space = width("n n") - width("nn")
    lines: list[list[str]] = []
    used = 0.0
    for word in text.split():
        extra = width(word) + (space if lines and lines[-1] else 0.0)
        if lines and used + extra <= 0.99 * width_px:
            lines[-1].append(word)
            used += extra
        else:
            lines.append([word])
            used = width(word)
    return [" ".join(line) for line in lines]


def _place_legend(figure: Figure, ax: Any, legend: Any, xs: Any, ys: Any, marker_px: float
                  ) -> None:
    """The legend goes to the corner of the map that hides the fewest members (the lower left
    when it hides none: the framing leaves free space there)."""
    renderer = _renderer(figure)
    spots = ax.transData.transform(np.column_stack([xs, ys]).reshape(-1, 2))
    best: tuple[int, str] | None = None
    for corner in ("lower left", "lower right", "upper left", "upper right"):
        legend.set_loc(corner)
        extent = legend.get_window_extent(renderer).padded(marker_px / 2)
        (x0, x1), (y0, y1) = sorted(extent.intervalx), sorted(extent.intervaly)
        hidden = int(np.count_nonzero((spots[:, 0] >= x0) & (spots[:, 0] <= x1) &
                                      (spots[:, 1] >= y0) & (spots[:, 1] <= y1)))
        if best is None or hidden < best[0]:
            best = (hidden, corner)
        if hidden == 0:
            break
    assert best is not None
    legend.set_loc(best[1])


def _shrink_to_width(figure: Figure, text: Any, width_px: float) -> None:
    """Make a long title smaller until it fits the image's width (down to half its size)."""
    renderer = _renderer(figure)
    size = text.get_fontsize()
    for _ in range(12):
        if text.get_window_extent(renderer).width <= width_px or text.get_fontsize() < size / 2:
            return
        text.set_fontsize(text.get_fontsize() * 0.92)


@dataclass(frozen=True)
class Layout:
    """The sizes of an image that follow from its request alone: text, where the title, the
    subtitle and the map's top go, and the members' markers."""

    height: int
    dpi: int
    width: int
    scale: float  # inches of the image's short side
    text_size: float
    title_pt: float
    sub_pt: float
    credit_pt: float
    y_title: float
    y_sub: float
    map_top: float
    marker_size: float  # of a member's marker, in points²
    marker_px: float  # its side in pixels

    @classmethod
    def of(cls, request: MapRequest) -> Layout:
        scale = min(request.width, request.height) / request.dpi
        text_size = max(6.0, 1.9 * scale)
        title_pt, sub_pt = text_size * 1.8, text_size * 1.05
        y_title = 0.975
        y_sub = y_title - title_pt / 72 * request.dpi / request.height * 1.3
        map_top = y_sub - sub_pt / 72 * request.dpi / request.height * 1.6
        marker_size = (2.4 * scale) ** 2 / 4
        return cls(request.height, request.dpi, request.width, scale, text_size, title_pt, sub_pt,
                   max(5.0, text_size * 0.55), y_title, y_sub, map_top, marker_size,
                   math.sqrt(marker_size) * request.dpi / 72)

    def frac(self, points: float) -> float:
        """A font size as a fraction of the figure's height."""
        return points / 72 * self.dpi / self.height

    def shape_length(self, bounds: tuple[float, ...]) -> float:
        """The length across (map units) a member's shape needs to be drawn: its marker's, at
        the scale that frames `bounds` (the map's height estimated before the credit's lines
        are known)."""
        per_px = _units_per_pixel(bounds, 0.96 * self.width, (self.map_top - 0.06) * self.height)
        return self.marker_px * per_px


def _projected_frame(crs: str, extent: tuple[float, float, float, float]
                     ) -> tuple[float, float, float, float]:
    """The box around `extent` once projected (its edges followed, not just its corners)."""
    edge = shapely.get_coordinates(box(*extent).segmentize(1.0))
    xs, ys = _to_map(crs).transform(edge[:, 0], edge[:, 1])
    return float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys))


@functools.lru_cache(maxsize=32)
def _to_map(crs: str) -> Transformer:
    """lon/lat to the map's projection (made once per projection: it takes milliseconds)."""
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def shape_floor(rows: SceneRows, request: MapRequest) -> float:
    """The smallest lon/lat box (degrees, its longer side) a member's shape on this image can
    have and still be drawn: one in a smaller box is, once projected, shorter than
    `Layout.shape_length` wherever it lies on the map, so `_larger_than` would leave it out. The
    scene reads no shape under it (the member is drawn as its marker, its shape's source is not
    credited), which keeps a world map of ten thousand members to the shapes it shows."""
    kind, extent = _kind_and_extent(rows)
    crs = projection(kind, extent)
    length = Layout.of(request).shape_length(_projected_frame(crs, extent))
    return length / _stretch(crs, tuple(_clip_box(kind, extent).bounds))


@functools.lru_cache(maxsize=32)
def _stretch(crs: str, bounds: tuple[float, ...]) -> float:
    """The most map units a degree can span in `crs` anywhere in the lon/lat `bounds`, so that a
    shape d degrees across (the longer side of its box) is at most d times this across once
    projected: for x and for y, the largest change per degree of longitude plus the largest per
    degree of latitude, sampled on a 121 × 121 grid, with a 25% margin for what lies between."""
    step = 1e-3
    minx, miny, maxx, maxy = bounds
    lon, lat = np.meshgrid(np.linspace(minx + step, maxx - step, 121),
                           np.linspace(miny + step, maxy - step, 121))
    to_map = _to_map(crs)
    x_w, y_w = to_map.transform(lon - step, lat)
    x_e, y_e = to_map.transform(lon + step, lat)
    x_s, y_s = to_map.transform(lon, lat - step)
    x_n, y_n = to_map.transform(lon, lat + step)
    per_lon = np.abs(np.array([x_e - x_w, y_e - y_w])) / (2 * step)
    per_lat = np.abs(np.array([x_n - x_s, y_n - y_s])) / (2 * step)
    most = np.nanmax(np.where(np.isfinite(per_lon), per_lon, np.nan), axis=(1, 2)) + \
        np.nanmax(np.where(np.isfinite(per_lat), per_lat, np.nan), axis=(1, 2))
    return 1.25 * float(most.max())


def _units_per_pixel(bounds: tuple[float, ...], ax_w: float, ax_h: float) -> float:
    """Map units per pixel once `_fit` frames `bounds` in axes of ax_w × ax_h pixels."""
    minx, miny, maxx, maxy = bounds
    return max((maxx - minx) / ax_w, (maxy - miny) / ax_h)


def _larger_than(frame: gpd.GeoDataFrame | None, length: float, keep: str | None = None
                 ) -> gpd.GeoDataFrame | None:
    """The shapes whose bounding box is at least `length` across (in the frame's units), and
    the one of territory `keep` whatever its size."""
    if frame is None or frame.empty:
        return frame
    bounds = frame.geometry.bounds
    across = (bounds["maxx"] - bounds["minx"]).combine(bounds["maxy"] - bounds["miny"], max)
    return frame[(across >= length) | (frame["id"] == keep)]


def _fit(ax: Any, bounds: tuple[float, ...], ax_w: float, ax_h: float) -> None:
    """Frame `bounds`, widened to the axes' own shape so nothing is stretched or clipped."""
    minx, miny, maxx, maxy = bounds
    width, height = maxx - minx, maxy - miny
    if width / height > ax_w / ax_h:  # room to spare below: the map keeps to the top, the legend
        grow = width * ax_h / ax_w - height  # gets the free space at the bottom
        miny = miny - grow
    else:
        grow = height * ax_w / ax_h - width
        minx, maxx = minx - grow / 2, maxx + grow / 2
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set_aspect("equal", adjustable="datalim")  # the box stays; the limits already fit it


def _labels(figure: Figure, ax: Any, xs: Any, ys: Any, names: list[str], size: float,
            colours: dict[str, str], marker_px: float, legend: Any) -> list[Any]:
    """Names beside their markers, skipping any that would overlap a marker, the legend or a
    name already placed (greedy, eight positions each). Only for small sets: beyond 60 names a
    map is no place for them."""
    if len(names) > 60:
        return []
    renderer = _renderer(figure)
    half = marker_px / 2
    placed: list[Any] = [Bbox.from_extents(x - half, y - half, x + half, y + half)
                         for x, y in ax.transData.transform(list(zip(xs, ys, strict=True)))]
    if legend is not None:
        placed.append(legend.get_window_extent(renderer))
    labels: list[Any] = []
    offsets = [(8, 4), (8, -12), (-8, 4), (-8, -12), (0, 10), (0, -16), (12, -4), (-12, -4)]
    order = sorted(range(len(names)), key=lambda i: (-len(names[i]), names[i]))
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for i in order:
        if not (xlim[0] <= xs[i] <= xlim[1] and ylim[0] <= ys[i] <= ylim[1]):
            continue
        for dx, dy in offsets:
            label = ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy),
                                textcoords="offset points", fontsize=size * 0.85,
                                color=colours["text"], ha="left" if dx >= 0 else "right",
                                zorder=6)
            extent = label.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(extent.overlaps(other) for other in placed) and \
                    ax.get_window_extent(renderer).contains(extent.x0, extent.y0):
                placed.append(extent)
                labels.append(extent)
                break
            label.remove()
    return labels


def _legend(ax: Any, lang: str, size: float, colours: dict[str, str], marker_size: float,
            commitments: set[str], kinds: set[str]) -> Any:
    """The colours and shapes of the members on this map (and only those), in a fixed order."""
    side = math.sqrt(marker_size)
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=side * 0.8,
                      markerfacecolor=colour, markeredgecolor=colours["marker_edge"],
                      label=i18n.COMMITMENTS[key][lang]) for key, colour in i18n.COLOURS.items()
               if key in commitments]
    handles += [Line2D([], [], linestyle="none", marker=MARKERS[shape], markersize=side * 0.8,
                       markerfacecolor="none", markeredgecolor=colours["text"],
                       label=i18n.KINDS[key][lang]) for key, shape in i18n.SHAPES.items()
                if key in kinds]
    legend = ax.legend(handles=handles, loc="lower left", fontsize=size * 0.8, frameon=True,
                       title=i18n.STRINGS["legend"][lang], title_fontsize=size * 0.9,
                       labelcolor=colours["text"], facecolor=colours["land"],
                       edgecolor=colours["edge"], framealpha=0.92)
    legend.get_title().set_color(colours["text"])
    legend.set_zorder(10)
    return legend


def save(figure: Figure, request: MapRequest, title: str, attributions: str) -> bytes:
    """The file, with its title and the full attributions of what it draws in its metadata
    (PDF Title and Subject, SVG Dublin Core title and rights, PNG Title and Copyright), and no
    date or software version (the same request and data give the same bytes)."""
    out = io.BytesIO()
    keywords = "human rights cities; human rights territories; UCLG; map"
    metadata = {"png": {"Software": None, "Title": title, "Copyright": attributions},
                "svg": {"Date": None, "Creator": None, "Title": title, "Rights": attributions,
                        "Keywords": keywords},
                "pdf": {"CreationDate": None, "ModDate": None, "Producer": None,
                        "Creator": None, "Title": title, "Subject": attributions,
                        "Keywords": keywords}}[request.format]
    figure.savefig(out, format=request.format, dpi=request.dpi, metadata=metadata,
                   transparent=request.transparent,
                   facecolor="none" if request.transparent else figure.get_facecolor())
    return out.getvalue()
