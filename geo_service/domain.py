"""Facts of the domain that every layer shares: the generalized geometry tiers, code formats, and
which territories are shown. Plain constants; SQL built from them lives in geo_service.query."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pycountry

# tier -> (tolerance in degrees, highest web-map zoom it serves). A pixel at zoom z spans about
# 360 / (256 * 2**z) degrees, so each tolerance is about one pixel at its highest zoom.
TIERS: dict[int, tuple[float, int]] = {1: (0.1, 3), 2: (0.025, 5), 3: (0.006, 7)}

ISO2 = re.compile(r"^[A-Z]{2}$")
ISO3166_2 = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")

# codes that look like ISO 3166-1 but are not: what the user most likely meant
NOT_ISO3166_1 = {"UK": "GB", "EL": "GR"}


def valid_country(code: str) -> bool:
    """An ISO 3166-1 alpha-2 code (upper case), or XK (Kosovo, user-assigned but in common use)."""
    return code == "XK" or pycountry.countries.get(alpha_2=code) is not None


# took part in processes, not a human rights territory: hidden unless asked for
ENGAGEMENT_ONLY = "engagement-only"


def tier_for_zoom(zoom: int) -> int | None:
    """The coarsest pre-generalized tier meant for this zoom, or None for full resolution."""
    for tier, (_, max_zoom) in sorted(TIERS.items(), key=lambda item: item[1][1]):
        if zoom <= max_zoom:
            return tier
    return None


def coarser(tier: int | None) -> int | None:
    """The next coarser tier (None is full resolution); 1 is the coarsest."""
    order = sorted(TIERS, key=lambda t: TIERS[t][0])  # finest first
    if tier is None:
        return order[0]
    index = order.index(tier)
    return order[index + 1] if index + 1 < len(order) else tier


@dataclass(frozen=True)
class Credit:
    """A boundary source to credit: its short name (a manifest's `credit`, e.g. "IGN España"),
    its full licence and attribution, the level of its boundaries, and for the /about page
    its title, version and origin."""

    short: str
    licence: str | None
    attribution: str | None
    level: str
    title: str | None = None
    version: str | None = None
    origin: str | None = None
