"""Downloads of a filtered query: CSV (WKT or lon/lat columns, formula-safe) and GeoPackage."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, list):
        value = " ; ".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(names: list[str], rows: list[tuple[Any, ...]], precision: int) -> str:
    """One row per feature: id, properties, lon, lat (a point inside it) and WKT."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*names, "lon", "lat", "wkt"])
    for row in rows:
        *values, wkt, lon, lat = row
        writer.writerow([*(_cell(v) for v in values),
                         "" if lon is None else round(lon, precision),
                         "" if lat is None else round(lat, precision), wkt or ""])
    return buffer.getvalue()


def to_geopackage(layer: str, names: list[str], rows: list[tuple[Any, ...]]) -> bytes:
    """A GeoPackage with one layer (EPSG:4326) holding the rows."""
    records = [{n: (" ; ".join(map(str, v)) if isinstance(v, list) else v)
                for n, v in zip(names, row[: len(names)], strict=True)} for row in rows]
    geoms = [shapely.from_wkb(row[len(names)]) if row[len(names)] is not None else None
             for row in rows]
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs=4326)
    for column in frame.columns:
        if frame[column].dtype == object and column != "geometry":
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{layer}.gpkg"
        frame.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
        return path.read_bytes()
