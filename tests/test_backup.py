"""`geo-service db backup FILE` and `db restore FILE`: a round trip into an empty database gives
every table back with the same rows; a restore into a database that holds data is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from geo_service import roles

from .conftest import _with_database, admin_dsn

GEO = str(Path(sys.executable).with_name("geo-service"))


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn}
    return subprocess.run([GEO, *args], capture_output=True, text=True, env=env, timeout=600)


def checksum(dsn: str, name: str) -> tuple[int, str]:
    """One table's row count and a checksum of all its rows (each row's text hashed, the
    hashes in order: sorting short hashes instead of rows of whole shapes)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(h, '|' ORDER BY h)), '') "
            "FROM (SELECT md5(x::text) AS h FROM {} x) r").format(sql.Identifier(name))).fetchone()


def tables(dsn: str) -> dict[str, tuple[int, str]]:
    """Every table of the public schema: its row count and a checksum of all its rows (two
    tables at a time: the machine's two cores)."""
    with psycopg.connect(dsn) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(lambda name: checksum(dsn, name), names), strict=True))


def test_backup_and_restore_round_trip(sample_dsn: str, session_roles, tmp_path: Path) -> None:
    backup = tmp_path / "geo.dump"
    made = cli(sample_dsn, "db", "backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert backup.stat().st_size > 100_000 and not backup.with_name("geo.dump.partial").exists()
    name = f"{urlsplit(sample_dsn).path.lstrip('/')}_restored"
    admin = admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    background = ThreadPoolExecutor(1)
    try:
        checksums = background.submit(tables, sample_dsn)  # the original's, while restoring
        # as the embedded cluster makes it: PostGIS in, the owner role owns it
        with psycopg.connect(_with_database(admin, name)) as conn:
            roles.provision(conn, *session_roles, 5000)
        empty = roles.url_as(_with_database(admin, name), session_roles[0])
        restored = cli(empty, "db", "restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        original = checksums.result()
        assert original["boundaries"][0] > 1000 and original["territories"][0] > 50
        assert tables(empty) == original
        again = cli(empty, "db", "restore", str(backup))  # never over data
        assert again.returncode != 0 and "restore into an empty database" in again.stderr
        assert tables(empty) == original
    finally:
        background.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def test_restore_of_a_file_that_is_not_a_backup_is_refused(database_url: str,
                                                            tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a dump")
    result = cli(database_url, "db", "restore", str(bogus))
    assert result.returncode != 0 and "not a backup made by" in result.stderr
