"""One data version for every write (migration 0004): bumped once in the same transaction as any
change to the data, unchanged by a rolled-back write, and writers serialised in commit order."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from geo_service.query.service import DATA_VERSION_SQL

THEME = ("test-version-theme", "test", "Test", "Test", "Prueba")


def version(conn: psycopg.Connection) -> int:
    row = conn.execute(DATA_VERSION_SQL).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture()
def conn(database_url: str):
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection
        connection.execute("DELETE FROM rights_themes WHERE slug = %s", (THEME[0],))
        connection.execute("DELETE FROM history WHERE table_name = 'test'")


def test_every_write_bumps_once_per_transaction_and_a_rollback_not_at_all(conn) -> None:
    start = version(conn)
    conn.execute("INSERT INTO rights_themes VALUES (%s, %s, %s, %s, %s)", THEME)
    assert version(conn) == start + 1
    with conn.transaction():  # several statements on several tables: one new version
        conn.execute("UPDATE rights_themes SET name_en = 'Test 2' WHERE slug = %s", (THEME[0],))
        conn.execute("UPDATE rights_themes SET name_fr = 'Essai' WHERE slug = %s", (THEME[0],))
        conn.execute("INSERT INTO history (table_name, row_id, operation, previous) "
                     "VALUES ('rights_themes', %s, 'update', '{}')", (THEME[0],))
    assert version(conn) == start + 2
    unchanged = version(conn)
    conn.execute("UPDATE rights_themes SET name_en = 'x' WHERE slug = 'no-such-theme'")
    assert version(conn) == unchanged  # a statement that changed no row is not a change
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        conn.execute("UPDATE rights_themes SET name_es = 'y' WHERE slug = %s", (THEME[0],))
        conn.execute("INSERT INTO rights_themes VALUES (%s, %s, %s, %s, %s)", THEME)
    assert version(conn) == unchanged  # rolled back with the change it belonged to
    conn.execute("DELETE FROM history WHERE table_name = 'rights_themes' AND row_id = %s",
                 (THEME[0],))
    assert version(conn) == unchanged + 1


def test_concurrent_writers_wait_for_each_other_and_versions_follow_commit_order(
        conn, database_url: str) -> None:
    start = version(conn)
    first = psycopg.connect(database_url)
    second_done = threading.Event()
    seen: dict[str, int] = {}

    def second_writer() -> None:
        with psycopg.connect(database_url) as other:
            other.execute("INSERT INTO rights_themes VALUES (%s, %s, %s, %s, %s)", THEME)
            other.commit()
            seen["second"] = version(other)
        second_done.set()

    try:
        first.execute("INSERT INTO history (table_name, row_id, operation, previous) "
                      "VALUES ('test', 'first-writer', 'update', '{}')")
        writer = threading.Thread(target=second_writer)
        writer.start()
        time.sleep(1.0)
        assert not second_done.is_set()  # the second writer waits for the first to commit
        assert version(conn) == start  # and readers see neither change yet
        seen["first"] = version(first)  # its own change, read before the second's can follow
        first.commit()
        writer.join(timeout=30)
        assert second_done.is_set()
    finally:
        first.close()
    assert seen == {"first": start + 1, "second": start + 2}
    assert version(conn) == start + 2
