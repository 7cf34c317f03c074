"""The HTML pages around the map: a page per territory, the list of territories and the sitemap.

Pages are Jinja2 templates (geo_service/templates) with autoescaping on: every name and text
from the data is escaped; JSON for scripts goes through webmap.json_for_script. They load only
the app's own files and pinned packages, and work without JavaScript (the small map aside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape as xml_escape

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from geo_service.domain import Credit
from geo_service.query import tiles
from geo_service.render import credits, i18n
from geo_service.render.webmap import ASSET_VERSIONS, json_for_script

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
LOCALES = {"en": "en_GB", "fr": "fr_FR", "es": "es_ES"}
LANG_NAMES = {"en": "English", "fr": "Français", "es": "Español"}
SOCIAL_IMAGE = (1200, 630)  # the map image preset `social`: Open Graph's and Twitter's size
IMAGE_FORMATS = ("png", "svg", "pdf")
CITY_KINDS = ("municipality", "metropolitan-area")
# the list's columns: key, label string, how a row sorts on it
COLUMNS = ("name", "country", "kind", "commitment", "year", "section")
LIST_FILTERS = ("country", "kind", "commitment_kind", "section", "theme")


@dataclass(frozen=True)
class Site:
    """What every page needs from the request: its language, base URL and asset version."""

    lang: str
    base: str
    asset_version: str

    def url(self, path: str, **query: str | None) -> str:
        given = {k: v for k, v in query.items() if v}
        if self.lang != "en" and "lang" not in query:
            given = {"lang": self.lang, **given}
        return f"{self.base}{path}" + (f"?{urlencode(given)}" if given else "")


def territory_path(territory_id: str) -> str:
    return f"/territories/{quote(territory_id, safe='')}"


def _languages(site: Site, path: str, query: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(code, _with_lang(site.base + path, query, code), LANG_NAMES[code])
            for code in i18n.LANGS]


def _with_lang(url: str, query: dict[str, str], lang: str) -> str:
    given = {k: v for k, v in query.items() if v and k != "lang"}
    if lang != "en":
        given = {"lang": lang, **given}
    return url + (f"?{urlencode(given)}" if given else "")


def common(site: Site, path: str, query: dict[str, str]) -> dict[str, Any]:
    text = i18n.strings(site.lang)
    languages = _languages(site, path, query)
    return {"lang": site.lang, "s": text, "asset_version": site.asset_version,
            "languages": languages, "canonical": _with_lang(site.base + path, query, site.lang),
            "alternates": [(code, href) for code, href, _ in languages]
            + [("x-default", _with_lang(site.base + path, query, "en"))]}


def embed_view(bbox: list[float] | None, lat: float, lon: float,
               size: tuple[int, int] = (800, 600)) -> tuple[int, float, float]:
    """The zoom and centre of a Web Mercator map of `size` pixels that shows the box (or the
    point, at zoom 9), as the embed's #zoom/lat/lon."""
    if not bbox:
        return 9, round(lat, 4), round(lon, 4)
    minx, miny, maxx, maxy = bbox

    def y(latitude: float) -> float:  # Web Mercator, as a fraction of the world's height
        sin = math.sin(math.radians(max(min(latitude, 85.0), -85.0)))
        return 0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)

    width = max((maxx - minx) / 360, 1e-9)
    height = max(y(miny) - y(maxy), 1e-9)
    fit = min(size[0] * 0.8 / (256 * width), size[1] * 0.8 / (256 * height))
    zoom = max(1, min(12, math.floor(math.log2(fit))))
    centre_lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y(miny) + y(maxy)) / 2))))
    return zoom, round(centre_lat, 4), round((minx + maxx) / 2, 4)


def _area(km2: float | None, lang: str) -> str:
    if km2 is None:
        return ""
    digits = 1 if km2 < 10 else 0
    text = f"{km2:,.{digits}f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    elif lang == "es":
        text = text.replace(",", "\u00a0").replace(".", ",")
    return f"{text}\u00a0km²"


def image_url(site: Site, territory_id: str, fmt: str, preset: str = "social") -> str:
    return (f"{site.base}/export/map.{fmt}?"
            + urlencode({"territory": territory_id, "preset": preset, "lang": site.lang}))


def territory_page(site: Site, t: dict[str, Any], detail: dict[str, Any],
                   data: dict[str, Any], version: str, embed_code: str, embed_src: str) -> str:
    """One territory's page: `t` its entry in the map's page data, `detail` what
    query.pages.territory_detail adds."""
    lang = site.lang
    text = i18n.strings(lang)
    path = territory_path(t["id"])
    page = common(site, path, {})
    kind = i18n.KINDS[t["kind"]][lang]
    commitment = i18n.COMMITMENTS.get(t["commitment_kind"], {}).get(lang, t["commitment_kind"])
    sections = ", ".join(data["sections"].get(slug, slug) for slug in t["sections"])
    themes = ", ".join(data["themes"].get(slug, slug) for slug in t["themes"])
    boundary = detail["boundary"]
    shape = t.get("shape")
    if boundary and shape:
        boundary_text = text["boundary_from"].format(
            name=boundary["name"], level=i18n.LEVELS.get(shape["level"], {}).get(lang, ""),
            area=_area(shape["area_km2"], lang), source=shape["source"])
        attribution = " ".join(part for part in (
            boundary["attribution"],
            f"({boundary['licence']})" if boundary["licence"] else "") if part)
    else:
        boundary_text = text["no_boundary"].format(placed=text.get(t["placed"], t["placed"]))
        attribution = ""
    country = t["country_name"]
    kind_line = text["territory_of"].format(kind=kind, country=country)
    description = f"{kind_line}. {commitment}" + (f" ({t['year']})." if t["year"] else ".")
    canonical = page["canonical"]
    image = image_url(site, t["id"], "png")
    map_label = text["map_of"].format(name=t["name"])
    website = t["website"] if _is_web(t.get("website")) else None
    sources = [url for url in t["sources"] if _is_web(url)]
    json_ld: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "City" if t["kind"] in CITY_KINDS else "AdministrativeArea",
        "@id": f"{site.base}{path}", "name": t["name"], "url": canonical,
        "description": description, "inLanguage": lang,
        "geo": {"@type": "GeoCoordinates", "latitude": t["lat"], "longitude": t["lon"]},
        "containedInPlace": {"@type": "Country", "name": country, "identifier": t["country"]},
        "image": image, "hasMap": f"{site.base}/map?lang={lang}#{_hash(embed_src)}",
        "subjectOf": [{"@type": "CreativeWork", "url": url} for url in sources],
    }
    if t.get("local_name") and t["local_name"] != t["name"]:
        json_ld["alternateName"] = t["local_name"]
    if website:
        json_ld["sameAs"] = [website]
    mini = {"territory": {"id": t["id"], "lat": t["lat"], "lon": t["lon"],
                          "commitment_kind": t["commitment_kind"],
                          "bbox": boundary["bbox"] if boundary else None},
            "tiles": f"{site.base}/tiles/map/{{z}}/{{x}}/{{y}}.mvt?v={version}&lang={lang}",
            "attribution": credits.corner(data["credits"], lang, f"{site.base}/about?lang={lang}"),
            "tileMaxZoom": tiles.DATA_MAX_ZOOM, "colours": i18n.COLOURS}
    initiatives = [{**i, "themes": ", ".join(data["themes"].get(x, x) for x in i["themes"]),
                    "source": i["source"] if _is_web(i.get("source")) else None}
                   for i in detail["initiatives"]]
    return ENV.get_template("territory.html").render(
        **page, title=f"{t['name']} — {text['title']}", description=description, t=t,
        kind=kind, kind_line=kind_line, commitment=commitment, sections=sections, themes=themes,
        confidence=text.get(t["confidence"], t["confidence"]), joined_on=detail["joined_on"],
        website=website, sources=sources, initiatives=initiatives,
        boundary_text=boundary_text, boundary_attribution=attribution,
        geojson=f"{site.base}/collections/territories/items/{quote(t['id'], safe='')}",
        images=[(fmt, image_url(site, t["id"], fmt, "slide-16x9")) for fmt in IMAGE_FORMATS],
        fmt_label=lambda fmt: text["map_image"].format(fmt=fmt.upper()),
        on_map=f"{site.base}/map?lang={lang}#{_hash(embed_src)}", embed_code=embed_code,
        image=image, image_size=SOCIAL_IMAGE, map_label=map_label, locale=LOCALES[lang],
        json_ld=Markup(json_for_script(json_ld)), mini_config=Markup(json_for_script(mini)),
        versions=ASSET_VERSIONS, current="territory")


def _hash(src: str) -> str:
    return src.split("#", 1)[1] if "#" in src else ""


def _is_web(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("https://", "http://"))


@dataclass(frozen=True)
class ListQuery:
    """The list's search, filters and sort, as given (already checked)."""

    q: str = ""
    filters: tuple[tuple[str, str], ...] = ()
    sort: str = "name"


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key == "year":
        return (row["year_value"] is None, row["year_value"] or 0, row["name"].casefold())
    return (row[key].casefold(), row["name"].casefold())


def list_rows(territories: list[dict[str, Any]], data: dict[str, Any], lang: str,
              query: ListQuery, site: Site) -> list[dict[str, Any]]:
    """The rows of the list: searched, filtered and sorted, with their labels in `lang`."""
    chosen = dict(query.filters)
    needle = query.q.casefold().strip()
    rows = []
    for t in territories:
        if needle and needle not in t["name"].casefold() and \
                needle not in (t.get("local_name") or "").casefold():
            continue
        if chosen.get("country") and t["country"] != chosen["country"]:
            continue
        if chosen.get("kind") and t["kind"] != chosen["kind"]:
            continue
        if chosen.get("commitment_kind") and t["commitment_kind"] != chosen["commitment_kind"]:
            continue
        if chosen.get("section") and chosen["section"] not in t["sections"]:
            continue
        if chosen.get("theme") and chosen["theme"] not in t["themes"]:
            continue
        rows.append({
            "name": t["name"], "href": site.url(territory_path(t["id"])),
            "local_name": t["local_name"] if t.get("local_name") and t["local_name"] != t["name"]
            else "", "country": t["country_name"], "kind": i18n.KINDS[t["kind"]][lang],
            "commitment": i18n.COMMITMENTS.get(t["commitment_kind"], {}).get(
                lang, t["commitment_kind"]),
            "year": str(t["year"]) if t["year"] else "", "year_value": t["year"],
            "section": ", ".join(data["sections"].get(s, s) for s in t["sections"])})
    key = query.sort.lstrip("-")
    rows.sort(key=lambda row: _sort_value(row, key), reverse=query.sort.startswith("-"))
    return rows


def territories_page(site: Site, rows: list[dict[str, Any]], total: int, data: dict[str, Any],
                     query: ListQuery) -> str:
    lang = site.lang
    text = i18n.strings(lang)
    given = {"q": query.q, **dict(query.filters)}
    page = common(site, "/territories", {**given, "sort": query.sort})
    labels = {"name": text["name"], "country": text["country"], "kind": text["kind"],
              "commitment": text["commitment_kind"], "year": text["year"],
              "section": text["section"]}
    columns = []
    for key in COLUMNS:
        state = ("ascending" if query.sort == key else
                 "descending" if query.sort == f"-{key}" else None)
        next_sort = f"-{key}" if state == "ascending" else key
        columns.append((key, labels[key], state,
                        _with_lang(site.base + "/territories", {**given, "sort": next_sort},
                                   lang)))
    countries = sorted({(t["country"], t["country_name"]) for t in data["territories"]},
                       key=lambda item: item[1].casefold())
    chosen = dict(query.filters)
    selects = [
        ("country", text["country"], countries, chosen.get("country", "")),
        ("kind", text["kind"], list(i18n.labels(i18n.KINDS, lang).items()),
         chosen.get("kind", "")),
        ("commitment_kind", text["commitment_kind"],
         list(i18n.labels(i18n.COMMITMENTS, lang).items()), chosen.get("commitment_kind", "")),
        ("section", text["section"], list(data["sections"].items()), chosen.get("section", "")),
        ("theme", text["theme"], list(data["themes"].items()), chosen.get("theme", "")),
    ]
    return ENV.get_template("territories.html").render(
        **page, title=f"{text['territories']} — {text['title']}",
        description=text["caveat"], heading=text["territories"], q=query.q,
        sort=query.sort if query.sort != "name" else "", selects=selects, columns=columns,
        rows=rows, count_text=text["list_shown"].format(n=len(rows), total=total),
        sort_label=lambda label: text["sort_by"].format(column=label),
        geojson=f"{site.base}/collections/territories/items?limit=1000", current="list")


def sitemap(base: str, territory_ids: list[str], lastmod: str | None) -> str:
    """sitemap.xml: the map, the list and every territory's page, each with its languages."""
    paths = ["/map", "/territories", "/about"] + [territory_path(i) for i in territory_ids]
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
           'xmlns:xhtml="http://www.w3.org/1999/xhtml">']
    for path in paths:
        links = "".join(
            f'<xhtml:link rel="alternate" hreflang="{code}" '
            f'href="{xml_escape(_with_lang(base + path, {}, code))}"/>' for code in i18n.LANGS)
        stamp = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
        out.append(f"<url><loc>{xml_escape(base + path)}</loc>{stamp}{links}</url>")
    out.append("</urlset>")
    return "\n".join(out) + "\n"



FONTS = [("Noto Sans, Noto Sans CJK KR (map images)", "", "SIL Open Font License 1.1"),
         ("DejaVu Sans (map images, fallback)", "", "Bitstream Vera License")]


def about_page(site: Site, sources: list[Credit], software: list[tuple[str, str, str]]) -> str:
    """/about: every boundary source in place with its full licence and attribution, the
    members' provenance, and the software the pages and images are made with."""
    lang = site.lang
    text = i18n.strings(lang)
    page = common(site, "/about", {})
    rows = [{"short": c.short, "title": c.title or "", "licence": c.licence or "",
             "attribution": c.attribution or "", "version": c.version or "",
             "level": i18n.LEVELS.get(c.level, {}).get(lang, c.level)} for c in sources]
    return ENV.get_template("about.html").render(
        **page, title=f"{text['about']} — {text['title']}", description=text["about_intro"],
        sources=rows, software=software + FONTS, current="about")
