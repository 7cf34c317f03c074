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

import io
import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import matplotlib
import psycopg
import shapely
from shapely.geometry import box

from geo_service import i18n
from geo_service.features import DATA_VERSION_SQL, ClientError
from geo_service.load.prepare import ISO3166_2

matplotlib.use("agg")
from matplotlib import pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
PRESETS: dict[str, tuple[int, int, int]] = {  # width px, height px, dpi
    "slide-16x9": (1920, 1080, 144),
    "slide-4k": (3840, 2160, 288),
    "slide-4x3": (1600, 1200, 144),
    "a4-landscape": (3508, 2480, 300),  # 297 × 210 mm at 300 dpi
    "square": (1080, 1080, 144),
}
DEFAULT_PRESET = "slide-16x9"
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
    "credit": {"en": "Data", "fr": "Données", "es": "Datos"},
    "version": {"en": "data version {v} of {d}", "fr": "version des données {v} du {d}",
                "es": "versión de los datos {v} del {d}"},
}
_LOCK = threading.Lock()  # matplotlib's pyplot state and font cache are not thread-safe


@dataclass(frozen=True)
class MapRequest:
    """Validated parameters of one image: the same for the CLI and the HTTP endpoint."""

    format: str = "png"
    region: str = "world"
    theme: str | None = None
    section: str | None = None
    kind: str | None = None
    commitment_kind: str | None = None
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


def _flag(name: str, value: str | bool | None) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ClientError(f"{name}={value!r}: use on/off (true/false)")


def _int(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ClientError(f"{name}={value!r} is not an integer") from None
    if not low <= number <= high:
        raise ClientError(f"{name}={number} is outside {low}–{high}")
    return number


def parse(params: dict[str, Any], fmt: str) -> MapRequest:
    """Check every parameter; anything unknown or out of range is a ClientError (a 400)."""
    allowed = {"region", "theme", "section", "kind", "commitment_kind", "lang", "title", "subtitle",
               "legend", "labels", "preset", "width", "height", "dpi", "transparent", "dark"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ClientError(f"unknown parameter(s): {', '.join(unknown)}")
    if fmt not in FORMATS:
        raise ClientError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    lang = params.get("lang") or "en"
    if lang not in i18n.LANGS:
        raise ClientError(f"lang={lang!r}: one of {', '.join(i18n.LANGS)}")
    preset = params.get("preset")
    sizes = {k: params.get(k) for k in ("width", "height", "dpi") if params.get(k) is not None}
    if preset and sizes:
        raise ClientError("give a preset or width/height/dpi, not both")
    if preset and preset not in PRESETS:
        raise ClientError(f"preset={preset!r}: one of {', '.join(PRESETS)}")
    width, height, dpi = PRESETS[preset or DEFAULT_PRESET]
    if sizes:
        width = _int("width", sizes.get("width", width), MIN_PIXELS, MAX_PIXELS)
        height = _int("height", sizes.get("height", height), MIN_PIXELS, MAX_PIXELS)
        dpi = _int("dpi", sizes.get("dpi", 144), MIN_DPI, MAX_DPI)
    filters = {}
    for name in ("theme", "section", "kind", "commitment_kind"):
        value = params.get(name)
        if value:
            filters[name] = value
    for name in ("kind", "commitment_kind"):
        table = i18n.KINDS if name == "kind" else i18n.COMMITMENTS
        if name in filters and filters[name] not in table:
            raise ClientError(f"{name}={filters[name]!r}: one of {', '.join(table)}")
    title, subtitle = params.get("title"), params.get("subtitle")
    for name, text in (("title", title), ("subtitle", subtitle)):
        if text is not None and len(text) > 200:
            raise ClientError(f"{name} is longer than 200 characters")
    region = (params.get("region") or "world").strip()
    return MapRequest(
        format=fmt, region=region, lang=lang, title=title, subtitle=subtitle,
        legend=_flag("legend", params.get("legend", True)),
        labels=_flag("labels", params.get("labels", False)), preset=preset or (
            None if sizes else DEFAULT_PRESET), width=width, height=height, dpi=dpi,
        transparent=_flag("transparent", params.get("transparent")),
        dark=_flag("dark", params.get("dark")), filters=filters, **filters)


# ------------------------------------------------------------------------------------ the data
@dataclass
class Scene:
    """Everything one image shows, read in one short transaction."""

    region_kind: str  # world, section, country, subdivision
    region_name: str
    focus: set[str]  # ISO 3166-1 codes drawn as the region
    countries: gpd.GeoDataFrame
    regions: gpd.GeoDataFrame | None
    territories: list[dict[str, Any]]
    polygons: gpd.GeoDataFrame
    extent: tuple[float, float, float, float]  # lon/lat of what to frame
    credit: str


def _region(conn: psycopg.Connection, region: str, lang: str) -> tuple[str, str, set[str], Any]:
    """(kind, name in lang, focus countries, subdivision code or None)."""
    lowered, upper = region.lower(), region.upper()
    name_col = {"en": "name_en", "fr": "name_fr", "es": "name_es"}[lang]
    if lowered == "world":
        return "world", TEXT["world"][lang], set(), None
    row = conn.execute(f"SELECT {name_col} FROM uclg_sections WHERE slug = %s", (lowered,)).fetchone()
    if row:
        members = {r[0] for r in conn.execute(
            "SELECT iso3166_1 FROM uclg_section_countries WHERE section_slug = %s", (lowered,))}
        return "section", row[0], members, None
    if len(upper) == 2 and upper.isalpha():
        row = conn.execute(f"SELECT coalesce({name_col}, name) FROM boundaries WHERE level = "
                           "'country' AND code = %s", (upper,)).fetchone()
        if row:
            return "country", row[0], {upper}, None
    if ISO3166_2.match(upper):
        row = conn.execute(f"SELECT coalesce({name_col}, name), iso3166_1 FROM boundaries WHERE "
                           "level = 'region' AND iso3166_2 = %s", (upper,)).fetchone()
        if row:
            return "subdivision", row[0], {row[1]}, upper
    raise ClientError(f"unknown region {region!r}: world, a UCLG section slug (europe), an ISO "
                      "3166-1 code (FR) or an ISO 3166-2 code (KR-29)")


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


def _shapes(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> gpd.GeoDataFrame:
    """Rows whose last column is a geometry, as a GeoDataFrame in EPSG:4326."""
    cursor = conn.execute(query, params)
    names = [c.name for c in cursor.description or []]
    rows = cursor.fetchall()
    data = {name: [r[i] for r in rows] for i, name in enumerate(names[:-1])}
    return gpd.GeoDataFrame(data, geometry=shapely.from_wkb([bytes(r[-1]) for r in rows]),
                            crs="EPSG:4326")


def load_scene(dsn: str, request: MapRequest) -> tuple[Scene, str]:
    """The scene and the data version it was read at."""
    lang = request.lang
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        version = conn.execute(DATA_VERSION_SQL).fetchone()[0]
        kind, region_name, focus, subdivision = _region(conn, request.region, lang)
        themes = {r[0] for r in conn.execute("SELECT slug FROM rights_themes")}
        sections = {r[0] for r in conn.execute("SELECT slug FROM uclg_sections")}
        if request.theme and request.theme not in themes:
            raise ClientError(f"theme={request.theme!r} is not a rights theme slug")
        if request.section and request.section not in sections:
            raise ClientError(f"section={request.section!r} is not a UCLG section slug")
        tier = 1 if kind in ("world", "section") else 2 if kind == "country" else 3
        countries = _shapes(
            conn, "SELECT b.code, ST_AsBinary(bt.geom) FROM boundaries b JOIN boundary_tiers bt ON "
            "bt.boundary_id = b.id AND bt.tier = %(tier)s WHERE b.level = 'country' ORDER BY b.code",
            {"tier": tier})
        regions = None
        if kind in ("country", "subdivision"):
            regions = _shapes(
                conn, "SELECT b.code, b.iso3166_2, ST_AsBinary(bt.geom) FROM boundaries b JOIN "
                "boundary_tiers bt ON bt.boundary_id = b.id AND bt.tier = 3 WHERE b.level = "
                "'region' AND b.iso3166_1 = ANY(%(focus)s) ORDER BY b.code", {"focus": sorted(focus)})
        conditions = ["t.commitment_kind <> 'engagement-only'"]
        params: dict[str, Any] = {"lang": lang}
        if request.kind:
            conditions.append("t.kind = %(kind)s")
            params["kind"] = request.kind
        if request.commitment_kind:
            conditions.append("t.commitment_kind = %(commitment_kind)s")
            params["commitment_kind"] = request.commitment_kind
        if request.section:
            conditions.append("%(section)s = ANY(t.sections)")
            params["section"] = request.section
        if request.theme:
            conditions.append("EXISTS (SELECT 1 FROM initiatives i JOIN initiative_themes it ON "
                              "it.initiative_id = i.id WHERE i.territory_id = t.id AND "
                              "it.theme_slug = %(theme)s)")
            params["theme"] = request.theme
        if kind == "section":
            conditions.append("%(region)s = ANY(t.sections)")
            params["region"] = request.region.lower()
        elif kind == "country":
            conditions.append("t.iso3166_1 = %(country)s")
            params["country"] = next(iter(focus))
        elif kind == "subdivision":
            conditions.append("ST_Intersects(t.location, (SELECT geom FROM boundaries WHERE "
                              "level = 'region' AND iso3166_2 = %(sub)s))")
            params["sub"] = subdivision
        rows = conn.execute(
            "SELECT t.id, coalesce(CASE %(lang)s WHEN 'fr' THEN b.name_fr WHEN 'es' THEN "
            "b.name_es END, t.name), t.kind, t.commitment_kind, ST_X(t.location), "
            "ST_Y(t.location), b.id FROM territories t LEFT JOIN boundaries b ON "
            "b.level = t.boundary_level AND b.code = t.boundary_code WHERE "
            + " AND ".join(conditions) + " ORDER BY t.name, t.id", params).fetchall()
        territories = [{"id": r[0], "name": r[1], "kind": r[2], "commitment_kind": r[3],
                        "lon": r[4], "lat": r[5]} for r in rows]
        polygons = _shapes(
            conn, "SELECT t.id, t.commitment_kind, ST_AsBinary(bt.geom) FROM territories t JOIN "
            "boundaries b ON b.level = t.boundary_level AND b.code = t.boundary_code JOIN "
            "boundary_tiers bt ON bt.boundary_id = b.id AND bt.tier = %(tier)s WHERE "
            "t.id = ANY(%(ids)s) ORDER BY t.id", {"tier": tier, "ids": [t["id"] for t in territories]})
        if kind == "world":
            extent = (-180.0, -58.0, 180.0, 84.0)
        elif kind == "subdivision":
            geom = conn.execute("SELECT ST_AsBinary(geom) FROM boundaries WHERE level = 'region' "
                                "AND iso3166_2 = %s", (subdivision,)).fetchone()[0]
            extent = _frame([shapely.from_wkb(bytes(geom))])
        else:
            extent = _frame(list(countries[countries["code"].isin(focus)].geometry))
        sources = conn.execute(  # the sources of the boundaries on the map, and their licences:
            # the country and region layers behind, and the shapes of the territories shown
            "SELECT attribution, licence FROM data_sources WHERE id IN (SELECT DISTINCT "
            "data_source_id FROM boundaries WHERE level IN ('country', 'region') "
            "OR id = ANY(%s)) ORDER BY id", ([r[6] for r in rows if r[6] is not None],)).fetchall()
        stamp = conn.execute(
            "SELECT greatest((SELECT max(loaded_at) FROM data_sources), "
            "(SELECT max(imported_at) FROM imports))::date").fetchone()[0]
    seen: list[str] = []
    for attribution, licence in sources:
        entry = f"{attribution.rstrip('.')} ({licence})" if licence else attribution.rstrip(".")
        if attribution and entry not in seen:
            seen.append(entry)
    attributions = " · ".join(seen)
    members = {"en": "members: documented public commitments, each with its source",
               "fr": "membres : engagements publics documentés, chacun avec sa source",
               "es": "miembros: compromisos públicos documentados, cada uno con su fuente"}[lang]
    credit = (f"{TEXT['credit'][lang]}: {attributions} · {members} · "
              + TEXT["version"][lang].format(v=version, d=stamp.isoformat() if stamp else "?"))
    return Scene(kind, region_name, focus, countries, regions, territories, polygons, extent,
                 credit), version


# ----------------------------------------------------------------------------------- projection
def projection(scene: Scene) -> str:
    if scene.region_kind == "world":
        return EQUAL_EARTH
    minx, miny, maxx, maxy = scene.extent
    lon0, lat0 = (minx + maxx) / 2, (miny + maxy) / 2
    if maxx - minx > 150:
        return f"+proj=eqearth +lon_0={lon0:.2f} +datum=WGS84 +units=m +no_defs"
    return f"+proj=laea +lat_0={lat0:.2f} +lon_0={lon0:.2f} +datum=WGS84 +units=m +no_defs"


def _clip_box(scene: Scene) -> Any:
    """What may be projected: the frame widened a lot (LAEA is only sane on one hemisphere)."""
    if scene.region_kind == "world":
        return box(-180, -89.9, 180, 89.9)
    minx, miny, maxx, maxy = scene.extent
    dx, dy = (maxx - minx) * 0.9 + 5, (maxy - miny) * 0.9 + 5
    return box(max(minx - dx, -180), max(miny - dy, -89.9), min(maxx + dx, 180), min(maxy + dy, 89.9))


# -------------------------------------------------------------------------------------- drawing
def render(dsn: str, request: MapRequest) -> tuple[bytes, str]:
    """The image's bytes and the data version they show."""
    scene, version = load_scene(dsn, request)
    with _LOCK:
        return draw(scene, request), version


def draw(scene: Scene, request: MapRequest) -> bytes:
    colours = THEMES[request.dark]
    lang = request.lang
    rc = {"font.family": FONTS, "svg.fonttype": "none", "pdf.fonttype": 42,
          "svg.hashsalt": "geo-service", "path.simplify": True}
    with plt.rc_context(rc):
        figure = Figure(figsize=(request.width / request.dpi, request.height / request.dpi),
                        dpi=request.dpi)
        FigureCanvasAgg(figure)  # label placement measures text with it
        scale = min(request.width, request.height) / request.dpi  # inches of the short side
        text_size = max(6.0, 1.9 * scale)
        title_pt, sub_pt, credit_pt = text_size * 1.8, text_size * 1.05, max(5.0, text_size * 0.55)

        def frac(points: float) -> float:  # a font size as a fraction of the figure's height
            return points / 72 * request.dpi / request.height

        y_title = 0.975
        y_sub = y_title - frac(title_pt) * 1.3
        map_top = y_sub - frac(sub_pt) * 1.6
        credit_lines = _wrap(figure, scene.credit, credit_pt, 0.96 * request.width)
        credit_h = 0.015 + frac(credit_pt) * 1.6 * len(credit_lines)
        ax_box = (0.02, credit_h + 0.01, 0.96, map_top - credit_h - 0.02)
        ax = figure.add_axes(ax_box)
        ax.set_axis_off()
        crs = projection(scene)
        clip = _clip_box(scene)
        background = "none" if request.transparent else colours["sea"]
        figure.patch.set_facecolor("none" if request.transparent else colours["sea"])
        ax.set_facecolor(background)

        def project(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            if frame is None or frame.empty:
                return frame
            clipped = frame.clip(clip)
            clipped = clipped[~clipped.geometry.is_empty]
            return clipped.to_crs(crs)

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
        polygons = project(scene.polygons)
        if polygons is not None and not polygons.empty:
            for commitment, group in polygons.groupby("commitment_kind", sort=True):
                group.plot(ax=ax, color=i18n.COLOURS.get(commitment, "#777777"), alpha=0.35,
                           edgecolor=i18n.COLOURS.get(commitment, "#777777"),
                           linewidth=0.8 * scale / 7.5)
        # frame
        frame = gpd.GeoSeries([box(*scene.extent).segmentize(1.0)], crs="EPSG:4326").to_crs(crs)
        minx, miny, maxx, maxy = frame.total_bounds
        _fit(ax, (minx, miny, maxx, maxy), ax_box[2] * request.width, ax_box[3] * request.height)
        # territories
        points = gpd.GeoDataFrame(
            scene.territories, geometry=gpd.points_from_xy(
                [t["lon"] for t in scene.territories], [t["lat"] for t in scene.territories]),
            crs="EPSG:4326") if scene.territories else None
        size = (2.4 * scale) ** 2 / 4
        if points is not None:
            projected = points.to_crs(crs)
            xs, ys = projected.geometry.x.to_numpy(), projected.geometry.y.to_numpy()
            for kind, shape in i18n.SHAPES.items():
                for commitment, colour in i18n.COLOURS.items():
                    chosen = [i for i, t in enumerate(scene.territories)
                              if t["kind"] == kind and t["commitment_kind"] == commitment]
                    if chosen:
                        ax.scatter(xs[chosen], ys[chosen], s=size, marker=MARKERS[shape],
                                   c=colour, edgecolors=colours["marker_edge"],
                                   linewidths=0.5 * scale / 7.5, zorder=5)
        legend = _legend(ax, lang, text_size * 0.75, colours, size,
                         {t["commitment_kind"] for t in scene.territories},
                         {t["kind"] for t in scene.territories}) \
            if request.legend and scene.territories else None
        if legend is not None and points is not None:
            _place_legend(figure, ax, legend, xs, ys, math.sqrt(size) * request.dpi / 72)
        if points is not None and request.labels:
            _labels(figure, ax, xs, ys, [t["name"] for t in scene.territories], text_size,
                    colours, math.sqrt(size) * request.dpi / 72, legend)
        # title, subtitle, legend, credit
        title = request.title if request.title is not None else (
            f"{i18n.STRINGS['title'][lang]} — {scene.region_name}")
        heading = figure.text(0.02, y_title, title, ha="left", va="top", fontsize=title_pt,
                              fontweight="bold", color=colours["text"])
        _shrink_to_width(figure, heading, 0.96 * request.width)
        subtitle = request.subtitle if request.subtitle is not None else (
            i18n.STRINGS["counter"][lang].format(n=len(scene.territories))
            if scene.region_kind == "world" and not request.filters else
            i18n.STRINGS["shown"][lang].format(n=len(scene.territories)))
        if subtitle:
            figure.text(0.02, y_sub, subtitle, ha="left", va="top", fontsize=sub_pt,
                        color=colours["muted"])
        figure.text(0.02, 0.008, "\n".join(credit_lines), ha="left", va="bottom",
                    fontsize=credit_pt, color=colours["muted"], linespacing=1.3)
        return _save(figure, request)


def _wrap(figure: Figure, text: str, size: float, width_px: float) -> list[str]:
    """Words into lines no wider than `width_px` once drawn (measured, not guessed from a
    character count: the credit line must never run off the image). Each word is measured once
    (text layout costs about 0.05 ms a character) and 1% is kept spare for kerning."""
    renderer = figure.canvas.get_renderer()
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
    renderer = figure.canvas.get_renderer()
    spots = ax.transData.transform(list(zip(xs, ys, strict=True)))
    best: tuple[int, str] | None = None
    for corner in ("lower left", "lower right", "upper left", "upper right"):
        legend.set_loc(corner)
        extent = legend.get_window_extent(renderer).padded(marker_px / 2)
        hidden = sum(bool(extent.contains(x, y)) for x, y in spots)
        if best is None or hidden < best[0]:
            best = (hidden, corner)
        if hidden == 0:
            break
    assert best is not None
    legend.set_loc(best[1])


def _shrink_to_width(figure: Figure, text: Any, width_px: float) -> None:
    """Make a long title smaller until it fits the image's width (down to half its size)."""
    renderer = figure.canvas.get_renderer()
    size = text.get_fontsize()
    for _ in range(12):
        if text.get_window_extent(renderer).width <= width_px or text.get_fontsize() < size / 2:
            return
        text.set_fontsize(text.get_fontsize() * 0.92)


def _fit(ax: Any, bounds: tuple[float, float, float, float], ax_w: float, ax_h: float) -> None:
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
    renderer = figure.canvas.get_renderer()
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


def _save(figure: Figure, request: MapRequest) -> bytes:
    out = io.BytesIO()
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "ModDate": None, "Producer": None,
                        "Creator": None}}[request.format]
    figure.savefig(out, format=request.format, dpi=request.dpi, metadata=metadata,
                   transparent=request.transparent,
                   facecolor="none" if request.transparent else figure.get_facecolor())
    return out.getvalue()
