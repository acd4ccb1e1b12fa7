"""Cluster nodes as kernels in this process, on one PostgreSQL: the fence, ownership and pid rules,
deterministically (no timing): a node whose epoch was bumped commits nothing and stops its copies."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.config import ConfigError
from llmasos.memory.cluster import Blocks
from llmasos.syscalls.calls import Kill
from llmasos.syscalls.errors import NoSuchProcess, ProcessLimit

from .nodes import LIVE, aquery, new_database

pytestmark = pytest.mark.postgres

ticker = App("ticker", "a journaled syscall every 10 ms, for ever")


@ticker.main
async def ticker_main(sys) -> None:
    while True:
        await sys.sleep(0.01)


sender = App("sender", "send to a pid")


@sender.main
async def sender_main(sys, pid: int) -> str:
    try:
        await sys.send(pid, "hi")
    except NoSuchProcess as exc:
        return str(exc)
    return "sent"


async def _drop_every_session(url: str) -> None:
    """End every session on the database but the one that asks, as a server restarting backends does."""
    dropped = await aquery(url, "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert dropped and all(r["gone"] for r in dropped)


def _config(url: str, home: Path, node: str) -> KernelConfig:
    return KernelConfig(engine=FakeEngine(), home=home, database=url, node=node, lease=30.0, heartbeat=5.0)


async def test_a_node_whose_epoch_was_bumped_commits_nothing_and_stops_its_processes(pg_server, tmp_path):
    url = await anyio.to_thread.run_sync(new_database, pg_server)
    async with Kernel(_config(url, tmp_path / "a", "a")) as a:
        pid = await a.spawn(f"{__file__}:ticker")
        await anyio.sleep(0.2)
        await aquery(url, "UPDATE nodes SET epoch = epoch + 1, state = 'dead' WHERE node_id = 'a'")  # taken over
        before = await aquery(url, "SELECT pid, n, status FROM journal ORDER BY pid, n")
        with anyio.fail_after(10):
            await a.get(pid).done.wait()  # its next commit failed the fence: every copy is stopped
        assert a.cluster.fenced.is_set() and a.get(pid).state.value == "killed"
        await anyio.sleep(0.2)
        assert await aquery(url, "SELECT pid, n, status FROM journal ORDER BY pid, n") == before
        (row,) = await aquery(url, "SELECT state, node FROM processes WHERE pid = $1", pid)
        assert row["state"] in LIVE and row["node"] == "a"  # left for its adopter, as it was


async def test_every_new_connection_of_a_node_is_a_fenced_session(pg_server, tmp_path):
    """A node paused past the server's idle timeout comes back to closed connections, and SQLAlchemy
    opens new ones on next use. Those must be fenced sessions too, or the node's crash handling would
    write its processes' ends over what their adopter committed (seen in CI: a paused node marked
    'crashed' a process its adopter had finished). A new connection names the node, and once the
    node is taken over, a write on it is refused and changes nothing."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    url = await anyio.to_thread.run_sync(new_database, pg_server)
    async with Kernel(_config(url, tmp_path / "a", "a")) as a:
        pid = await a.spawn("echo", "x")
        engine = a.memory.writer.engine
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT current_setting('llmasos.node', true)"))).scalar() == "a"
        await aquery(url, "UPDATE nodes SET epoch = epoch + 1, state = 'dead' WHERE node_id = 'a'")  # taken over
        before = await aquery(url, "SELECT * FROM processes ORDER BY pid")
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="lost its lease"):
                await conn.execute(text("UPDATE processes SET state = 'crashed' WHERE pid = :pid"), {"pid": pid})
        assert await aquery(url, "SELECT * FROM processes ORDER BY pid") == before


async def test_pids_are_unique_across_nodes_and_a_process_cannot_reach_another_nodes(pg_server, tmp_path):
    url = await anyio.to_thread.run_sync(new_database, pg_server)
    async with Kernel(_config(url, tmp_path / "a", "a")) as a, Kernel(_config(url, tmp_path / "b", "b")) as b:
        pids = [await k.spawn("echo", "x") for _ in range(40) for k in (a, b)]
        assert len(set(pids)) == len(pids)
        target = await a.spawn(f"{__file__}:ticker")
        status = await b.run(f"{__file__}:sender", target)
        assert "runs on cluster node a; only the root user" in status.value
        assert await b.root.syscall(Kill(target)) is True  # the root user's kill: applied by node a
        with anyio.fail_after(10):
            await a.get(target).done.wait()
        rows = await aquery(url, "SELECT node_id, state FROM nodes ORDER BY node_id")
        assert [(r["node_id"], r["state"]) for r in rows] == [("a", "alive"), ("b", "alive")]
    rows = await aquery(url, "SELECT node_id, state FROM nodes ORDER BY node_id")
    assert {r["state"] for r in rows} == {"stopped"}  # a clean stop ends the lease at once


def test_a_node_that_used_its_whole_pid_block_says_what_to_do():
    blocks = Blocks("next_pid", 2, 10)
    assert [next(blocks), next(blocks)] == [10, 11]
    blocks.add(50)
    assert next(blocks) == 50 and blocks.low
    next(blocks)
    with pytest.raises(ProcessLimit, match="raise KernelConfig.pid_block"):
        next(blocks)


@pytest.mark.parametrize("fields, error", [
    ({"cluster": True}, "shares a PostgreSQL database"),
    ({"node": "n", "database": "sqlite:///x.db"}, "shares a PostgreSQL database"),
    ({"node": "n", "database": "postgresql://h/db", "durable": False}, "needs KernelConfig.memory and durable"),
    ({"lease": 2.0, "heartbeat": 2.0}, "must be shorter than the lease"),
    ({"lease": float("nan")}, "KernelConfig.lease is a number"),
    ({"heartbeat": True}, "KernelConfig.heartbeat is a number"),
    ({"cluster_poll": -1}, "KernelConfig.cluster_poll is a number"),
    ({"node": 42}, "KernelConfig.node is 1-64"),
    ({"node": "a/../../b"}, "KernelConfig.node is 1-64"),
])
def test_bad_cluster_settings_are_refused_with_what_to_do(fields, error):
    with pytest.raises(ConfigError, match=error):
        KernelConfig(engine=FakeEngine(), **fields)


async def test_a_node_whose_database_sessions_were_dropped_reconnects_and_its_processes_go_on(pg_server, tmp_path):
    """A transient disconnect (the server restarted a backend, a proxy dropped an idle session) while the
    node still holds its lease: the writer's next transaction fails before anything was committed, so it
    is run again on a new connection (a fenced session too), and the process whose write it was never
    sees it."""
    url = await anyio.to_thread.run_sync(new_database, pg_server)
    async with Kernel(_config(url, tmp_path / "a", "a")) as a:
        pid = await a.spawn(f"{__file__}:ticker")
        await anyio.sleep(0.2)
        for _ in range(3):
            await _drop_every_session(url)
            (before,) = await aquery(url, "SELECT count(*) AS n FROM journal WHERE pid = $1", pid)
            await anyio.sleep(0.3)
            (after,) = await aquery(url, "SELECT count(*) AS n FROM journal WHERE pid = $1", pid)
            assert a.get(pid).alive, (a.get(pid).state, a.get(pid).error)
            assert after["n"] > before["n"]  # it went on, and its writes are committed
        assert not a.cluster.fenced.is_set()
        (row,) = await aquery(url, "SELECT state FROM processes WHERE pid = $1", pid)
        assert row["state"] in LIVE


async def test_a_kill_across_nodes_right_after_every_session_was_dropped_is_applied_at_once(pg_server, tmp_path):
    """The cluster's own connections (asking another node, and taking its requests) meet a dropped
    session as the writer does: a transaction that failed before it did anything runs again on a new
    connection. Neither the root user's kill fails, nor node a waits a heartbeat (20 s here) to take it."""
    url = await anyio.to_thread.run_sync(new_database, pg_server)

    def config(node: str) -> KernelConfig:
        return KernelConfig(engine=FakeEngine(), home=tmp_path / node, database=url, node=node, lease=30.0,
                            heartbeat=20.0)

    async with Kernel(config("a")) as a, Kernel(config("b")) as b:
        target = await a.spawn(f"{__file__}:ticker")
        await anyio.sleep(0.3)  # (both nodes' cluster connections are open and idle)
        for _ in range(2):
            await _drop_every_session(url)
            await anyio.sleep(0.1)
        with anyio.fail_after(10):
            assert await b.root.syscall(Kill(target)) is True  # asked by b, applied by a
            await a.get(target).done.wait()
        assert not a.cluster.fenced.is_set() and not b.cluster.fenced.is_set()
