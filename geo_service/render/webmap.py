"""The world map pages (/map and /embed), rendered with Folium.

Folium draws the page and the Leaflet map; our own elements add what it lacks: the base layer from
our vector tiles, the territory markers and polygons, the legend, search, filters and the list of
territories in view (geo_service/static/map.js does the browser side). Every script and style is
served by the app from pinned npm packages: Folium's CDN defaults are replaced, so a loaded page
asks nothing of any other host. Data reaches the page as JSON inside a
`<script type="application/json">` block and is put into the page as text, never as HTML.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

import folium
from branca.element import Element, Figure, MacroElement
from folium.elements import JSCSSMixin
from folium.template import Template

from geo_service.query import tiles
from geo_service.render import credits, i18n

STATIC_ROOT = "/static"  # where the app serves our files; a published site uses a relative root
VENDOR_DIRS = {  # /static/vendor/ folder -> folder inside node_modules (only the built files)
    "leaflet": "leaflet/dist",
    "leaflet.markercluster": "leaflet.markercluster/dist",
    "leaflet.vectorgrid": "leaflet.vectorgrid/dist",
    "leaflet-gesture-handling": "leaflet-gesture-handling/dist",
    "leaflet-hash": "leaflet-hash",
    "pmtiles": "pmtiles/dist",
    "swagger-ui": "swagger-ui-dist",
}
ASSET_VERSIONS = {"leaflet": "1.9.4", "markercluster": "1.5.3", "vectorgrid": "1.3.0",
                  "gesture": "1.2.2", "hash": "0.2.1", "pmtiles": "4.5.0"}
FILTERS = ("theme", "section", "kind", "commitment_kind")


def _v(name: str) -> str:
    return ASSET_VERSIONS[name]


def json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element or open a comment: <, >, & and the JS line
    separators are escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


class Page(Figure):
    """Folium's page with <html lang>, an escaped title, a description and a CSP nonce on every
    inline script."""

    _template = Template(
        "<!DOCTYPE html>\n"
        "<html lang=\"{{ this.lang }}\">\n"
        "<head>\n"
        "<meta charset=\"utf-8\">\n"
        "<title>{{ this.escaped_title }}</title>\n"
        "<meta name=\"description\" content=\"{{ this.escaped_description }}\">\n"
        "<link rel=\"icon\" href=\"{{ this.root }}/favicon.svg\" type=\"image/svg+xml\">\n"
        "{{ this.header.render(**kwargs) }}\n"
        "</head>\n"
        "<body>\n"
        "{{ this.html.render(**kwargs) }}\n"
        "<script nonce=\"{{ this.nonce }}\">\n"
        "{{ this.script.render(**kwargs) }}\n"
        "</script>\n"
        "</body>\n"
        "</html>\n"
    )

    def __init__(self, lang: str, title: str, description: str, nonce: str,
                 root: str = STATIC_ROOT) -> None:
        super().__init__(title=None)
        self.lang = lang
        self.root = html.escape(root)
        self.escaped_title = html.escape(title)
        self.escaped_description = html.escape(description)
        self.nonce = nonce
        # Figure adds a content-type meta; <meta charset> above says the same
        self.header._children.clear()


class LocalMap(folium.Map):
    """folium.Map with Leaflet from our pinned package and a viewport that lets people zoom."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
            <meta name="viewport" content="width=device-width, initial-scale=1">
        {% endmacro %}

        {% macro html(this, kwargs) %}
            <div class="folium-map hr-map" id={{ this.get_name()|tojson }}
                 role="region" aria-label="{{ this.aria_label }}"></div>
        {% endmacro %}

        {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = L.map(
                {{ this.get_name()|tojson }},
                {
                    center: {{ this.location|tojson }},
                    crs: L.CRS.{{ this.crs }},
                    ...{{ this.options|tojavascript }}
                }
            );
        {% endmacro %}
        """
    )

    def __init__(self, aria_label: str, root: str = STATIC_ROOT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        vendor = f"{root}/vendor"
        self.default_js = [("leaflet", f"{vendor}/leaflet/leaflet.js?v={_v('leaflet')}")]
        self.default_css = [("leaflet_css", f"{vendor}/leaflet/leaflet.css?v={_v('leaflet')}")]
        self.aria_label = html.escape(aria_label)


class MovementLayers(JSCSSMixin, MacroElement):
    """Base layer, territories, legend, search, filters, list, hash and gestures: our own
    element, configured by a JSON block and run by static/map.js."""

    _template = Template(
        """
        {% macro html(this, kwargs) %}
            <script type="application/json" id="hr-config">{{ this.config_json }}</script>
        {% endmacro %}

        {% macro script(this, kwargs) %}
            HRMap.init({{ this._parent.get_name() }},
                       JSON.parse(document.getElementById("hr-config").textContent));
        {% endmacro %}
        """
    )

    def __init__(self, config: dict[str, Any], asset_version: str, root: str = STATIC_ROOT,
                 scripts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self._name = "MovementLayers"
        self.config_json = json_for_script(config)
        vendor = f"{root}/vendor"
        self.default_js = [*scripts,
            ("markercluster", f"{vendor}/leaflet.markercluster/leaflet.markercluster.js"
                              f"?v={_v('markercluster')}"),
            ("vectorgrid", f"{vendor}/leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js"
                           f"?v={_v('vectorgrid')}"),
            ("gesture", f"{vendor}/leaflet-gesture-handling/leaflet-gesture-handling.min.js"
                        f"?v={_v('gesture')}"),
            ("hash", f"{vendor}/leaflet-hash/leaflet-hash.js?v={_v('hash')}"),
            ("hrmap", f"{root}/map.js?v={asset_version}"),
        ]
        self.default_css = [
            ("markercluster_css", f"{vendor}/leaflet.markercluster/MarkerCluster.css"
                                  f"?v={_v('markercluster')}"),
            ("markercluster_default_css", f"{vendor}/leaflet.markercluster/"
                                          f"MarkerCluster.Default.css?v={_v('markercluster')}"),
            ("gesture_css", f"{vendor}/leaflet-gesture-handling/leaflet-gesture-handling.min.css"
                            f"?v={_v('gesture')}"),
            ("hrmap_css", f"{root}/map.css?v={asset_version}"),
        ]


@dataclass(frozen=True)
class PageRequest:
    lang: str
    embed: bool
    filters: dict[str, str]
    download: bool = True  # the Download control (on /embed when asked)


@dataclass(frozen=True)
class Published:
    """How a page of the static site (geo-service publish) differs from the app's: its files
    under a relative `root`, its config's `overrides` (data and tiles from files), the extra
    `scripts` it loads first, and its policy as a <meta> (no server sends headers for it)."""

    root: str
    overrides: dict[str, Any]
    scripts: tuple[tuple[str, str], ...]
    csp: str


def render_page(request: PageRequest, data: dict[str, Any], *, version: str, base: str,
                nonce: str, asset_version: str, basemap: dict[str, str] | None,
                published: Published | None = None) -> str:
    """The whole HTML page (a static site's page when `published`)."""
    lang = request.lang
    text = i18n.strings(lang)
    root = published.root if published else STATIC_ROOT
    page = Page(lang, text["title"], text["caveat"], nonce, root)
    if published:
        page.header.add_child(Element(
            f'<meta http-equiv="Content-Security-Policy" content="{html.escape(published.csp)}">'))
    world = LocalMap(
        aria_label=text["map_label"], root=root, location=[20.0, 10.0],
        zoom_start=1 if request.embed else 2, tiles=None,
        world_copy_jump=True,
    )
    # fractional zoom: the first view fits the members to any frame (map.js sets the minimum)
    world.options.update({"minZoom": 0, "maxZoom": 18, "zoomSnap": 0, "zoomDelta": 1})
    world.add_to(page)
    config = {
        "lang": lang, "embed": request.embed, "strings": text,
        "kinds": i18n.labels(i18n.KINDS, lang), "commitments": i18n.labels(i18n.COMMITMENTS, lang),
        "levels": i18n.labels(i18n.LEVELS, lang), "colours": i18n.COLOURS, "shapes": i18n.SHAPES,
        "themes": data["themes"], "sections": data["sections"],
        "territories": data["territories"], "total": len(data["territories"]),
        "filters": request.filters, "langs": list(i18n.LANGS),
        "tiles": f"{base}/tiles/map/{{z}}/{{x}}/{{y}}.mvt?v={version}&lang={lang}",
        "attribution": credits.corner(data["credits"], lang, f"{base}/about?lang={lang}"),
        "basemap": basemap,
        "tileMaxZoom": tiles.DATA_MAX_ZOOM,
        "download": request.download, "presets": i18n.labels(i18n.PRESETS, lang),
        "years": [i18n.FIRST_YEAR, i18n.LAST_YEAR], "milestones": list(i18n.MILESTONES),
    }
    if published:
        config.update(published.overrides)
    MovementLayers(config, asset_version, root, published.scripts if published else ()
                   ).add_to(world)
    if not request.embed and not published:
        page.header.add_child(Element(
            f'<link rel="alternate" type="application/json+oembed" title="oEmbed" '
            f'href="{html.escape(base)}/oembed?url={html.escape(base)}/map">'))
    return page.render()
