"""Which PostGIS to use (embedded or DATABASE_URL), engines, and schema migrations."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict

from geo_service.embedded import EmbeddedCluster, EmbeddedError, find_pg_bindir
from geo_service.settings import Settings

if TYPE_CHECKING:  # SQLAlchemy and Alembic (half a second) are imported by the migrations only
    from alembic.config import Config
    from sqlalchemy import URL, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster of this checkout (whether or not it is in use)."""
    return EmbeddedCluster(settings.data_dir, settings.db_statement_timeout_ms)


def libpq(url: str) -> str:
    """A URL in the form libpq takes (postgresql://), from the forms SQLAlchemy and others use."""
    for prefix in ("postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def database_url(settings: Settings, start: bool = True) -> str:
    """The libpq DSN the CLI writes with (migrations, loads, imports): DATABASE_URL, or the
    embedded cluster's owner role (the cluster is started when it is the default)."""
    if settings.database_url:
        return libpq(settings.database_url)
    embedded = cluster(settings)
    if start:
        embedded.start()
    return embedded.url(role="owner")


def read_url(settings: Settings, start: bool = True) -> str:
    """The libpq DSN the web server reads with: GEO_READ_DATABASE_URL, else the embedded
    cluster's reader role (SELECT only), else DATABASE_URL."""
    if settings.read_database_url:
        return split_urls(settings.read_database_url)[0]
    if settings.database_url:
        return libpq(settings.database_url)
    embedded = cluster(settings)
    if start:
        embedded.start()
    return embedded.url(role="reader")


# where one URL ends and the next begins in GEO_READ_DATABASE_URL: spaces or commas before a new
# scheme (a comma inside one URL, as in libpq's host1,host2 lists, stays part of it)
_URL_SEPARATOR = re.compile(r"[\s,;]+(?=postgres(?:ql)?(?:\+\w+)?://)")


def split_urls(value: str) -> list[str]:
    """The URLs of a setting that may hold several (separated by spaces or commas)."""
    return [libpq(part.strip(" ,;\t\n")) for part in _URL_SEPARATOR.split(value.strip())
            if part.strip(" ,;\t\n")]


def read_urls(settings: Settings, start: bool = True) -> list[str]:
    """Every database the web server spreads its reads over (see read_url for one)."""
    if settings.read_database_url:
        return split_urls(settings.read_database_url)
    return [read_url(settings, start)]


def read_fallback_url(settings: Settings, start: bool = True) -> str | None:
    """Where the web server reads when none of read_urls answers: GEO_READ_FALLBACK_URL, else
    the embedded primary's reader role when replicas are listed, else nothing ('none': 503)."""
    chosen = (settings.read_fallback_url or "").strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        return libpq(chosen)
    if settings.read_database_url and settings.embedded:
        embedded = cluster(settings)
        if start:
            embedded.start()
        primary = embedded.url(role="reader")
        return None if primary in read_urls(settings, start) else primary
    return None


def admin_url(settings: Settings, start: bool = True) -> str:
    """The embedded cluster's superuser DSN (to create databases and roles)."""
    embedded = cluster(settings)
    if start:
        embedded.start()
    return embedded.url()


def sqlalchemy_url(dsn: str) -> URL:
    """The SQLAlchemy URL (psycopg 3 driver) of a libpq URI or key=value DSN."""
    from sqlalchemy import URL, make_url

    if "://" in dsn:
        return make_url("postgresql+psycopg://" + dsn.split("://", 1)[1])
    info = conninfo_to_dict(dsn)

    def part(key: str) -> str | None:
        value = info.get(key)
        return None if value is None else str(value)

    port = info.get("port")
    return URL.create(
        "postgresql+psycopg", username=part("user"), password=part("password"),
        host=part("host"), port=int(port) if port else None, database=part("dbname"),
    )


def make_engine(dsn: str) -> Engine:
    from sqlalchemy import create_engine

    return create_engine(sqlalchemy_url(dsn), pool_pre_ping=True, future=True)


def alembic_config(dsn: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    url = sqlalchemy_url(dsn).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (creates PostGIS first when allowed)."""
    from alembic import command
    from sqlalchemy import text

    engine = make_engine(dsn)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    finally:
        engine.dispose()
    command.upgrade(alembic_config(dsn), revision)


def current_revision(dsn: str) -> str | None:
    from sqlalchemy import text

    engine = make_engine(dsn)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            if exists is None:
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


# ------------------------------------------------------------------------- backup and restore
class BackupError(RuntimeError):
    """A backup or restore could not be made; nothing was changed."""


def _tool(name: str) -> str:
    """pg_dump or pg_restore of the newest PostgreSQL with PostGIS here, else from PATH."""
    try:
        path = find_pg_bindir() / name
    except EmbeddedError:
        return name
    return str(path) if path.exists() else name


def backup(dsn: str, target: Path) -> int:
    """Dump the whole database (schema and data) in pg_dump's custom format to `target`, written
    beside it and renamed at the end; returns its size in bytes."""
    partial = target.with_name(target.name + ".partial")
    result = subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner",
                             f"--file={partial}", f"--dbname={dsn}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    partial.replace(target)
    return target.stat().st_size


def _user_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema', 'tiger', 'topology') "
            "AND tablename <> 'spatial_ref_sys' ORDER BY 1").fetchall()]


def restore(dsn: str, source: Path) -> None:
    """Restore a `backup` into the database `dsn`, which must hold no tables yet (PostGIS may be
    installed already: the backup's own CREATE EXTENSION is then left out). One transaction:
    a failure leaves the database as it was."""
    if not source.is_file():
        raise BackupError(f"{source}: no such backup file")
    listing = subprocess.run([_tool("pg_restore"), "--list", str(source)], capture_output=True,
                             text=True, check=False)
    if listing.returncode != 0:
        raise BackupError(f"{source}: not a backup made by `geo-service db backup` "
                          f"({listing.stderr.strip()})")
    found = _user_tables(dsn)
    if found:
        raise BackupError(f"the database already holds {len(found)} tables ({', '.join(found[:3])}"
                          f"{', …' if len(found) > 3 else ''}): restore into an empty database")
    with psycopg.connect(dsn) as conn:
        installed = {r[0] for r in conn.execute("SELECT extname FROM pg_extension").fetchall()}
    # the installed extensions' own entries (and their comments, which only their owner may
    # set, and their configuration rows) are left out
    keep = [line for line in listing.stdout.splitlines()
            if not any(f"EXTENSION - {name} " in line or line.endswith(f"EXTENSION - {name}")
                       or f"COMMENT - EXTENSION {name}" in line for name in installed)
            # PostGIS's reference systems come with the installed PostGIS (the service adds none)
            and not ("postgis" in installed and "TABLE DATA public spatial_ref_sys" in line)]
    with tempfile.NamedTemporaryFile("w", suffix=".list") as chosen:
        chosen.write("\n".join(keep) + "\n")
        chosen.flush()
        result = subprocess.run([_tool("pg_restore"), "--no-owner", "--single-transaction",
                                 "--exit-on-error", f"--use-list={chosen.name}",
                                 f"--dbname={dsn}", str(source)],
                                capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed, nothing restored: {result.stderr.strip()}")
