"""A locked, full or corrupt database gives a clear error; the kernel stays up or refuses to boot."""

from __future__ import annotations

import sqlite3

import anyio
import pytest

from llmasos import App, Kernel
from llmasos.memory.errors import DatabaseCorrupt, DatabaseFull, DatabaseLocked

from .conftest import config


def _app(body):
    app = App("t")
    app.main(body)
    return app


async def test_a_corrupt_database_refuses_to_boot_and_is_left_untouched(home):
    path = home / "llmasos.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseCorrupt, match="left untouched"):
        async with Kernel(config(home)):
            pass
    assert path.read_bytes() == b"this is not a database" * 100


async def test_a_second_kernel_on_the_same_database_is_refused(home):
    async with Kernel(config(home)):
        with pytest.raises(DatabaseLocked, match="another llmasos kernel"):
            async with Kernel(config(home)):
                pass


async def test_a_locked_database_fails_the_write_and_the_kernel_stays_up(home):
    async def main(sys):
        try:
            await sys.memory.set("k", "v")
        except DatabaseLocked as exc:
            return str(exc)
    async with Kernel(config(home, db_busy_timeout=0.2, durable=False)) as k:
        other = sqlite3.connect(home / "llmasos.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            status = await k.run(_app(main))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "is locked" in status.value and "db_busy_timeout" in status.value
        assert (await k.run("echo", "still up")).ok


async def test_a_full_database_fails_the_write_and_the_kernel_stays_up(home):
    async def main(sys):
        try:
            for i in range(200):
                await sys.memory.set(f"k{i}", "x" * 4000)
        except DatabaseFull as exc:
            return str(exc)
    async with Kernel(config(home, durable=False)) as k:
        async def limit(conn):
            await conn.exec_driver_sql("PRAGMA max_page_count = 60")
        await k.memory.writer.run(limit)
        status = await k.run(_app(main))
        assert status.ok and "cannot grow" in status.value and "free disk space" in status.value
        assert (await k.run("echo", "still up")).ok


async def test_a_locked_database_never_stalls_the_kernel(home):
    go = anyio.Event()

    async def main(sys):
        await go.wait()  # (spawned before the lock is taken: a spawn commits the process's row)
        try:
            await sys.sleep(0)  # journaled: its entry cannot be committed while the lock is held
        except DatabaseLocked as exc:
            return str(exc)
    gaps = []

    async def ticker():
        for _ in range(20):
            start = anyio.current_time()
            await anyio.sleep(0.01)
            gaps.append(anyio.current_time() - start)
    async with Kernel(config(home, db_busy_timeout=0.3)) as k:
        pid = await k.spawn(_app(main))
        other = sqlite3.connect(home / "llmasos.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                go.set()
                status = await k.wait(pid)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert status.ok and "is locked" in status.value
        assert max(gaps) < 0.15  # the loop kept running while the commit waited for the lock
        assert (await k.run("echo", "still up")).ok
