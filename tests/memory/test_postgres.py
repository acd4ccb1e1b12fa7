"""The storage tests against a real PostgreSQL server (see pg.py for how one is found or started)."""

from __future__ import annotations

import anyio
import pytest

from llmasos import App, Kernel
from llmasos.memory import migrations
from llmasos.memory.manager import MemoryManager

from .conftest import config, spec
from .pg import postgres_url

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg():
    with postgres_url() as url:
        yield url


async def test_postgres_schema_from_blank_and_every_store_operation(pg, tmp_path):
    mm = await MemoryManager.open(config(tmp_path, database=pg))
    try:
        assert mm.version == len(migrations.MIGRATIONS)
        st = mm.store
        await st.kv_set("ns", "a", {"x": (1, 2)})
        await st.kv_set("ns", "a", {"x": (3,)})
        assert await st.kv_get("ns", "a") == (True, {"x": (3,)})
        assert await st.kv_keys("ns") == ["a"] and await st.kv_delete("ns", "a")
        await st.remember("ns", "Paris is the capital of France; Paris has museums", ("geo",))
        await st.remember("ns", "the weather in Paris is rainy", ())
        await st.remember("ns", "bananas are yellow", ())
        hits = await st.search("ns", "Paris museums", 5)
        assert [h.text for h in hits][0].startswith("Paris is the capital")
        assert len(hits) == 2 and hits[0].score >= hits[1].score
        assert await st.remember("ns", "again", (), "key-1") == await st.remember("ns", "x", (), "key-1")
    finally:
        await mm.close()


async def test_postgres_kernel_journals_and_recovers(pg, tmp_path):
    counter = tmp_path / "counter.txt"
    cfg = dict(database=pg)
    async with Kernel(config(tmp_path, **cfg)) as k:
        pid = await k.spawn(spec("worker"), "pg", 3, str(counter))
        status = await k.wait(pid, timeout=20)
    assert status.ok and status.value["counts"] == [1, 2, 3]

    app = App("pgmem")

    @app.main
    async def main(sys):
        await sys.memory.set("k", "v")
        return await sys.chat("hello")
    async with Kernel(config(tmp_path, **cfg)) as k:
        assert (await k.run(app)).ok
        assert (await k.spawn("echo", "x")) > pid  # the pid counter persisted


async def test_a_lost_database_session_is_replaced_and_every_write_is_committed_once(pg, tmp_path, monkeypatch):
    """The writer's session can be dropped by the server. Lost before COMMIT, the server rolled the
    transaction back: the writer runs it again on a new connection. Lost at COMMIT, the writer asks the
    server on a new session whether that transaction was committed (``txid_status``): if it was, its
    operations are done (never run twice, which could apply a write twice); if not, it runs again."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection as Adapted
    from sqlalchemy.util import await_

    mm = await MemoryManager.open(config(tmp_path, database=pg))
    killer = await asyncpg.connect(pg.replace("postgresql+asyncpg", "postgresql"))
    w, ran = mm.writer, []

    async def drop_writer_session() -> None:
        await _end_session(killer, (await w.conn.get_raw_connection()).driver_connection.get_server_pid())

    def op(tag: str):
        async def fn(conn):
            ran.append(tag)
            await conn.execute(text("INSERT INTO kv (namespace, key, value, updated) VALUES ('t', :k, 'null', 0)"),
                               {"k": tag})
            return tag
        return fn

    async def keys() -> list[str]:
        return sorted(r["key"] for r in await killer.fetch("SELECT key FROM kv WHERE namespace = 't'"))

    original = Adapted.commit

    def dies_before_commit(self):
        monkeypatch.setattr(Adapted, "commit", original)
        await_(drop_writer_session())
        return original(self)

    def dies_after_commit(self):  # committed, and the answer never comes back
        monkeypatch.setattr(Adapted, "commit", original)
        original(self)
        await_(drop_writer_session())
        try:
            await_(self._connection.fetchval("SELECT 1"))
        except Exception as exc:
            self._handle_exception(exc)

    try:
        await w.flush()
        await drop_writer_session()  # (idle: the next transaction's first statement finds it gone)
        assert await w.run(op("a")) == "a"
        assert ran == ["a"] and await keys() == ["a"]  # (its first statement found the session gone)

        monkeypatch.setattr(Adapted, "commit", dies_before_commit)
        receipts = [w.post(op("b")), w.post(op("c"))]
        for receipt in receipts:
            await receipt
        assert ran[1:] == ["b", "c", "b", "c"] and await keys() == ["a", "b", "c"]  # aborted: run again

        monkeypatch.setattr(Adapted, "commit", dies_after_commit)
        assert await w.run(op("d")) == "d"
        assert ran[5:] == ["d"] and await keys() == ["a", "b", "c", "d"]  # committed: done, not run again
        assert await w.run(op("e")) == "e" and await keys() == ["a", "b", "c", "d", "e"]

        # Rows only (the journal's hot path asks for no transaction id): a row the batch inserted says.
        def entry(n: int, status: str = "ok") -> tuple[str, dict]:
            return ("journal+" if status == "ok" else "journal=", {
                "pid": 999, "n": n, "call": "Sleep", "digest": "x", "status": status, "result": None,
                "error_type": None, "span": 0, "at": 0.0})

        monkeypatch.setattr(Adapted, "commit", dies_before_commit)
        await w.run(rows=[entry(1), entry(2)])  # not there: run again
        monkeypatch.setattr(Adapted, "commit", dies_after_commit)
        await w.run(rows=[entry(3)])  # there: done (run again, its insert would fail on the primary key)
        monkeypatch.setattr(Adapted, "commit", dies_after_commit)
        await w.run(rows=[entry(3, "error")])  # inserts nothing: run again, harmlessly
        found = await killer.fetch("SELECT n, status FROM journal WHERE pid = 999 ORDER BY n")
        assert [(r["n"], r["status"]) for r in found] == [(1, "ok"), (2, "ok"), (3, "error")]

        # A repeatable function (a read, an upsert) asks for no transaction id: lost at COMMIT, it runs again.
        async def upsert(conn):
            ran.append("u")
            await conn.execute(text("UPDATE kv SET value = '1' WHERE namespace = 't' AND key = 'a'"))

        monkeypatch.setattr(Adapted, "commit", dies_after_commit)
        await w.run(upsert, repeatable=True)
        assert ran.count("u") == 2 and await killer.fetchval("SELECT value FROM kv WHERE key = 'a'") == "1"
    finally:
        await killer.close()
        await mm.close()


async def test_a_kernel_whose_database_server_restarts_goes_on_and_loses_no_write(tmp_path):
    """The server restarts (every session dropped, connections refused for a moment): the writer waits
    for it, up to KernelConfig.db_busy_timeout, and commits on a new connection; the process whose
    writes were queued never sees it, and its journal goes on."""
    import asyncpg

    from .pg import postgres_server

    app = App("steady")

    @app.main
    async def steady(sys, n: int) -> list[int]:
        seen = []
        for i in range(n):
            await sys.memory.set(f"k{i}", i)
            seen.append(await sys.memory.get(f"k{i}"))
            await sys.sleep(0.02)
        return seen

    with postgres_server() as server:
        async with Kernel(config(tmp_path, database=server.url, db_busy_timeout=30.0)) as k:
            pid = await k.spawn(app, 60)
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(server.restart)
            status = await k.wait(pid, timeout=60)
        assert status.ok and status.value == list(range(60))
        conn = await asyncpg.connect(server.url.replace("postgresql+asyncpg", "postgresql"))
        try:
            assert await conn.fetchval("SELECT count(*) FROM kv WHERE key LIKE 'k%'") == 60
        finally:
            await conn.close()


async def test_a_session_lost_in_a_partition_is_ended_before_its_outcome_is_asked(pg, tmp_path):
    """In a partition the client loses a session the server still holds: idle in its transaction (its
    insert uncommitted, its key locked), or done and idle. The writer ends that session first, so the
    answer it gets is final and running the batch again cannot wait on the old lock for ever."""
    import asyncpg

    from llmasos.memory.writer import _AtCommit, _Pending

    mm = await MemoryManager.open(config(tmp_path, database=pg))
    plain = pg.replace("postgresql+asyncpg", "postgresql")
    w = mm.writer

    def entry(n: int) -> tuple[str, dict]:
        return ("journal+", {"pid": 998, "n": n, "call": "Sleep", "digest": "x", "status": "ok", "result": None,
                             "error_type": None, "span": 0, "at": 0.0})

    async def held_session(n: int, *, commit: bool) -> tuple[asyncpg.Connection, int, int]:
        """A session that inserted entry n and then went quiet, committed or not; its pid and xid."""
        other = await asyncpg.connect(plain)
        await other.execute("BEGIN")
        xid = await other.fetchval("SELECT txid_current()")
        await other.execute("INSERT INTO journal (pid, n, call, digest, status, span, at) "
                            "VALUES (998, $1, 'Sleep', 'x', 'ok', 0, 0)", n)
        if commit:
            await other.execute("COMMIT")
        return other, other.get_server_pid(), xid

    try:
        await w.flush()
        deadline = anyio.current_time() + 10
        for n, commit, by_xid in ((1, False, False), (2, True, False), (3, False, True), (4, True, True)):
            other, backend, xid = await held_session(n, commit=commit)
            lost = _AtCommit(xid if by_xid else None, [None], backend)
            with anyio.fail_after(10):
                outcome = await w._outcome(lost, [_Pending(None, [entry(n)])], deadline)
            assert outcome == ("committed" if commit else "aborted"), (n, commit, by_xid)
            assert other.is_closed() or await _gone(plain, backend)
            with anyio.fail_after(10):  # running it again now waits on nothing
                if commit:
                    with pytest.raises(Exception, match="duplicate key"):
                        await w.run(rows=[entry(n)])
                else:
                    await w.run(rows=[entry(n)])
            other.terminate()
    finally:
        await mm.close()


async def _gone(url: str, backend: int) -> bool:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend)
    finally:
        await conn.close()


async def test_a_lone_kernel_takes_its_database_lock_again_on_a_new_session(pg, tmp_path):
    """A lone kernel holds PostgreSQL's advisory lock on its database (one kernel per database); the
    lock is its session's, so a new session (after the server dropped one) takes it again, and if
    another kernel took it meanwhile, the kernel writes nothing more: DatabaseLocked, data untouched."""
    import asyncpg

    from llmasos.memory.errors import DatabaseLocked

    # (db_busy_timeout: how long the writer waits for a locked database before it says so)
    mm = await MemoryManager.open(config(tmp_path / "a", database=pg, db_busy_timeout=1.0))
    other = await asyncpg.connect(pg.replace("postgresql+asyncpg", "postgresql"))

    async def drop_writer_session() -> None:
        await _end_session(other, (await mm.writer.conn.get_raw_connection()).driver_connection.get_server_pid())

    try:
        await drop_writer_session()
        await mm.store.kv_set("ns", "k", 1)  # on a new session, which took the lock again
        with pytest.raises(DatabaseLocked, match="another llmasos kernel is using"):
            await MemoryManager.open(config(tmp_path / "b", database=pg))
        await drop_writer_session()
        assert await other.fetchval("SELECT pg_try_advisory_lock(4242426)")  # another kernel, meanwhile
        with pytest.raises(DatabaseLocked, match="another llmasos kernel is using"):
            await mm.store.kv_set("ns", "k", 2)
        assert await other.fetchval("SELECT value FROM kv WHERE namespace = 'ns' AND key = 'k'") == "1"
    finally:
        await other.close()
        await mm.close()


async def test_a_commit_lost_again_and_again_fails_once_the_wait_is_over(pg, tmp_path, monkeypatch):
    """Every try lost as it commits and found not committed: the writer stops after db_busy_timeout and
    says so, rather than trying for ever."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection as Adapted
    from sqlalchemy.util import await_

    from llmasos.memory.errors import MemoryStoreError

    mm = await MemoryManager.open(config(tmp_path, database=pg, db_busy_timeout=0.5))
    killer = await asyncpg.connect(pg.replace("postgresql+asyncpg", "postgresql"))
    original = Adapted.commit

    armed = []

    def always_dies(self):  # every commit of the note's transaction (not of the writer's questions)
        if armed:
            armed.clear()
            await_(_end_session(killer, self._connection.get_server_pid()))
        return original(self)

    async def note(conn):
        armed.append(True)
        await conn.execute(text("INSERT INTO kv (namespace, key, value, updated) VALUES ('z', 'k', '1', 0)"))

    try:
        await mm.writer.flush()
        monkeypatch.setattr(Adapted, "commit", always_dies)
        with anyio.fail_after(20), pytest.raises(MemoryStoreError, match="again and again for 0.5s; nothing"):
            await mm.writer.run(note)
        monkeypatch.setattr(Adapted, "commit", original)
        assert await killer.fetchval("SELECT count(*) FROM kv WHERE namespace = 'z'") == 0
    finally:
        await killer.close()
        await mm.close()


async def _end_session(conn, server: int) -> None:
    """End the server process of session server (the server dropped it), from conn; return once gone."""
    await conn.execute("SELECT pg_terminate_backend($1)", server)
    while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", server):
        await anyio.sleep(0.01)
