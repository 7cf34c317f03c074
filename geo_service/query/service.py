"""Service-level reads: the data version every cache key carries, which database this is, and
what /health reports."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

LEVELS = ("country", "region", "municipality")

# Session settings of every reading connection (libpq `options`). JIT off: the service's
# statements are short, and once the planner's estimate passed jit_above_cost (a bbox page of
# 9,700 members) compiling took 109 ms of a 220 ms statement.
READ_OPTIONS = "-c jit=off"

# A counter that triggers bump in the same transaction as every change to the data (migration
# 0004): part of every ETag, cache key and tile archive.
DATA_VERSION_SQL = sql.SQL("SELECT n::text FROM data_version")
# The same as a column of a larger statement, so that its rows and the version they were read at
# come from one snapshot (an autocommit statement sees one), in one round trip
DATA_VERSION_COLUMN = sql.SQL("coalesce(({}), '0')").format(DATA_VERSION_SQL)

# The data version each database answered last, by its host, port and name: what an items page
# read together with its version (features.items_read) expects, and checks it got
_SEEN: dict[tuple[bytes | None, bytes | None, bytes | None], str] = {}


def _database(conn: AsyncConnection) -> tuple[bytes | None, bytes | None, bytes | None]:
    pg = conn.pgconn
    return pg.host, pg.port, pg.db


def seen_version(conn: AsyncConnection) -> str | None:
    """The data version the database behind `conn` answered last (None before any)."""
    return _SEEN.get(_database(conn))


def note_version(conn: AsyncConnection, version: str) -> None:
    """Remember the data version the database behind `conn` answered."""
    _SEEN[_database(conn)] = version


async def data_version(conn: AsyncConnection) -> str:
    row = await (await conn.execute(DATA_VERSION_SQL)).fetchone()
    version = str(row[0]) if row else "0"
    note_version(conn, version)
    return version


async def database_identity(conn: AsyncConnection) -> str:
    """Which database this is (cluster id and name): data versions are only counters, so an
    archive records the database it was built from too."""
    cursor = await conn.execute(
        "SELECT (SELECT id FROM service_identity)::text || '/' || current_database()")
    row = await cursor.fetchone()
    return str(row[0]) if row else ""


async def health(conn: AsyncConnection) -> dict[str, Any]:
    """Versions and counts, read from the database itself."""
    row = await (await conn.execute(
        "SELECT version(), postgis_lib_version(), "
        "(SELECT version_num FROM alembic_version), "
        "(SELECT count(*) FROM places), "
        "(SELECT count(*) FROM territories)"
    )).fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    counts = await (await conn.execute(
        "SELECT level, count(*) FROM boundaries GROUP BY level"
    )).fetchall()
    return {
        "data_version": await data_version(conn),
        "postgres": row[0].split(",")[0],
        "postgis": row[1],
        "schema_revision": row[2],
        "boundaries": {level: 0 for level in LEVELS} | dict(counts),
        "places": row[3],
        "territories": row[4],
    }


async def can_write(conn: AsyncConnection) -> str | None:
    """Why the connection's role could change data (a superuser, or a role whose transactions
    are not read-only and that may INSERT into a table), or None for a read-only role."""
    cursor = await conn.execute(
        "SELECT current_user, r.rolsuper, current_setting('default_transaction_read_only'), "
        "EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = 'public' AND has_table_privilege("
        "format('%I.%I', t.schemaname, t.tablename), 'INSERT')) "
        "FROM pg_roles r WHERE r.rolname = current_user")
    row = await cursor.fetchone()
    if row is None:
        return None
    user, superuser, read_only, inserts = row
    if superuser:
        return f"it connects as {user}, a superuser"
    if read_only != "on" and inserts:
        return f"it connects as {user}, which may write"
    return None
