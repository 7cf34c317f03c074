"""Synthetic rosters for load tests: N made-up territories on real boundaries, never members.

The scaling benchmark (bench/scaling_benchmark.py) needs 10× and 100× the sample's members. They
are drawn from the boundaries loaded in the database so that every row matches exactly one
boundary by its code, and they are labelled synthetic wherever a reader could see them: the id
(`synthetic-00001`), the name (`Synthetic 00001 (Lyon)`), the commitment text, the source (a URL
under example.org, a domain reserved for examples) and a low confidence. Nothing loads them by
default: only `geo-service members synthetic` writes such a file, and only an explicit
`geo-service members import` brings it into a database.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg

from geo_service.errors import LoadError, Problem

HEADER = ("id", "name", "country_iso2", "level", "year", "joined_on", "commitment_kind",
          "commitment", "source", "confidence", "sections", "boundary_code", "lon", "lat")
COMMITMENT = "SYNTHETIC: generated for load tests, not a member of the movement"
SOURCE = "https://example.org/synthetic/{seed}/{number}"
COMMITMENT_KINDS = ("campaign-signatory", "declared", "charter", "ordinance", "other-commitment")
COUNTRY_SHARE = 100  # one territory in this many is a national association on a country boundary
FIRST_YEAR, LAST_YEAR = 1995, 2025
KINDS = {"municipality": "municipality", "region": "region"}  # else a national association


@dataclass(frozen=True)
class Boundary:
    level: str
    code: str
    country: str
    name: str
    lon: float
    lat: float


def _refuse(message: str) -> LoadError:
    return LoadError([Problem("synthetic roster", None, "count", message)])


def read_boundaries(conn: psycopg.Connection) -> tuple[list[Boundary], list[Boundary]]:
    """The subnational boundaries a territory can sit on (a country's municipalities where the
    data has them, else its regions) and the country boundaries, in a stable order.

    Codes that could name another boundary too (as its ISO 3166-2, Wikidata or national code,
    which the matcher also accepts) are left out, so every row matches exactly one boundary."""
    rows = conn.execute(
        "WITH usable AS (SELECT b.level, b.code, b.iso3166_1, b.name, ST_X(b.label_point) AS lon, "
        "ST_Y(b.label_point) AS lat FROM boundaries b WHERE b.iso3166_1 IS NOT NULL AND "
        "(b.level = 'country' OR b.level = 'municipality' OR (b.level = 'region' AND NOT EXISTS "
        "(SELECT 1 FROM boundaries m WHERE m.level = 'municipality' "
        "AND m.iso3166_1 = b.iso3166_1)))), "
        "other_names AS (SELECT iso3166_2 AS code FROM boundaries WHERE iso3166_2 IS NOT NULL "
        "UNION ALL SELECT wikidata_id FROM boundaries WHERE wikidata_id IS NOT NULL "
        "UNION ALL SELECT national_code FROM boundaries WHERE national_code IS NOT NULL) "
        "SELECT level, code, iso3166_1, name, lon, lat FROM usable "
        "WHERE code NOT IN (SELECT code FROM other_names) ORDER BY iso3166_1, level, code"
    ).fetchall()
    found = [Boundary(*r) for r in rows]
    return ([b for b in found if b.level != "country"], [b for b in found if b.level == "country"])


def pick(subnational: list[Boundary], countries: list[Boundary], count: int,
         rng: random.Random) -> list[Boundary]:
    """`count` distinct boundaries: one in each country first (all of them once count reaches
    the number of countries), one in COUNTRY_SHARE on a country boundary, the rest drawn from
    every subnational boundary alike (so dense data, like the US places, gets more)."""
    available = len(subnational) + len(countries)
    if count < 1:
        raise _refuse(f"count must be at least 1, not {count}")
    if count > available:
        raise _refuse(f"count {count} is more than the {available} boundaries available "
                      f"({len(subnational)} municipalities or regions, {len(countries)} countries)")
    by_country: dict[str, list[Boundary]] = defaultdict(list)
    for b in subnational:
        by_country[b.country].append(b)
    on_countries = max(min(count // COUNTRY_SHARE, len(countries)), count - len(subnational))
    wanted = count - on_countries
    covered = sorted(by_country)
    if wanted < len(covered):
        covered = sorted(rng.sample(covered, wanted))
    chosen = [rng.choice(by_country[c]) for c in covered]
    taken = set(chosen)
    rest = [b for b in subnational if b not in taken]
    chosen += rng.sample(rest, wanted - len(chosen))
    chosen += rng.sample(countries, on_countries)
    return sorted(chosen, key=lambda b: (b.country, b.level, b.code))


def _row(number: int, width: int, b: Boundary, seed: int, sections: list[str],
         rng: random.Random) -> dict[str, str]:
    label = f"{number:0{width}d}"
    year = rng.randint(FIRST_YEAR, LAST_YEAR)
    joined = (dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))).isoformat()
    return {
        "id": f"synthetic-{label}", "name": f"Synthetic {label} ({b.name})",
        "country_iso2": b.country,
        "level": KINDS.get(b.level, "association"),
        "year": str(year), "joined_on": joined if rng.random() < 0.5 else "",
        "commitment_kind": rng.choice(COMMITMENT_KINDS), "commitment": COMMITMENT,
        "source": SOURCE.format(seed=seed, number=label), "confidence": "low",
        "sections": rng.choice(sections) if sections and rng.random() < 0.5 else "",
        "boundary_code": b.code, "lon": f"{b.lon:.6f}", "lat": f"{b.lat:.6f}",
    }


def write_synthetic(dsn: str, out: Path, *, count: int, seed: int) -> dict[str, int]:
    """Write a roster of `count` synthetic territories to `out` (CSV, importable with
    `geo-service members import`); the same database, count and seed give the same file.
    Returns how many territories each level got and how many countries they cover."""
    with psycopg.connect(dsn) as conn:
        subnational, countries = read_boundaries(conn)
        sections = sorted(r[0] for r in conn.execute("SELECT slug FROM uclg_sections").fetchall())
    rng = random.Random(seed)
    chosen = pick(subnational, countries, count, rng)
    width = max(5, len(str(count)))
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        for number, b in enumerate(chosen, start=1):
            writer.writerow(_row(number, width, b, seed, sections, rng))
    kinds: dict[str, int] = defaultdict(int)
    for b in chosen:
        kinds[KINDS.get(b.level, "association")] += 1
    return {**kinds, "countries": len({b.country for b in chosen})}
