"""The OGC API – Features as HTML for browsers (the conformance class `html`): the landing page,
conformance, collections, one collection, an items page (a table, paging, a small map, the same
filters as the JSON, links to every format) and one item. One template, templates/api.html; every
value is escaped there, and the map's data goes through webmap.json_for_script."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from geo_service.domain import Credit
from geo_service.query import tiles
from geo_service.render import credits, i18n
from geo_service.render.site import ENV, Site, common
from geo_service.render.webmap import ASSET_VERSIONS, json_for_script

A: dict[str, dict[str, str]] = {
    "api": {"en": "Data API", "fr": "API de données", "es": "API de datos"},
    "breadcrumbs": {"en": "Where you are", "fr": "Vous êtes ici", "es": "Dónde está"},
    "formats": {"en": "This page as", "fr": "Cette page en", "es": "Esta página en"},
    "collections": {"en": "Collections", "fr": "Collections", "es": "Colecciones"},
    "conformance": {"en": "Conformance classes", "fr": "Classes de conformité",
                    "es": "Clases de conformidad"},
    "items": {"en": "Features", "fr": "Entités", "es": "Entidades"},
    "queryables": {"en": "Queryables (properties to filter and sort on)",
                   "fr": "Propriétés interrogeables (pour filtrer et trier)",
                   "es": "Propiedades consultables (para filtrar y ordenar)"},
    "filters": {"en": "Filters", "fr": "Filtres", "es": "Filtros"},
    "apply": {"en": "Apply", "fr": "Appliquer", "es": "Aplicar"},
    "reset": {"en": "Clear", "fr": "Effacer", "es": "Borrar"},
    "map": {"en": "Map of the features on this page", "fr": "Carte des entités de cette page",
            "es": "Mapa de las entidades de esta página"},
    "pages": {"en": "Pages", "fr": "Pages", "es": "Páginas"},
    "prev": {"en": "Previous page", "fr": "Page précédente", "es": "Página anterior"},
    "next": {"en": "Next page", "fr": "Page suivante", "es": "Página siguiente"},
    "shown": {"en": "Features {a}–{b} of {n}", "fr": "Entités {a} à {b} sur {n}",
              "es": "Entidades {a}–{b} de {n}"},
    "none": {"en": "No feature matches.", "fr": "Aucune entité ne correspond.",
             "es": "Ninguna entidad coincide."},
    "extent": {"en": "Extent (lon/lat)", "fr": "Emprise (lon/lat)", "es": "Extensión (lon/lat)"},
    "property": {"en": "Property", "fr": "Propriété", "es": "Propiedad"},
    "docs": {"en": "API documentation (OpenAPI)", "fr": "Documentation de l’API (OpenAPI)",
             "es": "Documentación de la API (OpenAPI)"},
    "tiles": {"en": "Vector tiles", "fr": "Tuiles vectorielles", "es": "Teselas vectoriales"},
    "stats": {"en": "Campaign progress", "fr": "Progression de la campagne",
              "es": "Progreso de la campaña"},
    "id": {"en": "Id", "fr": "Identifiant", "es": "Identificador"},
}
# the items page's filter form: parameter, label, help (the JSON's own parameters)
FORM_FIELDS = [
    ("bbox", "bbox", "minLon,minLat,maxLon,maxLat"),
    ("region", "region", "europe, FR, KR-29"),
    ("datetime", "datetime", "2020-01-01/.. or ../2022-12-31"),
    ("filter", "filter (CQL2)", "year >= 2020 AND kind = 'region'"),
    ("sortby", "sortby", "name,-year"),
    ("limit", "limit", "1–10000"),
]
MAX_COLUMNS = 8  # of properties in the items table (every one is on each item's page)


def strings(lang: str) -> dict[str, str]:
    return {key: values[lang] for key, values in A.items()}


def _page(site: Site, path: str, query: dict[str, str], title: str, heading: str,
          breadcrumbs: list[tuple[str, str | None]], **context: Any) -> str:
    shared = common(site, path, query)
    a = strings(site.lang)
    defaults: dict[str, Any] = {"intro": "", "formats": [], "links": [], "facts": [],
                                "form": None, "features": None, "paging": None, "table": None}
    return ENV.get_template("api.html").render(
        **shared, **(defaults | context), a=a, title=f"{title} — {a['api']}",
        description=context.get("intro") or title, heading=heading,
        breadcrumbs=[(a["api"], site.url("/", f="html")), *breadcrumbs] if breadcrumbs
        else [(a["api"], None)], versions=ASSET_VERSIONS, current="api")


def _json_link(site: Site, path: str, query: dict[str, str], label: str, media: str
               ) -> tuple[str, str, str]:
    return (label, f"{site.base}{path}?{urlencode({**query, 'f': 'json'})}", media)


def landing(site: Site, title: str, description: str) -> str:
    a = strings(site.lang)
    links = [(a["collections"], site.url("/collections", f="html"), ""),
             (a["conformance"], site.url("/conformance", f="html"), ""),
             (a["docs"], f"{site.base}/api.html", "/api"),
             (a["tiles"], f"{site.base}/tiles", "TileJSON"),
             (a["stats"], f"{site.base}/api/stats", "JSON"),
             (i18n.STRINGS["world_map"][site.lang], site.url("/map"), ""),
             (i18n.STRINGS["all_territories"][site.lang], site.url("/territories"), "")]
    return _page(site, "/", {"f": "html"}, title, title, [], intro=description,
                 formats=[_json_link(site, "/", {}, "JSON", "application/json")], links=links)


def conformance(site: Site, classes: list[str]) -> str:
    a = strings(site.lang)
    return _page(site, "/conformance", {"f": "html"}, a["conformance"], a["conformance"],
                 [(a["conformance"], None)],
                 formats=[_json_link(site, "/conformance", {}, "JSON", "application/json")],
                 links=[(c, c, "") for c in classes])


def collections(site: Site, described: list[dict[str, Any]]) -> str:
    a = strings(site.lang)
    rows = [[(c["title"], site.url(f"/collections/{c['id']}", f="html")), (c["id"], None),
             (c["description"], None),
             (a["items"], site.url(f"/collections/{c['id']}/items", f="html"))]
            for c in described]
    return _page(site, "/collections", {"f": "html"}, a["collections"], a["collections"],
                 [(a["collections"], None)],
                 formats=[_json_link(site, "/collections", {}, "JSON", "application/json")],
                 table={"label": a["collections"], "columns": [
                     i18n.STRINGS["name"][site.lang], a["id"], "", a["items"]], "rows": rows})


def collection(site: Site, c: dict[str, Any]) -> str:
    a = strings(site.lang)
    path = f"/collections/{c['id']}"
    links = [(a["items"], site.url(f"{path}/items", f="html"), ""),
             ("GeoJSON", f"{site.base}{path}/items?f=geojson", "application/geo+json"),
             ("CSV", f"{site.base}{path}/items?f=csv", "text/csv"),
             ("GeoPackage", f"{site.base}{path}/items?f=gpkg", "application/geopackage+sqlite3"),
             (a["queryables"], f"{site.base}{path}/queryables", "JSON Schema")]
    bbox = (c.get("extent") or {}).get("spatial", {}).get("bbox", [None])[0]
    facts = [(a["id"], c["id"], None)]
    if bbox:
        facts.append((a["extent"], ", ".join(f"{v:.4f}" for v in bbox), None))
    return _page(site, path, {"f": "html"}, c["title"], c["title"],
                 [(a["collections"], site.url("/collections", f="html")), (c["title"], None)],
                 intro=c["description"],
                 formats=[_json_link(site, path, {}, "JSON", "application/json")],
                 links=links, facts=facts)


def _quoted(value: Any) -> str:
    return quote(str(value), safe="")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def items(site: Site, c: Any, page: dict[str, Any], query: dict[str, str], offset: int,
          limit: int, map_config: dict[str, Any]) -> str:
    """An items page: `page` is the FeatureCollection as JSON (parsed), `query` the request's
    parameters as given (without f)."""
    a = strings(site.lang)
    path = f"/collections/{c.id}/items"
    features = page["features"]
    matched = page.get("numberMatched", len(features))
    names = [n for n in c.properties if n not in ("id",)][:MAX_COLUMNS]
    rows = [[(_cell(f.get("id")), site.url(f"/collections/{c.id}/items/{_quoted(f.get('id'))}",
                                           f="html"))]
            + [(_cell(f["properties"].get(n)), None) for n in names] for f in features]
    base_query = {k: v for k, v in query.items() if k not in ("f", "lang", "offset")}

    def at(start: int) -> str:
        return site.url(path, **{**base_query, "offset": str(start), "f": "html"})

    paging = {"text": a["shown"].format(a=offset + 1, b=offset + len(features), n=matched)
              if features else a["none"],
              "prev": at(max(0, offset - limit)) if offset > 0 else None,
              "next": at(offset + limit) if offset + limit < matched else None}
    formats = [(label, f"{site.base}{path}?{urlencode({**base_query, 'offset': str(offset), 'f': f})}",
                media) for label, f, media in (
                    ("GeoJSON", "geojson", "application/geo+json"), ("CSV", "csv", "text/csv"),
                    ("GeoPackage", "gpkg", "application/geopackage+sqlite3"))]
    fields = [(name, label, query.get(name, ""), help_text) for name, label, help_text in
              FORM_FIELDS] + [(name, name, query.get(name, ""), "") for name in c.filters]
    drawn = {"type": "FeatureCollection",
             "features": [f for f in features if f.get("geometry")]}
    return _page(site, path, {**base_query, "offset": str(offset), "f": "html"},
                 f"{c.title}: {a['items']}", c.title,
                 [(a["collections"], site.url("/collections", f="html")),
                  (c.title, site.url(f"/collections/{c.id}", f="html")), (a["items"], None)],
                 intro=c.description, formats=formats,
                 links=[(a["queryables"], f"{site.base}/collections/{c.id}/queryables",
                         "JSON Schema")],
                 form={"action": f"{site.base}{path}", "fields": fields,
                       "open": bool(set(base_query) - {"limit"})},
                 features=Markup(json_for_script({**map_config, "data": drawn}))
                 if drawn["features"] else None,
                 paging=paging, table={"label": f"{c.title}: {a['items']}",
                                       "columns": [a["id"], *names], "rows": rows})


def item(site: Site, c: Any, feature: dict[str, Any], map_config: dict[str, Any]) -> str:
    a = strings(site.lang)
    fid = str(feature.get("id"))
    path = f"/collections/{c.id}/items/{_quoted(fid)}"
    facts = [(name, _cell(value), value if isinstance(value, str) and
              value.startswith(("https://", "http://")) else None)
             for name, value in feature["properties"].items()]
    name = str(feature["properties"].get("name") or fid)
    drawn = {"type": "FeatureCollection", "features": [feature] if feature.get("geometry") else []}
    return _page(site, path, {"f": "html"}, f"{c.title}: {name}", name,
                 [(a["collections"], site.url("/collections", f="html")),
                  (c.title, site.url(f"/collections/{c.id}", f="html")),
                  (a["items"], site.url(f"/collections/{c.id}/items", f="html")), (name, None)],
                 formats=[_json_link(site, path, {}, "GeoJSON", "application/geo+json")],
                 facts=facts,
                 features=Markup(json_for_script({**map_config, "data": drawn}))
                 if drawn["features"] else None)


def map_config(site: Site, version: str, sources: list[Credit]) -> dict[str, Any]:
    """What the small map of an items page needs besides its features."""
    return {"tiles": f"{site.base}/tiles/map/{{z}}/{{x}}/{{y}}.mvt?v={version}&lang={site.lang}",
            "attribution": credits.corner(sources, site.lang, f"{site.base}/about?lang={site.lang}"),
            "tileMaxZoom": tiles.DATA_MAX_ZOOM, "colours": i18n.COLOURS}
