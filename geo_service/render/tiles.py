"""Where tiles come from: rendered live (one statement, coarser tier when too large), or read from
the prebuilt PMTiles archives of the `map` tileset, one per language, under `tiles/`; and the
MVT bytes of a tile cut by layer without decoding.

An archive records the data version it was built from and is used only while that is still the
current version, so a load or import makes the server fall back to live rendering at once (no
restart); `geo-service tiles build` makes it current again. A new archive file is picked up by
the running server on the next request after the version changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pmtiles.tile import (
    Compression,
    TileType,
    deserialize_directory,
    deserialize_header,
    zxy_to_tileid,
)
from pmtiles.writer import Writer
from psycopg import AsyncConnection

from geo_service.domain import coarser, tier_for_zoom
from geo_service.query import tiles
from geo_service.query.pages import credits
from geo_service.query.service import READ_OPTIONS, data_version, database_identity
from geo_service.render.credits import full as full_credit
from geo_service.render.i18n import LANGS

DEFAULT_ARCHIVE_ZOOM = 6


# ------------------------------------------------------------------------------- live rendering
async def render(conn: AsyncConnection, tileset: str, lang: str, z: int, x: int, y: int
                 ) -> bytes:
    """The tile's MVT bytes (b'' when empty)."""
    return (await render_langs(conn, tileset, (lang,), z, x, y))[lang]


async def render_langs(conn: AsyncConnection, tileset: str, langs: tuple[str, ...], z: int,
                       x: int, y: int) -> dict[str, bytes]:
    """The tile in each language, from one statement. A tile over MAX_TILE_BYTES is rendered
    again from the next coarser tier; at the coarsest tier, whole layers are kept in order
    (territories first) while they fit."""
    tier = tier_for_zoom(z)
    out: dict[str, bytes] = {}
    while langs:
        found = await tiles.tile(conn, tileset, langs, z, x, y, tier)
        last = coarser(tier) == tier
        for lang, data in zip(langs, found, strict=True):
            if len(data) <= tiles.MAX_TILE_BYTES or last:
                out[lang] = trim(data) if len(data) > tiles.MAX_TILE_BYTES else data
        langs = tuple(lang for lang in langs if lang not in out)
        tier = coarser(tier)
    return out


# ------------------------------------------------------------------------------------ archives
def archive_path(directory: Path, lang: str) -> Path:
    return directory / f"map-{lang}.pmtiles"


@dataclass
class Archive:
    """One PMTiles file, memory-mapped, with its directory read once into a dict."""

    path: Path
    stamp: tuple[int, int]  # (inode, mtime_ns) of the file opened
    database: str
    version: str
    max_zoom: int
    metadata: dict
    _index: dict[int, tuple[int, int]] = field(repr=False)
    _map: mmap.mmap = field(repr=False)

    @classmethod
    def open(cls, path: Path) -> Archive:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            stat = os.fstat(f.fileno())
        header = deserialize_header(mapped[:127])
        raw = mapped[header["metadata_offset"]:header["metadata_offset"] + header["metadata_length"]]
        if header["internal_compression"] == Compression.GZIP:
            raw = gzip.decompress(raw)
        metadata = json.loads(raw)
        index: dict[int, tuple[int, int]] = {}

        def walk(offset: int, length: int) -> None:
            for entry in deserialize_directory(mapped[offset:offset + length]):  # gunzips
                if entry.run_length == 0:
                    walk(header["leaf_directory_offset"] + entry.offset, entry.length)
                else:
                    for i in range(entry.run_length):
                        index[entry.tile_id + i] = (header["tile_data_offset"] + entry.offset,
                                                    entry.length)

        walk(header["root_offset"], header["root_length"])
        if metadata.get("renderer_version") != tiles.RENDERER_VERSION:
            raise ValueError(f"{path}: made by tile renderer {metadata.get('renderer_version')}, "
                             f"this is {tiles.RENDERER_VERSION}")
        return cls(path, (stat.st_ino, stat.st_mtime_ns), str(metadata["database"]),
                   str(metadata["data_version"]),
                   int(metadata["archive_max_zoom"]), metadata, index, mapped)

    def get(self, z: int, x: int, y: int) -> bytes:
        """The gzipped tile, or b'' for a tile the build found empty."""
        found = self._index.get(zxy_to_tileid(z, x, y))
        if found is None:
            return b""
        offset, length = found
        return self._map[offset:offset + length]

    def __len__(self) -> int:
        return len(self._index)


class Archives:
    """The per-language archives, used only while their data version is the current one."""

    def __init__(self, directory: Path, database: str) -> None:
        self.directory = directory
        self.database = database
        self._open: dict[str, Archive] = {}
        self._checked: dict[str, str] = {}  # lang -> the version last checked against the files

    def _stamp(self, path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def current(self, lang: str, version: str) -> Archive | None:
        archive = self._open.get(lang)
        if archive is not None and archive.version == version and archive.database == self.database:
            return archive
        if self._checked.get(lang) == version:
            return None  # already looked at the files for this version: none is current
        self._checked[lang] = version
        path = archive_path(self.directory, lang)
        stamp = self._stamp(path)
        if stamp is None:
            self._open.pop(lang, None)
            return None
        if archive is None or archive.stamp != stamp:
            try:
                archive = Archive.open(path)
            except (OSError, ValueError, KeyError):
                return None
            self._open[lang] = archive
        return archive if archive.version == version and archive.database == self.database else None


# --------------------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    version: str
    max_zoom: int
    tiles: int  # non-empty map tiles per language
    seconds: float
    largest: int  # bytes, uncompressed
    sizes: dict[str, int]  # lang -> archive bytes
    skipped: bool = False


def _all_tiles(max_zoom: int) -> list[tuple[int, int, int]]:
    return [(z, x, y) for z in range(max_zoom + 1) for x in range(1 << z) for y in range(1 << z)]


async def build(dsn: str, directory: Path, max_zoom: int = DEFAULT_ARCHIVE_ZOOM, workers: int = 3,
                force: bool = False, progress: Callable[[int, int], None] | None = None
                ) -> BuildResult:
    """Render every `map` tile of zooms 0..max_zoom in every language into PMTiles archives.
    A no-op when the archives already hold the current data version at that zoom."""
    began = time.perf_counter()
    async with await AsyncConnection.connect(dsn, autocommit=True, options=READ_OPTIONS) as conn:
        version = await data_version(conn)
        database = await database_identity(conn)
        attribution = full_credit(await credits(conn))
    if not force:
        current = [_existing(directory, lang) for lang in LANGS]
        if all(a is not None and (a.database, a.version) == (database, version)
               and a.max_zoom >= max_zoom for a in current):
            return BuildResult(version, max_zoom, len(current[0] or ()), 0.0, 0, {}, skipped=True)
    jobs = _all_tiles(max_zoom)
    found: dict[str, dict[int, bytes]] = {lang: {} for lang in LANGS}
    largest = [0]
    done = [0]
    queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        async with await AsyncConnection.connect(dsn, autocommit=True, options=READ_OPTIONS) as conn:
            while not queue.empty():
                z, x, y = queue.get_nowait()
                rendered = await render_langs(conn, "map", LANGS, z, x, y)
                for lang, data in rendered.items():
                    if data:
                        largest[0] = max(largest[0], len(data))
                        found[lang][zxy_to_tileid(z, x, y)] = gzip.compress(data, 6, mtime=0)
                done[0] += 1
                if progress and done[0] % 50 == 0:
                    progress(done[0], len(jobs))

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    if progress:
        progress(len(jobs), len(jobs))
    if not found["en"]:
        raise ValueError("no data to tile: load boundaries or members first")
    directory.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for lang in LANGS:
        path = archive_path(directory, lang)
        _write(path, found[lang], database, version, max_zoom, lang, attribution)
        sizes[lang] = path.stat().st_size
    return BuildResult(version, max_zoom, len(found["en"]), time.perf_counter() - began,
                       largest[0], sizes)


def _existing(directory: Path, lang: str) -> Archive | None:
    try:
        return Archive.open(archive_path(directory, lang))
    except (OSError, ValueError, KeyError):
        return None


def _write(path: Path, found: dict[int, bytes], database: str, version: str, max_zoom: int,
           lang: str, attribution: str) -> None:
    """Write an archive beside its final path, then move it in place (readers never see half)."""
    temporary = path.with_suffix(".pmtiles.tmp")
    with open(temporary, "wb") as f:
        writer = Writer(f)
        for tile_id in sorted(found):
            writer.write_tile(tile_id, found[tile_id])
        lo, la = tiles.WORLD[0], tiles.WORLD[1]
        hi, ha = tiles.WORLD[2], tiles.WORLD[3]
        header = {
            "tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
            "min_lon_e7": int(lo * 1e7), "min_lat_e7": int(la * 1e7),
            "max_lon_e7": int(hi * 1e7), "max_lat_e7": int(ha * 1e7),
            "center_zoom": 1, "center_lon_e7": 0, "center_lat_e7": 200_000_000,
        }
        metadata = {
            "name": "map", "description": tiles.TILESET_TITLES["map"], "language": lang,
            "database": database, "data_version": version, "archive_max_zoom": max_zoom,
            "renderer_version": tiles.RENDERER_VERSION,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "vector_layers": tiles.vector_layers("map"),
            "attribution": attribution,
        }
        writer.finalize(header, metadata)
    os.replace(temporary, path)


# ------------------------------------------------------------------ MVT bytes without decoding
TRIM_ORDER = ("territories", "countries", "regions", "municipalities")


def trim(tile: bytes, limit: int = tiles.MAX_TILE_BYTES) -> bytes:
    """Keep whole layers, territories first, while the tile stays within `limit` bytes."""
    kept = b""
    for name in TRIM_ORDER:
        part = layer_of(tile, name)
        if part and len(kept) + len(part) <= limit:
            kept += part
    return kept


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int, int]]:
    """Top-level protobuf fields: (number, wire type, start, end) of each, start..end = whole."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        out.append((number, wire, start, pos))
    return out


def layer_of(tile: bytes, name: str) -> bytes:
    """The single-layer tile `name` cut out of a multi-layer tile (b'' when absent)."""
    wanted = name.encode()
    for number, wire, start, end in _fields(tile):
        if number != 3 or wire != 2:
            continue
        _, body_start = _varint(tile, _varint(tile, start)[1])
        body = tile[body_start:end]
        for n, w, s, _ in _fields(body):
            if n == 1 and w == 2:
                length, value_start = _varint(body, _varint(body, s)[1])
                if body[value_start:value_start + length] == wanted:
                    return tile[start:end]
                break
    return b""
