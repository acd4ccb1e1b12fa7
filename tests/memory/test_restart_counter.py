"""Migration 4: the per-process restart counter that ends crash loops (issue 13, finding 1)."""

from __future__ import annotations

import sqlite3

from llmasos.memory import migrations
from llmasos.memory.manager import MemoryManager

from .conftest import config


async def test_a_version_3_database_gets_restart_counters_and_a_clean_last_stop(home):
    mm = await MemoryManager.open(config(home))
    await mm.close()
    with sqlite3.connect(home / "llmasos.db") as conn:  # as migration 3 left it, with a live process
        conn.execute("DROP INDEX ix_processes_node")  # (and what migration 5 adds)
        conn.execute("ALTER TABLE processes DROP COLUMN node")
        conn.execute("ALTER TABLE processes DROP COLUMN node_epoch")
        conn.execute("DROP TABLE nodes")
        conn.execute("DROP TABLE requests")
        conn.execute("DELETE FROM meta WHERE key = 'next_mail'")
        conn.execute("ALTER TABLE processes DROP COLUMN restarts")
        conn.execute("ALTER TABLE processes DROP COLUMN restart_mark")
        conn.execute("DELETE FROM meta WHERE key = 'last_stop'")
        conn.execute("INSERT INTO processes (pid, app, spec, args, kwargs, state, priority, parent, caps, "
                     "started) VALUES (7, 'a', 'echo', '[]', '{}', 'waiting', 0, 0, '{}', 0)")
        conn.execute("UPDATE schema_version SET version = 3")
    mm = await MemoryManager.open(config(home))
    try:
        assert mm.version == len(migrations.MIGRATIONS) == 5
        (row,) = await mm.store.processes(pids=[7])
        assert (row.restarts, row.restart_mark) == (0, -1)  # never restored: its next crash counts from 0
        assert (await mm.store.meta())["last_stop"] == "clean"  # the old kernel's stop is not held against it
        await mm.store.set_restarts([(7, 2, 5)], "running")
        (row,) = await mm.store.processes(pids=[7])
        assert (row.restarts, row.restart_mark) == (2, 5)
        mm.store.post_restarts_reset(7)
        await mm.flush()
        (row,) = await mm.store.processes(pids=[7])
        assert (row.restarts, row.restart_mark) == (0, -1)
    finally:
        await mm.close()
