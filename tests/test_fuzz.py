"""A property-based fuzzer over every route: hostile paths and parameters never get a 5xx.

Requests are generated from the app's own OpenAPI document, so a new route is fuzzed the day it
is added: each picks an operation, fills its path with good or hostile values, and sends a
random subset of its query parameters (sometimes unknown ones, sometimes twice) with good or
hostile values: control characters and NUL, broken UTF-8 escapes, huge and odd numbers,
impossible dates, SQL and LIKE metacharacters, math markup, very long text. Static files get
path tricks. A 4xx must be problem details.

`make test` runs 2,000 requests, the same ones every time (derandomized); `make fuzz` runs
GEO_FUZZ_EXAMPLES (default 20,000) fresh ones.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_service.web.app import create_app

EXAMPLES = int(os.environ.get("GEO_FUZZ_EXAMPLES", "2000"))
FRESH = "GEO_FUZZ_EXAMPLES" in os.environ  # make fuzz: new requests each run

HOSTILE_WORDS = [
    "", " ", "null", "NaN", "-0", "1e400", "-1e400", "inf", "0x10", "'", '"', "\\", "%", "_",
    "%%", "\\%", "' OR 1=1 --", "'; DROP TABLE territories; --", "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd", "$\\frac{1}{0}$", "$x$", "$$", "{}", "[]", "{\"op\":\"=\"}",
    "a" * 5000, "2020-13", "2020-02-30", "2020-00-10", "9999-12-31T23:59:60Z", "0000",
    "2020/..", "../..", "..", ",,,", "1,2,3", "-181,-91,181,91", "180,90,-180,-90",
    "nan,nan,nan,nan", "\u202e", "😀", "\ufeff", "Ⅻ", "١٢٣", "ß", "İ", "true", "false", "yes",
    "name LIKE '%\\'", "year = 'abc'", "year > 1e400", "joined_on > DATE('2020-13-01')",
    "S_INTERSECTS(geometry, POINT(1e400 0))", "name = 'a' AND", "NOT NOT NOT", "(((((((((",
    "CASEI(name) = 'x'", "year BETWEEN 3 AND 1", "theme IN ()", "sections A_CONTAINS ('x')",
    "http://127.0.0.1/map", "file:///etc/passwd", "javascript:alert(1)", "<script>", "&amp;",
    "\x00", "a\x00b", "\x1b[31m", "\r\nSet-Cookie: a=b", "\t", "\x7f", "\x85",
]
GOOD: dict[str, list[str]] = {  # values each parameter takes when used well
    "collection_id": ["countries", "regions", "municipalities", "territories",
                      "territory-boundaries", "initiatives", "sections"],
    "tileset": ["map", "countries", "regions", "territories", "municipalities"],
    "fmt": ["png", "svg", "pdf"],
    "lang": ["en", "fr", "es"], "f": ["json", "geojson", "html", "csv", "gpkg"],
    "limit": ["1", "10", "100"], "offset": ["0", "5"], "precision": ["0", "4", "7"],
    "zoom": ["0", "5", "12"], "geometry": ["full", "point", "none", "simplified"],
    "bbox": ["2,48,3,49", "-10,35,5,45", "170,-50,-170,50"], "datetime": ["2020", "2011/..",
                                                                          "../2020-12-31"],
    "region": ["FR", "europe", "ES-CT", "KR"], "country": ["FR", "KR", "ES"],
    "sortby": ["name", "-year"], "kind": ["municipality", "region-province-state"],
    "theme": ["water", "housing"], "section": ["europe", "africa"],
    "filter": ["name LIKE 'B%'", "year >= 2000", "country = 'FR'"],
    "filter-lang": ["cql2-text", "cql2-json"], "preset": ["square", "slide-16x9"],
    "width": ["200", "250"], "height": ["200", "240"], "dpi": ["50", "100"],
    "title": ["Rights $x$", "Droits à la ville"], "z": ["0", "3", "12"], "x": ["0", "1"],
    "y": ["0", "1"], "tile_matrix": ["0", "2"], "tile_row": ["0", "1"], "tile_col": ["0", "1"],
    "url": ["http://testserver/map", "http://testserver/embed?lang=fr"],
    "feature_id": ["es-municipality-barcelona", "kr-metropolitan-gwangju", "FR", "FR-IDF"],
    "properties": ["name", "name,kind"], "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
    "bbox-crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
    "filter-crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
    "include_engagement": ["true", "false"], "parent": ["FR", "ES"],
    "commitment_kind": ["charter", "declaration"], "v": ["1"], "maxwidth": ["400"],
    "maxheight": ["300"], "format": ["json"], "subtitle": ["2030"], "legend": ["true"],
    "labels": ["true", "false"], "transparent": ["false"], "dark": ["true"],
}
STATIC = ["/static/map.js", "/static/map.css", "/static/", "/static/..%2f..%2fpyproject.toml",
          "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/vendor/", "/api.html", "/api",
          "/static/vendor/leaflet/../../../../etc/passwd", "/favicon.ico", "/robots.txt"]

CONTROLS = ["\x00", "\x00", "\x01", "\x08", "\x1b", "\x7f", "\x85", "\x9f"]
text = st.one_of(
    st.sampled_from(HOSTILE_WORDS),
    st.text(max_size=30),  # any code point: controls, combining marks, astral planes
    st.builds(lambda head, control, tail: head + control + tail,  # a control character inside
              st.text(max_size=8), st.sampled_from(CONTROLS), st.text(max_size=8)),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.floats().map(repr),
)


def encode(value: str) -> str:
    return quote(value, safe="")


@st.composite
def requests(draw: st.DrawFn, operations: list[tuple[str, list[str], list[str]]]) -> str:
    """One URL: an operation with a few of its query parameters. Most requests put one hostile
    value (the focus) among good ones, so that it gets past the other checks to the query or
    the drawing; some are hostile all over."""
    if draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from(STATIC))
    # an operation weighs as much as it has parameters: more to get wrong
    template, path_names, query_names = draw(st.sampled_from(
        [op for op in operations for _ in range(1 + len(op[1]) + len(op[2]))]))
    names = draw(st.lists(st.sampled_from(query_names), unique=True, max_size=4)) \
        if query_names else []
    slots = path_names + names
    focus = draw(st.sampled_from(slots)) if slots and draw(st.integers(0, 5)) else None

    def value(name: str) -> str:
        good = GOOD.get(name)
        if good and name != focus and (focus is not None or draw(st.booleans())):
            return draw(st.sampled_from(good))
        return draw(text)

    path = template
    for name in path_names:
        path = path.replace("{" + name + "}", encode(value(name)))
    pairs = [f"{encode(name)}={encode(value(name))}" for name in names]
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(["q", "limit[0]", "", "x" * 300, "\u0000", *query_names[:3]]))
        pairs.append(f"{encode(name)}={encode(draw(text))}")  # unknown, empty or repeated
    if draw(st.integers(0, 19)) == 0:
        pairs.append(draw(st.sampled_from(["title=%FF%FE", "%C3=1", "bbox=%E2%82", "=",
                                           "&&&", "limit", "a=%zz"])))
    return path + ("?" + "&".join(pairs) if pairs else "")


def operations_of(spec: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    """(path template, path parameter names, query parameter names) of every GET operation."""
    found = []
    for template, methods in spec["paths"].items():
        operation = methods.get("get")
        if operation is None:
            continue
        params = operation.get("parameters", [])
        found.append((template, [p["name"] for p in params if p["in"] == "path"],
                      [p["name"] for p in params if p["in"] == "query"]))
    return found


@pytest.fixture(scope="module")
def fuzz_client(settings_for_fuzz) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for_fuzz), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def settings_for_fuzz(settings, sample):
    # small images (a hostile title is still drawn, quickly); the cache off, so every request
    # reaches the database and the drawing
    return settings.model_copy(update={"image_max_side": 260, "response_cache_mb": 0,
                                       "image_cache_mb": 0})


def test_no_request_gets_a_server_error(fuzz_client: TestClient) -> None:
    operations = operations_of(fuzz_client.get("/api").json())
    assert len(operations) >= 20
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    @given(url=requests(operations))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not FRESH, database=None,
              suppress_health_check=list(HealthCheck))
    def check(url: str) -> None:
        response = fuzz_client.get(url)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{url} → {response.status_code} {response.text[:300]}")
        assert response.status_code < 500, failures[-1]
        if 400 <= response.status_code < 500:
            assert response.headers["content-type"].startswith("application/problem+json"), url
            assert response.json()["status"] == response.status_code

    check()
    assert sum(statuses.values()) >= EXAMPLES, statuses
    # the generated requests reach the routes: most are refused, but many are served too
    assert statuses[200] > EXAMPLES // 20 and statuses[400] > EXAMPLES // 10, statuses
    print("fuzz statuses:", dict(sorted(statuses.items())))


def test_the_fuzzer_finds_a_planted_server_error(settings_for_fuzz) -> None:
    """The fuzzer is not blind: a route that fails on a quote or on a character beyond the
    Basic Multilingual Plane (an emoji) is found."""
    app = create_app(settings_for_fuzz)

    @app.get("/planted")
    def planted(word: str = "") -> dict[str, str]:
        if "'" in word or any(ord(char) > 0xFFFF for char in word):
            raise RuntimeError("planted")
        return {"ok": word}

    with TestClient(app, raise_server_exceptions=False) as client:
        found: list[str] = []

        @given(url=requests([("/planted", [], ["word"])]))
        @settings(max_examples=400, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(url: str) -> None:
            if client.get(url).status_code >= 500:
                found.append(url)

        check()
    assert found, "400 generated requests never hit the planted failure"
