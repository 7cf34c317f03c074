"""The shared SQL vocabulary: each domain rule written once, as psycopg.sql fragments.

Every query of the service (features, tiles, map pages, map images, stats) builds on these, so a
rule cannot read one way in the API and another on the map. Aliases are fixed: `t` territories,
`b` the boundary a territory sits on (or a boundary row), `bt` its generalized tier, `i`
initiatives, `s` UCLG sections.
"""

from __future__ import annotations

import re

from psycopg import sql

from geo_service.domain import ENGAGEMENT_ONLY

EMPTY_TEXT_ARRAY = sql.SQL("ARRAY[]::text[]")

# A shown territory: a human rights territory, not an engagement-only row (those took part in
# processes and appear only when asked for).
SHOWN_TERRITORY = sql.SQL("t.commitment_kind <> {}").format(sql.Literal(ENGAGEMENT_ONLY))


def shown_territory(include_engagement: bool = False) -> sql.Composable:
    """SHOWN_TERRITORY, or TRUE when engagement-only rows are asked for too."""
    return sql.SQL("TRUE") if include_engagement else SHOWN_TERRITORY


# When a territory joined: its joining date, else the first day of its year (NULL if neither is
# known). `datetime=` in the API and `year=` on the maps both read it.
TERRITORY_JOINED = sql.SQL("coalesce(t.joined_on, make_date(t.year, 1, 1))")


def joined_by(year: int) -> sql.Composable:
    """The territory had joined by the end of `year`."""
    return sql.SQL("{} <= make_date({}, 12, 31)").format(TERRITORY_JOINED, sql.Literal(int(year)))


# The territory -> boundary join: the boundary a territory was matched (or pinned) to, if any.
TERRITORY_BOUNDARY = sql.SQL(
    "LEFT JOIN boundaries b ON b.level = t.boundary_level AND b.code = t.boundary_code")

# The box around a territory's boundary and its point, stored and indexed (migration 0007):
# the box a spatial test looks members up by.
TERRITORY_BOX = sql.SQL("t.bbox")

# A territory's full shape (its boundary's, else its point) as a scalar subquery: read only for
# the rows that need it, and a query testing it needs no join to the boundaries.
TERRITORY_SHAPE = sql.SQL(
    "coalesce((SELECT bs.geom FROM boundaries bs WHERE bs.level = t.boundary_level "
    "AND bs.code = t.boundary_code), t.location)")


def tier_join(tier: int | None, *, outer: bool = True) -> sql.Composable:
    """Join `bt`, boundary `b`'s shape generalized for `tier` (no rows for tier None when outer)."""
    kind = sql.SQL("LEFT JOIN" if outer else "JOIN")
    value = sql.Literal(tier) if tier is not None else sql.SQL("NULL")
    return sql.SQL("{} boundary_tiers bt ON bt.boundary_id = b.id AND bt.tier = {}").format(
        kind, value)


def tier_of(boundary: sql.Composable, tier: int, column: str = "geom") -> sql.Composable:
    """The tier's shape of one boundary (by id), as a scalar subquery: cheaper than a join when
    few rows have a boundary. `column`: geom (EPSG:4326) or geom_3857 (Web Mercator)."""
    return sql.SQL("(SELECT {} FROM boundary_tiers bt WHERE bt.boundary_id = {} "
                   "AND bt.tier = {})").format(sql.Identifier("bt", column), boundary,
                                               sql.Literal(tier))


_LANG = re.compile(r"^[a-z]{2}$")


def name_in(lang: str, table: str, *fallbacks: sql.Composable) -> sql.Composable:
    """`table`.name_<lang>, falling back in order on `fallbacks` (the languages themselves are
    listed once, in geo_service.render.i18n; the tables carry one column per language)."""
    if not _LANG.match(lang):
        raise ValueError(f"not a language code: {lang!r}")
    column = sql.Identifier(table, f"name_{lang}")
    if not fallbacks:
        return column
    return sql.SQL("coalesce({})").format(sql.SQL(", ").join([column, *fallbacks]))


def boundary_name(lang: str, table: str = "b") -> sql.Composable:
    """A boundary's name in `lang`, else the source's own name."""
    return name_in(lang, table, sql.Identifier(table, "name"))


def territory_name(lang: str) -> sql.Composable:
    """A territory's name: its own (as the roster gives it) in English; in another language its
    boundary's name there when known."""
    own = sql.SQL("t.name")
    return own if lang == "en" else name_in(lang, "b", own)


# A territory's rights themes: the distinct themes of its initiatives, sorted. Every theme list
# is made in one pass (`th`, joined by TERRITORY_THEMES_JOIN) rather than per territory: per row,
# the planner hashed initiatives and scanned initiative_themes for each member (0.1 ms a member:
# 3 of the 5 ms of Europe's 27 territories). PostgreSQL drops the join where `th` is not read
# (one row per territory).
TERRITORY_THEMES_JOIN = sql.SQL(
    "LEFT JOIN (SELECT ti.territory_id, array_agg(DISTINCT it.theme_slug ORDER BY it.theme_slug) "
    "AS slugs FROM initiatives ti JOIN initiative_themes it ON it.initiative_id = ti.id "
    "GROUP BY ti.territory_id) th ON th.territory_id = t.id")
TERRITORY_THEMES = sql.SQL("coalesce(th.slugs, {})").format(EMPTY_TEXT_ARRAY)

# An initiative's own rights themes, sorted.
INITIATIVE_THEMES = sql.SQL(
    "(SELECT coalesce(array_agg(theme_slug ORDER BY theme_slug), {}) "
    "FROM initiative_themes WHERE initiative_id = i.id)").format(EMPTY_TEXT_ARRAY)


def territory_has_theme(theme: str) -> sql.Composable:
    """The territory has an initiative on `theme`."""
    return sql.SQL(
        "EXISTS (SELECT 1 FROM initiatives ti JOIN initiative_themes it ON "
        "it.initiative_id = ti.id WHERE ti.territory_id = t.id AND it.theme_slug = {})"
    ).format(sql.Literal(theme))


def initiative_has_theme(theme: str) -> sql.Composable:
    """The initiative is on `theme`."""
    return sql.SQL("EXISTS (SELECT 1 FROM initiative_themes it WHERE it.initiative_id = i.id "
                   "AND it.theme_slug = {})").format(sql.Literal(theme))


def territory_in_section(section: str) -> sql.Composable:
    return sql.SQL("{} = ANY(t.sections)").format(sql.Literal(section))


def equals(column: sql.Composable, value: object) -> sql.Composable:
    return sql.SQL("{} = {}").format(column, sql.Literal(value))


def conjunction(conditions: list[sql.Composable]) -> sql.Composable:
    """AND of the conditions (TRUE when there are none)."""
    if not conditions:
        return sql.SQL("TRUE")
    return sql.SQL(" AND ").join(conditions)


def short_credit(sources: str, fallback: str) -> sql.Composable:
    """A load record's short credit (its manifest's `credit`), else its title, else `fallback`;
    `sources` is the data_sources alias."""
    return sql.SQL("coalesce({s}.details->'options'->'manifest'->>'credit', {s}.title, {f})"
                   ).format(s=sql.Identifier(sources), f=sql.SQL(fallback))
