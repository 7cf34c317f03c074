"""Turning a read layer into validated boundary rows: field mapping, geometry checks and repair,
MultiPolygons, label points and coverage-preserving generalized tiers."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo_service.domain import ISO3166_2, TIERS
from geo_service.errors import LoadError, Problem
from geo_service.load.read import RawLayer, simplify_each
from geo_service.manifests import FieldMap

TEXT_FIELDS = (
    "code", "name", "name_en", "name_fr", "name_es", "name_local",
    "iso3166_1", "iso3166_2", "national_code", "wikidata_id", "parent_code",
)
_LANG = re.compile(r"^[a-z]{2,3}$")
_MISSING = {"", "-99"}  # no-data markers in Natural Earth and friends


@dataclass
class BoundaryRows:
    """Validated boundaries ready to store, column by column."""

    level: str
    text: dict[str, list[str | None]]
    names: list[dict[str, str]]
    properties: list[dict[str, Any]]
    geoms: np.ndarray
    labels: np.ndarray
    tiers: dict[int, np.ndarray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.geoms)


def clean(value: Any) -> str | None:
    """A source attribute as text, or None when it is a no-data marker."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return None if text.lower() in _MISSING else text


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _polygonal(geom: BaseGeometry) -> MultiPolygon:
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    if not parts:
        for sub in shapely.get_parts(geom):  # a GeometryCollection nested in a collection
            if not isinstance(sub, Polygon):
                parts += [p for p in shapely.get_parts(sub) if isinstance(p, Polygon)]
    return MultiPolygon(parts)


def check_geometries(layer: RawLayer, strict: bool) -> tuple[np.ndarray, list[Problem], list[str]]:
    """Empty, non-polygonal, out-of-range and invalid shapes: repaired or reported per feature."""
    problems: list[Problem] = []
    notes: list[str] = []
    out = np.empty(len(layer.geoms), dtype=object)
    if strict:
        for index, what in layer.repaired.items():
            problems.append(Problem(layer.file, index + 1, "geometry", f"invalid: {what}"))
    for index, geom in enumerate(layer.geoms):
        feature = index + 1
        if geom is None or geom.is_empty:
            problems.append(Problem(layer.file, feature, "geometry", "empty or missing geometry"))
            continue
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append(Problem(layer.file, feature, "geometry",
                                    f"is a {geom.geom_type}; boundaries must be polygons"))
            continue
        minx, miny, maxx, maxy = geom.bounds
        if not all(map(math.isfinite, (minx, miny, maxx, maxy))) or minx < -180.000001 \
                or maxx > 180.000001 or miny < -90.000001 or maxy > 90.000001:
            problems.append(Problem(
                layer.file, feature, "geometry",
                f"coordinates out of longitude/latitude range (bounds {minx:.6g}, {miny:.6g}, "
                f"{maxx:.6g}, {maxy:.6g}): is the file's CRS declared?"))
            continue
        if not geom.is_valid:
            reason = shapely.is_valid_reason(geom)
            if strict:
                problems.append(Problem(layer.file, feature, "geometry", f"invalid: {reason}"))
                continue
            fixed = _polygonal(shapely.make_valid(geom))
            if fixed.is_empty:
                problems.append(Problem(layer.file, feature, "geometry",
                                        f"invalid ({reason}) and not repairable"))
                continue
            notes.append(f"{layer.file}, feature {feature}: repaired invalid geometry ({reason})")
            geom = fixed
        out[index] = geom if isinstance(geom, MultiPolygon) else MultiPolygon([geom])
    notes += [f"{layer.file}, feature {i + 1}: {what}" for i, what in layer.repaired.items()
              if not strict]
    return out, problems, notes


def label_points(geoms: np.ndarray) -> np.ndarray:
    """A point inside each shape, on its largest part (a label never floats at sea)."""
    labels = np.empty(len(geoms), dtype=object)
    for index, geom in enumerate(geoms):
        parts = shapely.get_parts(geom)
        largest = parts[int(np.argmax(shapely.area(parts)))] if len(parts) > 1 else geom
        labels[index] = shapely.point_on_surface(largest)
    return labels


def drop_specks(geoms: np.ndarray, min_area: float) -> np.ndarray:
    """Each shape without the parts and holes smaller than `min_area` (square degrees): islets and
    slivers nobody sees at a tier's scale, which still cost their points (Korea's country, the
    union of 253 municipalities, kept 8,993 sliver holes and 52,013 points in its coarsest
    tier). A shape keeps at least its largest part."""
    out = geoms.copy()
    present = np.nonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))[0]
    if not len(present):
        return out
    parts, part_of = shapely.get_parts(geoms[present], return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    shell = np.r_[True, ring_of[1:] != ring_of[:-1]]  # each part's first ring
    kept_ring = shell | (shapely.area(shapely.polygons(rings)) >= min_area)
    parts = shapely.polygons(rings[kept_ring], indices=ring_of[kept_ring])
    area = shapely.area(parts)
    kept = area >= min_area
    order = np.lexsort((-area, part_of))  # by shape, largest part first
    kept[order[np.r_[True, part_of[order][1:] != part_of[order][:-1]]]] = True
    out[present] = shapely.multipolygons(parts[kept], indices=part_of[kept])
    return out


def generalize(geoms: np.ndarray, coverage: bool = True) -> dict[int, np.ndarray]:
    """Coverage-preserving simplification per tier: neighbours keep shared edges. Shapes that
    do not tile the land (`coverage` False: US places) are simplified each on its own
    (`read.simplify_each`), which is also much faster.

    Tiers cascade from fine to coarse: each simplifies the finer tier's output (itself a clean
    coverage), which is much faster than starting from full resolution every time. Each tier
    drops the parts and holes smaller than its tolerance squared.
    """
    tiers: dict[int, np.ndarray] = {}
    source = geoms
    for tier, (tolerance, _) in sorted(TIERS.items(), key=lambda item: item[1][0]):
        simple = (shapely.coverage_simplify(source, tolerance) if coverage
                  else simplify_each(source, tolerance))
        bad = ~shapely.is_valid(simple) | shapely.is_empty(simple)
        if bad.any():
            simple[bad] = [
                _polygonal(shapely.make_valid(g)) if g is not None and not g.is_empty else None
                for g in simple[bad]
            ]
        result = np.array([g if isinstance(g, MultiPolygon) else _polygonal(g)
                           for g in simple], dtype=object)
        empty = shapely.is_empty(result)
        result[empty] = source[empty]  # a shape smaller than the tolerance keeps the finer one
        tiers[tier] = source = drop_specks(result, tolerance ** 2)
    return dict(sorted(tiers.items()))


def _column(layer: RawLayer, spec: str | None, n: int) -> list[str | None]:
    """Values of a mapped field; `a|b` takes b where a is empty."""
    if spec is None:
        return [None] * n
    columns = [layer.columns[f] for f in spec.split("|")]
    return [next((c for c in (clean(col[i]) for col in columns) if c), None) for i in range(n)]


def map_fields(layer: RawLayer, fields: FieldMap, level: str,
               country: str | None) -> tuple[dict[str, list[str | None]], list[Problem]]:
    """Apply the field mapping; every missing field and empty required value is a problem."""
    problems: list[Problem] = []
    available = list(layer.columns)
    mapping = fields.model_dump(exclude={"names_prefix"}, exclude_none=True)
    for role in ("code", "name"):
        if role not in mapping:
            problems.append(Problem(layer.file, None, role,
                                    f"no {role} field given (use --{role}-field); fields are: "
                                    f"{', '.join(available)}"))
    for role, spec in mapping.items():
        for source_field in spec.split("|"):
            if source_field not in layer.columns:
                problems.append(Problem(layer.file, None, source_field,
                                        f"{role} field {source_field!r} not found; fields are: "
                                        f"{', '.join(available) or '(none)'}"))
    if problems:
        raise LoadError(problems)
    n = len(layer)
    text = {role: _column(layer, mapping.get(role), n) for role in TEXT_FIELDS}
    if country:
        text["iso3166_1"] = [country.upper()] * n
    for index in range(n):
        for role in ("code", "name"):
            if not text[role][index]:
                problems.append(Problem(layer.file, index + 1, mapping[role], f"{role} is empty"))
    if level == "municipality":  # codes are national: prefix the country so levels stay unique
        text["code"] = [
            f"{iso}-{code}" if iso and code and not code.startswith(f"{iso}-") else code
            for iso, code in zip(text["iso3166_1"], text["code"], strict=True)
        ]
    # Only well-formed ISO 3166-2 codes are kept as such (Natural Earth marks 188 units without
    # one with placeholders like "AW-X01~"); the source's value stays in `properties`.
    text["iso3166_2"] = [c if c and ISO3166_2.match(c) else None for c in text["iso3166_2"]]
    if level == "region":
        text["parent_code"] = [p or iso for p, iso in
                               zip(text["parent_code"], text["iso3166_1"], strict=True)]
    seen: dict[str, list[int]] = defaultdict(list)
    for index, code in enumerate(text["code"]):
        if code:
            seen[code].append(index + 1)
    for code, features in seen.items():
        if len(features) > 1:
            problems.append(Problem(layer.file, features[0], mapping["code"],
                                    f"duplicate code {code!r} (features "
                                    f"{', '.join(map(str, features))}); codes must be unique"))
    return text, problems


def prepare(layer: RawLayer, fields: FieldMap, level: str, *, country: str | None = None,
            strict: bool = False) -> BoundaryRows:
    """Validate everything first; raise LoadError with every problem, or return rows to store."""
    text, problems = map_fields(layer, fields, level, country)
    geoms, geometry_problems, notes = check_geometries(layer, strict)
    problems += geometry_problems
    if problems:
        raise LoadError(problems)
    prefix = fields.names_prefix
    names: list[dict[str, str]] = []
    properties: list[dict[str, Any]] = []
    keys = list(layer.columns)
    for index in range(len(layer)):
        record = {k: _jsonable(layer.columns[k][index]) for k in keys}
        properties.append(record)
        found: dict[str, str] = {}
        if prefix:
            for key in keys:
                lang = key[len(prefix):]
                if key.startswith(prefix) and _LANG.match(lang) and clean(record[key]):
                    found[lang] = str(record[key]).strip()
        names.append(found)
    return BoundaryRows(
        level=level, text=text, names=names, properties=properties, geoms=geoms,
        labels=label_points(geoms), warnings=layer.warnings + notes,
    )
