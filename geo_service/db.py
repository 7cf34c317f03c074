"""Which PostGIS to use (embedded or DATABASE_URL), engines, and schema migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL, Engine, create_engine, make_url, text

from geo_service.embedded import EmbeddedCluster
from geo_service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster of this checkout (whether or not it is in use)."""
    return EmbeddedCluster(settings.data_dir)


def database_url(settings: Settings, start: bool = True) -> str:
    """The libpq DSN of the database in use; starts the embedded cluster when it is the default."""
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if url.startswith(prefix):
                url = "postgresql://" + url[len(prefix):]
        return url
    embedded = cluster(settings)
    if start:
        embedded.start()
    return embedded.url()


def sqlalchemy_url(dsn: str) -> URL:
    """The SQLAlchemy URL (psycopg 3 driver) of a libpq URI or key=value DSN."""
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
    return create_engine(sqlalchemy_url(dsn), pool_pre_ping=True, future=True)


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    url = sqlalchemy_url(dsn).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (creates PostGIS first when allowed)."""
    engine = make_engine(dsn)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    finally:
        engine.dispose()
    command.upgrade(alembic_config(dsn), revision)


def current_revision(dsn: str) -> str | None:
    engine = make_engine(dsn)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            if exists is None:
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
