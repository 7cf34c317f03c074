"""The one region rule: what `region=` means, for every collection, tile, page and image.

A region is the world, a UCLG section (by slug), a country (ISO 3166-1 alpha-2) or a first-level
subdivision (ISO 3166-2). `resolve` reads the text against the codes the database knows (pure,
unit-tested); the `*_in` functions give the SQL condition that selects what lies in it.

A territory lies in a subdivision when its boundary is that subdivision, when its boundary is a
municipality of that subdivision, or when its location (its point) lies inside the
subdivision's shape. A member whose polygon crosses a border is therefore found from the
subdivision that holds its boundary's parent and from the one that holds its point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from psycopg import AsyncConnection, sql

from geo_service.domain import ISO2, ISO3166_2
from geo_service.errors import ClientError

RegionKind = Literal["world", "section", "country", "subdivision"]


@dataclass(frozen=True)
class Region:
    kind: RegionKind
    code: str  # "" for the world, a section slug, ISO 3166-1 or ISO 3166-2

    @property
    def country(self) -> str | None:
        """The country a country or subdivision lies in."""
        return self.code[:2] if self.kind in ("country", "subdivision") else None


WORLD = Region("world", "")


@dataclass(frozen=True)
class KnownRegions:
    """Every section slug, country code and ISO 3166-2 code the database holds (and its rights
    theme slugs: the other codes a request may name, read with them)."""

    sections: frozenset[str] = field(default_factory=frozenset)
    countries: frozenset[str] = field(default_factory=frozenset)
    subdivisions: frozenset[str] = field(default_factory=frozenset)
    themes: frozenset[str] = field(default_factory=frozenset)


def resolve(text: str, known: KnownRegions, *, allow_world: bool = False) -> Region:
    """The region `text` names (case-insensitive), or a ClientError saying what is accepted."""
    value = text.strip()
    lowered, upper = value.lower(), value.upper()
    if allow_world and lowered == "world":
        return WORLD
    if lowered in known.sections:
        return Region("section", lowered)
    if ISO2.match(upper) and upper in known.countries:
        return Region("country", upper)
    if ISO3166_2.match(upper) and upper in known.subdivisions:
        return Region("subdivision", upper)
    world = "world, " if allow_world else ""
    raise ClientError(f"unknown region {text!r}: give {world}a UCLG section slug (europe), an "
                      "ISO 3166-1 code (FR) or an ISO 3166-2 code (KR-29)")


_KNOWN: dict[str, KnownRegions] = {}


def knows(version: str) -> bool:
    """Whether the codes of this data version are at hand (known_regions reads no database)."""
    return version in _KNOWN


async def known_regions(conn: AsyncConnection, version: str) -> KnownRegions:
    """The codes, read once per data version."""
    if version not in _KNOWN:
        cursor = await conn.execute(
            "SELECT 'section', slug FROM uclg_sections UNION ALL "
            "SELECT 'country', code FROM boundaries WHERE level = 'country' UNION ALL "
            "SELECT 'subdivision', iso3166_2 FROM boundaries "
            "WHERE level = 'region' AND iso3166_2 IS NOT NULL UNION ALL "
            "SELECT 'theme', slug FROM rights_themes")
        found: dict[str, set[str]] = {"section": set(), "country": set(), "subdivision": set(),
                                      "theme": set()}
        for kind, code in await cursor.fetchall():
            found[kind].add(code)
        _KNOWN.clear()
        _KNOWN[version] = KnownRegions(frozenset(found["section"]), frozenset(found["country"]),
                                       frozenset(found["subdivision"]), frozenset(found["theme"]))
    return _KNOWN[version]


def _section_countries(slug: str) -> sql.Composable:
    return sql.SQL("(SELECT iso3166_1 FROM uclg_section_countries WHERE section_slug = {})"
                   ).format(sql.Literal(slug))


def _subdivision_codes(code: str) -> sql.Composable:
    """The boundary codes of the region-level boundaries with this ISO 3166-2 code."""
    return sql.SQL("(SELECT code FROM boundaries WHERE level = 'region' AND iso3166_2 = {})"
                   ).format(sql.Literal(code))


def territories_in(region: Region) -> sql.Composable:
    """Territory `t` lies in the region (the rule in this module's docstring)."""
    v = sql.Literal(region.code)
    if region.kind == "world":
        return sql.SQL("TRUE")
    if region.kind == "section":
        return sql.SQL("{} = ANY(t.sections)").format(v)
    if region.kind == "country":
        return sql.SQL("t.iso3166_1 = {}").format(v)
    codes = _subdivision_codes(region.code)
    return sql.SQL(
        "((t.boundary_level = 'region' AND t.boundary_code IN {codes}) OR "
        "(t.boundary_level = 'municipality' AND t.boundary_code IN (SELECT code FROM boundaries "
        "WHERE level = 'municipality' AND parent_code IN {codes})) OR "
        "EXISTS (SELECT 1 FROM boundaries r WHERE r.level = 'region' AND r.iso3166_2 = {v} "
        "AND ST_Intersects(r.geom, t.location)))").format(codes=codes, v=v)


def boundaries_in(region: Region, level: str) -> sql.Composable:
    """Boundary `b` of `level` lies in the region: a subdivision's own country, itself, or its
    municipalities."""
    v = sql.Literal(region.code)
    if region.kind == "world":
        return sql.SQL("TRUE")
    if region.kind == "section":
        return sql.SQL("b.iso3166_1 IN {}").format(_section_countries(region.code))
    if region.kind == "country":
        return sql.SQL("b.iso3166_1 = {}").format(v)
    if level == "country":
        return sql.SQL("b.code IN (SELECT iso3166_1 FROM boundaries WHERE level = 'region' "
                       "AND iso3166_2 = {})").format(v)
    if level == "municipality":
        return sql.SQL("b.parent_code IN {}").format(_subdivision_codes(region.code))
    return sql.SQL("b.iso3166_2 = {}").format(v)


def sections_in(region: Region) -> sql.Composable:
    """UCLG section `s` is the region, or holds its country."""
    if region.kind == "world":
        return sql.SQL("TRUE")
    if region.kind == "section":
        return sql.SQL("s.slug = {}").format(sql.Literal(region.code))
    return sql.SQL("EXISTS (SELECT 1 FROM uclg_section_countries c WHERE c.section_slug = s.slug "
                   "AND c.iso3166_1 = {})").format(sql.Literal(region.country))
