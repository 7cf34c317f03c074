"""The campaign's progress as an image (PNG, SVG, PDF): members by year, cumulative, against the
10, 100 and 1000 milestones, in the map images' sizes, colours and languages. Drawn from
`query.stats` (the numbers of GET /api/stats); the same data version gives the same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator
from psycopg import AsyncConnection

from geo_service.errors import ClientError
from geo_service.query import stats
from geo_service.query.service import data_version
from geo_service.render import i18n, mapimage
from geo_service.render.credits import members

TEXT = {
    "title": {"en": "Human rights cities and territories: members by year",
              "fr": "Villes et territoires des droits humains : membres par année",
              "es": "Ciudades y territorios de derechos humanos: miembros por año"},
    "axis": {"en": "Members (cumulative, log scale)", "fr": "Membres (cumul, échelle log)",
             "es": "Miembros (acumulado, escala log)"},
    "reached": {"en": "{n} reached in {year}", "fr": "{n} atteint en {year}",
                "es": "{n} alcanzado en {year}"},
    "goal": {"en": "{n}: goal by 2030", "fr": "{n} : objectif 2030", "es": "{n}: meta para 2030"},
    "undated": {"en": "{n} without a known year, not on the curve",
                "fr": "{n} sans année connue, hors de la courbe",
                "es": "{n} sin año conocido, fuera de la curva"},
}


@dataclass
class ProgressRows:
    version: str
    stamp: str  # the date the data last changed
    series: list[tuple[int, int]]  # year, members by the end of it
    total: int  # every member, dated or not
    undated: int  # members whose year is not known: not on the curve


async def load(conn: AsyncConnection) -> ProgressRows:
    """The members by year, at one data version."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        found = await stats.stats(conn)
        version = await data_version(conn)
        stamp = await (await conn.execute("SELECT changed_at::date FROM data_version")).fetchone()
    return ProgressRows(version, stamp[0].isoformat() if stamp and stamp[0] else "?",
                        [(s["year"], s["cumulative"]) for s in found["by_year"]],
                        int(found["territories"]), int(found["undated"]))


def draw(rows: ProgressRows, request: mapimage.MapRequest) -> bytes:
    lang = request.lang
    colours = mapimage.THEMES[request.dark]
    figure = Figure(figsize=(request.width / request.dpi, request.height / request.dpi),
                    dpi=request.dpi)
    FigureCanvasAgg(figure)
    scale = min(request.width, request.height) / request.dpi
    size = max(6.0, 1.9 * scale)
    figure.patch.set_facecolor("none" if request.transparent else colours["sea"])
    ax = figure.add_axes((0.08, 0.14, 0.86, 0.68))
    ax.set_facecolor("none" if request.transparent else colours["land"])
    years = [y for y, _ in rows.series]
    first = min(years) if years else 2000
    xs = [first - 1, *years, i18n.LAST_YEAR]
    ys = [0, *[n for _, n in rows.series], rows.series[-1][1] if rows.series else 0]
    ax.step(xs, [max(y, 0.8) for y in ys], where="post", color=i18n.COLOURS["campaign-signatory"],
            linewidth=0.35 * scale)
    ax.set_yscale("log")
    ax.set_ylim(0.8, 1500)
    ax.set_xlim(first - 1, i18n.LAST_YEAR + 0.5)
    ax.yaxis.set_major_locator(FixedLocator([1, 10, 100, 1000]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels(["1", "10", "100", "1000"])
    ax.tick_params(colors=colours["text"], labelsize=size * 0.8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(colours["edge"])
    ax.set_ylabel(TEXT["axis"][lang], color=colours["text"], fontsize=size * 0.8)
    for target in i18n.MILESTONES:
        year = next((y for y, n in rows.series if n >= target), None)
        ax.axhline(target, color=colours["muted"], linewidth=0.15 * scale, linestyle="--")
        label = (TEXT["reached"][lang].format(n=target, year=year) if year is not None
                 else TEXT["goal"][lang].format(n=target))
        ax.text(first, target * 1.12, label, color=colours["text"], fontsize=size * 0.8,
                va="bottom", ha="left")
        if year is not None:
            ax.plot([year], [target], marker="o", markersize=size * 0.5,
                    color=i18n.COLOURS["declared"], markeredgecolor=colours["marker_edge"])
    title = request.title or TEXT["title"][lang]
    figure.text(0.02, 0.975, title, ha="left", va="top", fontsize=size * 1.5, fontweight="bold",
                color=colours["text"])
    subtitle = request.subtitle or i18n.STRINGS["counter"][lang].format(n=rows.total) + (
        " · " + TEXT["undated"][lang].format(n=rows.undated) if rows.undated else "")
    figure.text(0.02, 0.975 - size * 1.5 * 1.4 / 72 * request.dpi / request.height, subtitle,
                ha="left", va="top", fontsize=size, color=colours["muted"])
    credit = f"{members(lang)} · " + mapimage.TEXT["version"][lang].format(
        v=rows.version, d=rows.stamp)
    figure.text(0.02, 0.01, credit, ha="left", va="bottom", fontsize=max(5.0, size * 0.55),
                color=colours["muted"])
    return mapimage.save(figure, request, title, members(lang))


def draw_rows(rows: ProgressRows, request: mapimage.MapRequest) -> bytes:
    """The chart of rows read by `load` (no database: runs in a drawing worker)."""
    with mapimage.LOCK, mapimage.styled():
        return draw(rows, request)


ALLOWED = {"lang", "preset", "width", "height", "dpi", "dark", "transparent", "title",
           "subtitle"}


def check(params: dict[str, Any], fmt: str) -> mapimage.MapRequest:
    """A progress chart takes the map images' size, language and colour parameters only."""
    unknown = sorted(set(params) - ALLOWED)
    if unknown:
        raise ClientError(f"unknown parameter(s) for a progress chart: {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(ALLOWED))}")
    return mapimage.parse(params, fmt)
