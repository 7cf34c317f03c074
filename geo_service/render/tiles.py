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
import logging
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmtiles.tile import (
    Compression,
    TileType,
    deserialize_directory,
    deserialize_header,
    zxy_to_tileid,
)
from pmtiles.writer import Writer
from psycopg import AsyncConnection, sql

from geo_service.domain import coarser, tier_for_zoom
from geo_service.query import tiles
from geo_service.query import vocabulary as v
from geo_service.query.pages import credits
from geo_service.query.service import READ_OPTIONS, data_version, database_identity
from geo_service.render.credits import full as full_credit
from geo_service.render.i18n import LANGS

DEFAULT_ARCHIVE_ZOOM = 6
logger = logging.getLogger("geo_service")


# ------------------------------------------------------------------------------- live rendering
async def render(conn: AsyncConnection, tileset: str, lang: str, z: int, x: int, y: int
                 ) -> bytes:
    """The tile's MVT bytes (b'' when empty)."""
    return (await render_langs(conn, tileset, (lang,), z, x, y))[lang]


async def render_versioned(conn: AsyncConnection, tileset: str, lang: str, z: int, x: int, y: int
                           ) -> tuple[bytes, str]:
    """The tile's MVT bytes and the data version they were read at: one statement for both
    (one round trip less than reading the version first) unless a coarser tier is needed."""
    found, version = await _render(conn, tileset, (lang,), z, x, y, versioned=True)
    assert version is not None
    return found[lang], version


async def render_langs(conn: AsyncConnection, tileset: str, langs: tuple[str, ...], z: int,
                       x: int, y: int) -> dict[str, bytes]:
    """The tile in each language, from one statement. A tile over MAX_TILE_BYTES is rendered
    again from the next coarser tier; at the coarsest tier, whole layers are kept in order
    (territories first) while they fit."""
    return (await _render(conn, tileset, langs, z, x, y, versioned=False))[0]


async def _render(conn: AsyncConnection, tileset: str, langs: tuple[str, ...], z: int, x: int,
                  y: int, versioned: bool) -> tuple[dict[str, bytes], str | None]:
    """render_langs, and (`versioned`) the data version read by the statement that rendered the
    last language's tile: with one language, the version of the bytes returned."""
    tier = tier_for_zoom(z)
    out: dict[str, bytes] = {}
    version = None
    while langs:
        found, version = await tiles.tile(conn, tileset, langs, z, x, y, tier, versioned)
        last = coarser(tier) == tier
        for lang, data in zip(langs, found, strict=True):
            if len(data) <= tiles.MAX_TILE_BYTES or last:
                out[lang] = trim(data) if len(data) > tiles.MAX_TILE_BYTES else data
        langs = tuple(lang for lang in langs if lang not in out)
        tier = coarser(tier)
    return out, version


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
        end = max(header["root_offset"] + header["root_length"],
                  header["metadata_offset"] + header["metadata_length"],
                  header["leaf_directory_offset"] + header["leaf_directory_length"],
                  header["tile_data_offset"] + header["tile_data_length"])
        if len(mapped) < end:  # cut short (a copy interrupted): its last tiles would read as empty
            raise ValueError(f"{path}: {len(mapped):,} bytes, its header says {end:,}")
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

    def tile_ids(self) -> list[int]:
        """The ids of the non-empty tiles it holds."""
        return list(self._index)

    def stored(self, tile_id: int) -> bytes:
        """A tile's bytes as stored (gzipped), by its id."""
        offset, length = self._index[tile_id]
        return self._map[offset:offset + length]


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

    def present(self, lang: str) -> bool:
        """Whether a file is where the archive of `lang` would be (current or not)."""
        return self._stamp(archive_path(self.directory, lang)) is not None

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
            archive = _readable(path)
            if archive is None:
                self._open.pop(lang, None)
                return None
            self._open[lang] = archive
        return archive if archive.version == version and archive.database == self.database else None


# --------------------------------------------------------------------------------------- build
# Bump when what an archive's fingerprints cover, or how, changes: older archives then get a
# full build.
FINGERPRINT_SCHEME = 1
# Tile units a member's box is widened by when the tiles it meets are found: the tiles' own
# test (`&&` on float4-rounded boxes) may reach a few millionths of a tile past the exact one.
_SLACK = 0.01


@dataclass
class BuildResult:
    version: str
    max_zoom: int
    tiles: int  # non-empty map tiles per language
    seconds: float
    largest: int  # bytes, uncompressed, of the tiles rendered now
    sizes: dict[str, int]  # lang -> archive bytes
    skipped: bool = False
    rendered: int = 0  # grid tiles rendered now; the others' bytes were kept from the old archives
    grid: int = 0  # tiles of zooms 0..max_zoom
    base: str | None = None  # data version of the archives an incremental build kept tiles from
    full_because: str = ""  # why every tile was rendered ("" for an incremental build)


def _all_tiles(max_zoom: int) -> list[tuple[int, int, int]]:
    return [(z, x, y) for z in range(max_zoom + 1) for x in range(1 << z) for y in range(1 << z)]


async def build(dsn: str, directory: Path, max_zoom: int = DEFAULT_ARCHIVE_ZOOM, workers: int = 3,
                force: bool = False, progress: Callable[[int, int], None] | None = None
                ) -> BuildResult:
    """Render every `map` tile of zooms 0..max_zoom in every language into PMTiles archives.
    A no-op when the archives already hold the current data version at that zoom.

    Incremental unless `force`: where the archives on disk were built from this database, to
    this zoom, by this renderer, from the same boundaries (`boundaries_fingerprint`), only the
    tiles whose members changed (`member_fingerprints`) are rendered, and every other tile's bytes
    are copied from the old archive: the result equals a full build byte for byte. All
    connections read one snapshot, so an archive holds exactly the data version it records even
    when a writer commits during the build."""
    began = time.perf_counter()
    async with await AsyncConnection.connect(dsn, autocommit=True, options=READ_OPTIONS) as conn:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = str(await _one(conn, "SELECT pg_export_snapshot()"))
        version = await data_version(conn)
        database = await database_identity(conn)
        old = [_existing(directory, lang) for lang in LANGS]
        if not force and all(a is not None and (a.database, a.version) == (database, version)
                              and a.max_zoom >= max_zoom for a in old):
            return BuildResult(version, max_zoom, len(old[0] or ()), 0.0, 0, {}, skipped=True)
        attribution = full_credit(await credits(conn))
        state = {"scheme": FINGERPRINT_SCHEME, "boundaries": await boundaries_fingerprint(conn),
                 "tiles": {str(k): h for k, h in (await member_fingerprints(conn, max_zoom)).items()}}
        grid = _all_tiles(max_zoom)
        why = "--force" if force else _not_incremental(old, database, max_zoom, state)
        jobs = grid if why else [t for t in grid if _changed(old, state, zxy_to_tileid(*t))]
        found, largest = await _render_all(dsn, snapshot, jobs, workers, progress)
        await conn.execute("COMMIT")
    base = None
    if not why:  # the other tiles as they are: same members, same boundaries, same renderer
        rendered = {zxy_to_tileid(*t) for t in jobs}
        for lang, archive in zip(LANGS, old, strict=True):
            assert archive is not None
            for tile_id in archive.tile_ids():
                if tile_id not in rendered:
                    found[lang][tile_id] = archive.stored(tile_id)
        base = ", ".join(sorted({a.version for a in old if a is not None}))
    if not found["en"]:
        raise ValueError("no data to tile: load boundaries or members first")
    directory.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for lang in LANGS:
        path = archive_path(directory, lang)
        _write(path, found[lang], database, version, max_zoom, lang, attribution, state)
        sizes[lang] = path.stat().st_size
    return BuildResult(version, max_zoom, len(found["en"]), time.perf_counter() - began, largest,
                       sizes, rendered=len(jobs), grid=len(grid), base=base, full_because=why)


async def _one(conn: AsyncConnection, statement: str) -> Any:
    row = await (await conn.execute(statement)).fetchone()
    assert row is not None
    return row[0]


async def _render_all(dsn: str, snapshot: str, jobs: list[tuple[int, int, int]], workers: int,
                      progress: Callable[[int, int], None] | None
                      ) -> tuple[dict[str, dict[int, bytes]], int]:
    """`jobs` rendered in every language (gzipped, empty tiles left out) by `workers`
    connections reading `snapshot`; and the largest tile's uncompressed bytes."""
    found: dict[str, dict[int, bytes]] = {lang: {} for lang in LANGS}
    largest = 0
    done = 0
    queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        nonlocal largest, done
        async with await AsyncConnection.connect(dsn, autocommit=True, options=READ_OPTIONS) as conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            while not queue.empty():
                z, x, y = queue.get_nowait()
                rendered = await render_langs(conn, "map", LANGS, z, x, y)
                for lang, data in rendered.items():
                    if data:
                        largest = max(largest, len(data))
                        found[lang][zxy_to_tileid(z, x, y)] = gzip.compress(data, 6, mtime=0)
                done += 1
                if progress and done % 50 == 0:
                    progress(done, len(jobs))
            await conn.execute("COMMIT")

    if jobs:
        await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(jobs))))))
    if progress:
        progress(len(jobs), len(jobs))
    return found, largest


def _not_incremental(old: list[Archive | None], database: str, max_zoom: int,
                     state: dict[str, Any]) -> str:
    """Why the archives on disk cannot be the base of an incremental build ("" when they can)."""
    for lang, archive in zip(LANGS, old, strict=True):
        if archive is None:
            return f"no readable archive for {lang}"
        if archive.database != database:
            return "the archives were built from another database"
        if archive.max_zoom != max_zoom:
            return f"the archives go to z{archive.max_zoom}"
        kept = archive.metadata.get("fingerprints")
        if not isinstance(kept, dict) or kept.get("scheme") != state["scheme"] \
                or not isinstance(kept.get("tiles"), dict):
            return "the archives hold no member fingerprints"
        if kept.get("boundaries") != state["boundaries"]:
            return "the boundaries changed"
    return ""


def _changed(old: list[Archive | None], state: dict[str, Any], tile_id: int) -> bool:
    """Whether the tile's members differ from those of any language's old archive."""
    new = state["tiles"].get(str(tile_id))
    return any(a is None or a.metadata["fingerprints"]["tiles"].get(str(tile_id)) != new
               for a in old)


async def boundaries_fingerprint(conn: AsyncConnection) -> str:
    """A digest that changes whenever any boundary, generalized tier, tier setting or data source
    is written or removed (a load, a removal, a region redraw): every boundary layer of a tile,
    and a member's drawn shape, come from these. Rows are identified by their key and `xmin`,
    the transaction that wrote them (each update writes a new row version), so 270,000 rows with
    190 MB of shapes are fingerprinted without reading a shape."""
    return str(await _one(conn, """
        SELECT md5(concat_ws('|',
          (SELECT md5(string_agg(id::text || ':' || xmin::text, ',' ORDER BY id))
             FROM boundaries),
          (SELECT md5(string_agg(boundary_id::text || ':' || tier::text || ':' || xmin::text,
                                 ',' ORDER BY boundary_id, tier)) FROM boundary_tiers),
          (SELECT md5(string_agg(g::text, ',' ORDER BY g.tier)) FROM generalization_tiers g),
          (SELECT md5(string_agg(d::text, ',' ORDER BY d.id)) FROM data_sources d)))"""))


def member_fingerprints_sql() -> sql.Composed:
    """Per tile of zooms 0..%(max_zoom)s, a digest of the shown members that may appear in it:
    every value the territories layer draws of each (its attributes, its names, its point, its
    box and which boundary it is drawn with), for every member whose box meets the tile with its
    buffer, found by the tile grid's formulas (a little wider, never narrower: see _SLACK).
    Tiles no member reaches are left out. Boundaries themselves are `boundaries_fingerprint`'s."""
    layer = tiles.LAYERS["territories"]
    assert layer.point is not None
    values = [expression for _, expression in layer.columns if expression is not None]
    values += [layer.name_sql(lang) for lang in LANGS]
    values += [sql.SQL("{}::text").format(layer.point), sql.SQL("{}::text").format(v.TERRITORY_BOX),
               sql.SQL("b.id")]
    box = v.TERRITORY_BOX
    return sql.SQL("""
        WITH m AS (
          SELECT t.id, md5(ROW({values})::text) AS digest,
                 (ST_XMin({box}) + 180) / 360 AS x0, (ST_XMax({box}) + 180) / 360 AS x1,
                 (1 - asinh(tan(radians(greatest(least(ST_YMax({box}), 89.9999), -89.9999))))
                  / pi()) / 2 AS y0,
                 (1 - asinh(tan(radians(greatest(least(ST_YMin({box}), 89.9999), -89.9999))))
                  / pi()) / 2 AS y1
          FROM {source}),
        g AS (SELECT m.id, m.digest, z, 2 ^ z::float8 AS n, x0, x1, y0, y1
              FROM m, generate_series(0, %(max_zoom)s) z)
        SELECT g.z, x, y, md5(string_agg(g.digest, '' ORDER BY g.id))
        FROM g,
          generate_series(greatest(0, ceil(x0 * n - 1 - {m} - {s}))::int,
                          least(n - 1, floor(x1 * n + {m} + {s}))::int) x,
          generate_series(greatest(0, ceil(y0 * n - 1 - {m} - {s}))::int,
                          least(n - 1, floor(y1 * n + {m} + {s}))::int) y
        GROUP BY g.z, x, y""").format(
        values=sql.SQL(", ").join(values), box=box, source=layer.source(None),
        m=sql.Literal(tiles.BUFFER / tiles.EXTENT), s=sql.Literal(_SLACK))


async def member_fingerprints(conn: AsyncConnection, max_zoom: int) -> dict[int, str]:
    """member_fingerprints_sql's digests by PMTiles tile id."""
    cursor = await conn.execute(member_fingerprints_sql(), {"max_zoom": max_zoom})
    return {zxy_to_tileid(z, x, y): digest for z, x, y, digest in await cursor.fetchall()}


def _readable(path: Path) -> Archive | None:
    """The archive at `path`; None where there is none, or where it cannot be used (junk,
    truncated, another renderer's: logged), so that tiles are drawn live and the next build
    writes it anew."""
    try:
        return Archive.open(path)
    except FileNotFoundError:
        return None
    except Exception as error:  # pmtiles raises its own errors on foreign bytes, struct on short
        logger.warning("%s is not a tile archive this server can use (%s: %s): tiles are drawn "
                       "live until `geo-service tiles build` writes it anew", path,
                       type(error).__name__, error)
        return None


def _existing(directory: Path, lang: str) -> Archive | None:
    return _readable(archive_path(directory, lang))


def _write(path: Path, found: dict[int, bytes], database: str, version: str, max_zoom: int,
           lang: str, attribution: str, fingerprints: dict[str, Any]) -> None:
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
            "fingerprints": fingerprints,  # what the next build compares to render only changes
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
