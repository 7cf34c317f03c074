"""Least privilege: the web server reads as a role that can only SELECT; the CLI writes as the
owner; the superuser only creates the two (embedded cluster at start, `db roles` elsewhere)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from geo_service import roles

from .conftest import _with_database, admin_dsn

GEO = str(Path(sys.executable).with_name("geo-service"))


def refused(dsn: str, statement: str, writable: bool = False) -> str:
    """The error a statement gets on `dsn` (the test fails if it succeeds); `writable` turns the
    role's read-only transactions off first (anyone may)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if writable:
            conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.Error) as error:
            conn.execute(statement)
    return str(error.value)


def assert_read_only(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                            "WHERE rolname = current_user").fetchone() == (False, False, False)
        assert conn.execute("SELECT count(*) FROM boundaries").fetchone()[0] >= 0  # it reads
    assert "read-only transaction" in refused(
        dsn, "INSERT INTO imports (kind, file_name, checksum, options) VALUES ('x', 'x', 'x', '{}')")
    # turning read-only transactions off is allowed to anyone, writing still is not
    assert "permission denied" in refused(
        dsn, "INSERT INTO imports (kind, file_name, checksum, options) VALUES ('x', 'x', 'x', '{}')",
        writable=True)
    assert "permission denied" in refused(dsn, "DELETE FROM territories", writable=True)
    assert "COPY to or from an external program" in refused(
        dsn, "COPY (SELECT 1) TO PROGRAM 'id'")
    assert "permission denied" in refused(dsn, "SELECT pg_read_file('/etc/passwd')")
    assert "permission denied" in refused(dsn, "CREATE TEMP TABLE t (a int)", writable=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        timeout = conn.execute("SHOW statement_timeout").fetchone()[0]
    assert timeout not in ("0", "0ms"), timeout


def test_the_web_servers_role_can_only_read(reader_url: str, sample) -> None:
    assert_read_only(reader_url)


def test_the_live_server_connects_as_the_reader(server: str, database_url: str,
                                                reader_url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{server}/collections/territories/items?limit=1") as response:
        assert response.status == 200
    reader = psycopg.conninfo.conninfo_to_dict(reader_url)["user"]
    with psycopg.connect(database_url) as conn:
        users = {r[0] for r in conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()}
    assert reader in users, users


def test_the_cli_writes_as_an_owner_that_is_no_superuser(database_url: str, sample) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                            "WHERE rolname = current_user").fetchone() == (False, False, False)
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'spatial_ref_sys'").fetchall()}
    assert owners == {psycopg.conninfo.conninfo_to_dict(database_url)["user"]}
    assert "COPY to or from an external program" in refused(
        database_url, "COPY (SELECT 1) TO PROGRAM 'id'")


def test_db_roles_sets_up_an_external_postgis(tmp_path: Path) -> None:
    """`geo-service db roles ADMIN_URL` on a database of a PostGIS of one's own: it prints the
    two URLs; the owner migrates and writes, the reader only reads. Running it again is fine."""
    admin = admin_dsn()
    name = f"geo_roles_{secrets.token_hex(3)}"
    owner, reader = f"{name}_owner", f"{name}_reader"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        for _ in range(2):
            result = subprocess.run(
                [GEO, "db", "roles", _with_database(admin, name), "--owner", owner,
                 "--reader", reader], capture_output=True, text=True, timeout=120,
                env={**os.environ, "GEO_DATA_DIR": str(tmp_path / "unused")})
            assert result.returncode == 0, result.stderr
        urls = dict(line.split("=", 1) for line in result.stdout.split())
        env = {**os.environ, "DATABASE_URL": urls["DATABASE_URL"]}
        upgrade = subprocess.run([GEO, "db", "upgrade"], capture_output=True, text=True,
                                 env=env, timeout=120)
        assert upgrade.returncode == 0, upgrade.stderr
        with psycopg.connect(urls["DATABASE_URL"]) as conn:
            conn.execute("INSERT INTO imports (kind, file_name, checksum, options) "
                         "VALUES ('x', 'x', 'x', '{}')")
        with psycopg.connect(urls["GEO_READ_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 1
        assert "read-only transaction" in refused(urls["GEO_READ_DATABASE_URL"],
                                                  "DELETE FROM imports")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            for role in (owner, reader):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_provision_takes_over_what_the_superuser_made_before(tmp_path: Path) -> None:
    """A database made before the roles existed (tables and functions of the superuser's) is
    given to the owner, and the reader may read it."""
    admin = admin_dsn()
    name = f"geo_roles_{secrets.token_hex(3)}"
    owner = roles.Role(f"{name}_owner", secrets.token_urlsafe(12))
    reader = roles.Role(f"{name}_reader", secrets.token_urlsafe(12))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(_with_database(admin, name)) as conn:
            conn.execute("CREATE TABLE old (id serial PRIMARY KEY, name text)")
            conn.execute("CREATE FUNCTION old_f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            conn.execute("CREATE VIEW old_v AS SELECT * FROM old")
            conn.commit()
            roles.provision(conn, owner, reader, 3000)
            found = conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'old%' "
                "ORDER BY 1").fetchall()
            assert {o for _, o in found} == {owner.name}, found
            assert conn.execute("SELECT pg_get_userbyid(proowner) FROM pg_proc "
                                "WHERE proname = 'old_f'").fetchone()[0] == owner.name
        with psycopg.connect(roles.url_as(_with_database(admin, name), owner)) as conn:
            conn.execute("INSERT INTO old (name) VALUES ('a')")
        with psycopg.connect(roles.url_as(_with_database(admin, name), reader)) as conn:
            assert conn.execute("SELECT count(*) FROM old_v").fetchone()[0] == 1
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "3s"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            for role in (owner, reader):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))
