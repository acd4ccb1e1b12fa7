"""Schema migrations: a blank database reaches the latest version and matches schema.py."""

from __future__ import annotations

import sqlite3
import time

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


async def test_a_version_1_database_gets_the_parent_index_and_the_journal_span(home):
    mm = await MemoryManager.open(config(home))
    await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:  # as migration 1 left it
        conn.execute("DROP INDEX ix_processes_node")  # (and what migration 5 adds)
        conn.execute("ALTER TABLE processes DROP COLUMN node")
        conn.execute("ALTER TABLE processes DROP COLUMN node_epoch")
        conn.execute("DROP TABLE nodes")
        conn.execute("DROP TABLE requests")
        conn.execute("DELETE FROM meta WHERE key = 'next_mail'")
        conn.execute("DROP INDEX ix_processes_parent")
        conn.execute("ALTER TABLE journal DROP COLUMN span")
        conn.execute("ALTER TABLE processes DROP COLUMN restarts")  # (and what migration 4 adds)
        conn.execute("ALTER TABLE processes DROP COLUMN restart_mark")
        conn.execute("DELETE FROM meta WHERE key = 'last_stop'")
        conn.execute("INSERT INTO journal (pid, n, call, digest, status, at) VALUES (1, 1, 'Sleep', 'd', 'ok', 0)")
        conn.execute("UPDATE schema_version SET version = 1")
    mm = await MemoryManager.open(config(home))
    await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_processes_parent" in names
        assert conn.execute("SELECT span FROM journal WHERE pid = 1").fetchone() == (0,)  # old rows: 0
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (len(migrations.MIGRATIONS),)


async def test_a_version_4_database_gets_the_cluster_tables_and_mail_ids_past_its_mailbox(home):
    mm = await MemoryManager.open(config(home))
    await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:  # as migration 4 left it, with an unread message
        conn.execute("DROP INDEX ix_processes_node")
        conn.execute("ALTER TABLE processes DROP COLUMN node")
        conn.execute("ALTER TABLE processes DROP COLUMN node_epoch")
        conn.execute("DROP TABLE nodes")
        conn.execute("DROP TABLE requests")
        conn.execute("DELETE FROM meta WHERE key = 'next_mail'")
        conn.execute("INSERT INTO mailbox (id, pid, sender, body) VALUES (41, 7, 0, '1')")
        conn.execute("UPDATE schema_version SET version = 4")
    mm = await MemoryManager.open(config(home))
    try:
        assert mm.version == len(migrations.MIGRATIONS) == 5
        assert (await mm.store.meta())["next_mail"] == "42"  # a cluster node's mail ids start past it
        assert await mm.store.processes(node="anyone") == []
    finally:
        await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:
        assert conn.execute("SELECT node, node_epoch FROM processes").fetchall() == []
        assert conn.execute("SELECT COUNT(*) FROM nodes").fetchone() == (0,)


async def test_a_default_kernel_boots_fast_on_an_existing_database(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    from llmasos import Kernel, KernelConfig
    from llmasos.engine.fake import FakeEngine

    async with Kernel(KernelConfig(engine=FakeEngine())) as k:  # creates the database
        assert k.memory.where == str(tmp_path / "home" / "llmasos.db")
        for _ in range(20):
            await k.run("echo", "x")
    kernel = Kernel(KernelConfig(engine=FakeEngine()))
    start = time.perf_counter()
    await kernel.boot()  # open (lock, migrations check, pids), serve, recover: the memory part
    booted = time.perf_counter() - start
    await kernel.shutdown()
    assert booted < 0.3
