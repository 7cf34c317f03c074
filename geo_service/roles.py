"""Database roles, least privilege: an owner for migrations, loads and imports (the CLI), a reader
for the web server (SELECT only, read-only transactions, a statement timeout). The superuser is
used only to create them, by `provision`: for the embedded cluster at start, for any other
PostGIS with `geo-service db roles ADMIN_URL`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

OWNER = "geo_owner"
READER = "geo_reader"

# objects of the public schema that are not PostGIS's own (extension members), by kind
_OWNED = """
SELECT kind, name FROM (
  SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                        WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
         c.oid::regclass::text, c.relowner, c.oid, 'pg_class'::regclass
  FROM pg_class c
  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    -- a sequence that belongs to a column changes owner with its table
    AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
             AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
  UNION ALL
  SELECT 'ROUTINE', p.oid::regprocedure::text, p.proowner, p.oid, 'pg_proc'::regclass
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'TYPE', t.oid::regtype::text, t.typowner, t.oid, 'pg_type'::regclass
  FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd')
) AS o(kind, name, owner, oid, catalog)
WHERE owner <> %s::regrole
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.catalog AND d.objid = o.oid
                  AND d.deptype = 'e')
ORDER BY kind, name
"""


@dataclass(frozen=True)
class Role:
    name: str
    password: str


def provision(conn: psycopg.Connection, owner: Role, reader: Role,
              statement_timeout_ms: int) -> None:
    """On a superuser's connection to the service's database, in one transaction: create or
    update both roles (login, no other power; the reader's transactions read-only with a
    statement timeout), install PostGIS, give the database, its public schema and every object
    in it but PostGIS's own to the owner, and let the reader connect and SELECT (tables the owner
    makes later included). Nobody else may connect or make temporary tables. Idempotent."""
    database = conn.info.dbname
    with conn.transaction():
        for role in (owner, reader):
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role.name)))
            conn.execute(sql.SQL(
                "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS PASSWORD {}").format(sql.Identifier(role.name),
                                                  sql.Literal(role.password)))
        ident = {"owner": sql.Identifier(owner.name), "reader": sql.Identifier(reader.name),
                 "db": sql.Identifier(database)}
        for statement in (
            "ALTER ROLE {reader} SET default_transaction_read_only = on",
            "ALTER ROLE {reader} SET statement_timeout = " + str(int(statement_timeout_ms)),
            "ALTER DATABASE {db} OWNER TO {owner}",
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {owner}",
            "GRANT CONNECT ON DATABASE {db} TO {reader}",
            "CREATE EXTENSION IF NOT EXISTS postgis",
            "ALTER SCHEMA public OWNER TO {owner}",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {reader}",
        ):
            conn.execute(sql.SQL(statement).format(**ident))
        # objects made before the roles existed (by the superuser) pass to the owner
        for kind, name in conn.execute(_OWNED, (owner.name,)).fetchall():
            conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(kind), sql.SQL(name), ident["owner"]))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
                     .format(**ident))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                             "GRANT SELECT ON TABLES TO {reader}").format(**ident))


def url_as(dsn: str, role: Role) -> str:
    """The URL `dsn` with `role`'s user name and password (same host, port and database)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(role.name, safe='')}:{quote(role.password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
