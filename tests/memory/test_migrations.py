"""Schema migrations: a blank database reaches the latest version and matches schema.py."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import inspect

from llmasos.memory import db, migrations
from llmasos.memory import schema as s
from llmasos.memory.errors import SchemaTooNew
from llmasos.memory.manager import MemoryManager

from .conftest import config


async def test_a_blank_database_is_migrated_to_the_latest_version(home):
    mm = await MemoryManager.open(config(home))
    try:
        assert mm.version == len(migrations.MIGRATIONS)

        def columns(conn):
            insp = inspect(conn)
            return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
        found = await mm.writer.conn.run_sync(columns)
    finally:
        await mm.close()
    for table in s.metadata.tables.values():
        assert found[table.name] == {c.name for c in table.columns}, table.name
    assert "notes_fts" in found and "schema_version" in found


async def test_migrating_twice_changes_nothing(home):
    first = await MemoryManager.open(config(home))
    db_id = first.db_id
    await first.close()
    second = await MemoryManager.open(config(home))
    try:
        assert second.db_id == db_id and second.version == len(migrations.MIGRATIONS)
    finally:
        await second.close()


async def test_a_database_from_a_newer_llmasos_is_refused_untouched(home):
    mm = await MemoryManager.open(config(home))
    await mm.close()
    path = home / "llmasos.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="upgrade llmasos"):
        await MemoryManager.open(config(home))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (99,)


async def test_the_database_runs_in_wal_mode(home):
    mm = await MemoryManager.open(config(home))
    await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_database_url_defaults_to_sqlite_under_home(tmp_path):
    assert db.database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'llmasos.db'}"
    assert db.database_url("postgresql://u@h/db", tmp_path).startswith("postgresql+asyncpg://")
