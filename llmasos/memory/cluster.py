"""The rows of a cluster of kernels on one PostgreSQL: node leases, fencing, adoption, requests, blocks.

Rule: storage only, PostgreSQL only. Every function here is one short statement group on a connection
the caller holds (a cluster node's own connection, or the writer's inside its transaction); which node
adopts what, when a lease is lost and how a request is applied is the kernel's business
(``kernel/cluster.py``). Times are the database server's clock (``clock_timestamp()``), never a node's,
so nodes' clocks may disagree without moving a lease.

Fencing: the writer's session names its node and epoch (``fence_session``; so does every connection
the engine opens later, ``fence_new_connections``, for a session the server closed), and the fence trigger of
migration 5 (``migrations.FENCE_FUNCTION``) runs inside every statement that writes a kernel's table: it
takes a KEY SHARE lock on the node's row and fails unless the row still holds the node's epoch and is
alive (``fence`` does the same as a statement, on a node's other connection). ``take_over`` locks a dead
node's row FOR UPDATE SKIP LOCKED and bumps its epoch. The two locks conflict, so a transaction of the
old node either commits before the takeover (and the adopter reads its rows) or fails and commits
nothing. The check costs no round trip: it runs in the database, within the write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llmasos.memory.db import on_new_connections
from llmasos.memory.errors import Fenced

NOW = "extract(epoch from clock_timestamp())"
ALIVE, DEAD, STOPPED = "alive", "dead", "stopped"  # nodes.state
ASKED, TAKEN, DONE, FAILED = "asked", "taken", "done", "failed"  # requests.state


async def now(conn: AsyncConnection) -> float:
    """The database's clock, in seconds."""
    return float((await conn.execute(text(f"SELECT {NOW}"))).scalar_one())


async def join(conn: AsyncConnection, node: str, lease: float, address: str | None) -> int:
    """Register node as alive with a fresh lease (lease seconds: its first covers the rest of its start);
    its new epoch (bumped if the node id was known, which fences any older instance of it still running).
    Its live processes take the new epoch."""
    epoch = (await conn.execute(text(
        f"INSERT INTO nodes (node_id, epoch, state, heartbeat, lease_until, address, started) "
        f"VALUES (:node, 1, '{ALIVE}', {NOW}, {NOW} + :lease, :address, {NOW}) "
        f"ON CONFLICT (node_id) DO UPDATE SET epoch = nodes.epoch + 1, state = '{ALIVE}', "
        f"heartbeat = {NOW}, lease_until = {NOW} + :lease, address = :address, started = {NOW} "
        "RETURNING epoch"), {"node": node, "lease": lease, "address": address})).scalar_one()
    await conn.execute(text("UPDATE processes SET node_epoch = :epoch WHERE node = :node AND ended IS NULL"),
                       {"epoch": epoch, "node": node})
    return int(epoch)


async def heartbeat(conn: AsyncConnection, node: str, epoch: int, lease: float) -> bool:
    """Renew node's lease; False if it no longer holds epoch (it was taken over: fenced)."""
    row = (await conn.execute(text(
        f"UPDATE nodes SET heartbeat = {NOW}, lease_until = {NOW} + :lease "
        f"WHERE node_id = :node AND epoch = :epoch AND state = '{ALIVE}' RETURNING epoch"),
        {"node": node, "epoch": epoch, "lease": lease})).first()
    return row is not None


async def leave(conn: AsyncConnection, node: str, epoch: int) -> None:
    """A clean stop: the node's lease ends now, so another node adopts what it left at once."""
    await conn.execute(text(
        f"UPDATE nodes SET state = '{STOPPED}', lease_until = {NOW} "
        f"WHERE node_id = :node AND epoch = :epoch AND state = '{ALIVE}'"), {"node": node, "epoch": epoch})


async def fence_session(conn: AsyncConnection, node: str, epoch: int) -> None:
    """From now on, the fence trigger checks every write of this session against node's epoch."""
    await conn.execute(text("SELECT set_config('llmasos.node', :node, false), "
                            "set_config('llmasos.epoch', :epoch, false)"), {"node": node, "epoch": str(epoch)})


def fence_new_connections(engine: AsyncEngine, node: str, epoch: int) -> None:
    """Every connection engine opens from now on is a fenced session of node at epoch, as
    ``fence_session`` makes the writer's: a connection the server closed (a node paused past
    ``idle_in_transaction_session_timeout``, a restart) is replaced by a new one on its next use, and
    a new session that named no node would pass the fence trigger unchecked."""
    on_new_connections(engine, f"SELECT set_config('llmasos.node', '{node.replace(chr(39), chr(39) * 2)}', "
                                f"false), set_config('llmasos.epoch', '{int(epoch)}', false)")


def fence(node: str, epoch: int, on_fenced: Callable[[], None]) -> Callable[[AsyncConnection], Awaitable[None]]:
    """The check as a statement, for a transaction on a node's own connection: raise Fenced unless node
    still holds epoch."""
    query = text("SELECT epoch, state FROM nodes WHERE node_id = :node FOR KEY SHARE")
    params = {"node": node}

    async def check(conn: AsyncConnection) -> None:
        row = (await conn.execute(query, params)).first()
        if row is None or row.epoch != epoch or row.state != ALIVE:
            on_fenced()
            raise Fenced(f"cluster node {node!r} lost its lease (epoch {epoch}; the database now has "
                         f"{'no row' if row is None else f'epoch {row.epoch}, {row.state}'}): another node "
                         "adopted its processes, so it commits nothing more; restart it to rejoin")
    return check


@dataclass(slots=True)
class Takeover:
    """What one takeover transaction moved to the adopting node."""

    nodes: list[str]
    pids: list[int]


async def take_over(conn: AsyncConnection, me: str, epoch: int, live: list[str]) -> Takeover:
    """Mark every other node whose lease ran out dead (epoch bumped) and move its processes in the live
    states, and its unanswered requests, to me. Run inside a transaction that ``fence`` checked first."""
    dead = [r.node_id for r in await conn.execute(text(
        f"SELECT node_id FROM nodes WHERE node_id <> :me AND state IN ('{ALIVE}', '{STOPPED}') "
        f"AND lease_until < {NOW} ORDER BY node_id FOR UPDATE SKIP LOCKED"), {"me": me})]
    if not dead:
        return Takeover([], [])
    await conn.execute(text(f"UPDATE nodes SET state = '{DEAD}', epoch = epoch + 1 WHERE node_id = ANY(:dead)"),
                       {"dead": dead})
    pids = [r.pid for r in await conn.execute(text(
        "UPDATE processes SET node = :me, node_epoch = :epoch WHERE node = ANY(:dead) AND state = ANY(:live) "
        "RETURNING pid"), {"me": me, "epoch": epoch, "dead": dead, "live": live})]
    await conn.execute(text(f"UPDATE requests SET node = :me WHERE node = ANY(:dead) AND state = '{ASKED}'"),
                       {"me": me, "dead": dead})
    return Takeover(dead, sorted(pids))


async def reserve(conn: AsyncConnection, key: str, block: int) -> int:
    """Reserve the next block of numbers under meta key (next_pid, next_mail); the block's first number.

    Atomic across nodes: the row's update lock orders concurrent reservations."""
    limit = (await conn.execute(text(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + :block AS VARCHAR) WHERE key = :key "
        "RETURNING value"), {"key": key, "block": block})).scalar_one()
    return int(limit) - block


async def owner(conn: AsyncConnection, pid: int) -> Any:
    """pid's process row (with node), or None."""
    return (await conn.execute(text("SELECT * FROM processes WHERE pid = :pid"), {"pid": pid})).first()


async def rows(conn: AsyncConnection, *, not_node: str, states: list[str] | None, limit: int) -> list[Any]:
    """Process rows of other nodes (in states, or all), by pid, at most limit."""
    where = "node IS NOT NULL AND node <> :me" + (" AND state = ANY(:states)" if states is not None else "")
    return list(await conn.execute(text(f"SELECT * FROM processes WHERE {where} ORDER BY pid DESC LIMIT :limit"),
                                   {"me": not_node, "states": states, "limit": limit}))


async def load(conn: AsyncConnection, live: list[str]) -> dict[str, int]:
    """Alive node -> how many live processes it runs."""
    found = await conn.execute(text(
        f"SELECT n.node_id, COUNT(p.pid) AS procs FROM nodes n LEFT JOIN processes p ON p.node = n.node_id "
        f"AND p.state = ANY(:live) WHERE n.state = '{ALIVE}' GROUP BY n.node_id"), {"live": live})
    return {r.node_id: int(r.procs) for r in found}


async def ask(conn: AsyncConnection, node: str, pid: int, op: str, body: str | None) -> int:
    """Queue a request for node (the owner of pid); its id."""
    return int((await conn.execute(text(
        f"INSERT INTO requests (node, pid, op, body, state, created) VALUES (:node, :pid, :op, :body, "
        f"'{ASKED}', {NOW}) RETURNING id"), {"node": node, "pid": pid, "op": op, "body": body})).scalar_one())


async def waiting(conn: AsyncConnection, node: str) -> bool:
    """Whether a request waits for node (a plain read: the poll, between takes)."""
    return (await conn.execute(text(f"SELECT 1 FROM requests WHERE node = :node AND state = '{ASKED}' LIMIT 1"),
                               {"node": node})).first() is not None


async def take(conn: AsyncConnection, node: str, limit: int = 64) -> list[Any]:
    """Claim the requests queued for node (oldest first); each is applied at most once."""
    return list(await conn.execute(text(
        f"UPDATE requests SET state = '{TAKEN}' WHERE id IN (SELECT id FROM requests WHERE node = :node "
        f"AND state = '{ASKED}' ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING *"),
        {"node": node, "limit": limit}))


async def answer(conn: AsyncConnection, request: int, state: str, value: str | None,
                 error_type: str | None = None) -> None:
    await conn.execute(text("UPDATE requests SET state = :state, answer = :value, error_type = :etype "
                            "WHERE id = :id"), {"id": request, "state": state, "value": value, "etype": error_type})


async def outcome(conn: AsyncConnection, request: int) -> Any:
    """The request's row once answered (done or failed), deleted; None while it waits."""
    return (await conn.execute(text(
        f"DELETE FROM requests WHERE id = :id AND state IN ('{DONE}', '{FAILED}') RETURNING *"),
        {"id": request})).first()


class Blocks:
    """Cluster-unique numbers (pids, mailbox row ids) from blocks reserved in meta by ``reserve``.

    ``__next__`` is synchronous (the kernel asks for a pid while it starts a process); the node's
    cluster task keeps a spare block ready (``low`` says when to ``refill``), so a node only fails to
    hand out a number when more than a block is asked for between two refills.
    """

    def __init__(self, key: str, block: int, start: int) -> None:
        self.key, self.block = key, block
        self.next, self.limit = start, start + block
        self.spare: int | None = None  # the first number of a reserved block not yet in use

    def __iter__(self) -> Blocks:
        return self

    def __next__(self) -> int:
        if self.next >= self.limit:
            if self.spare is None:
                from llmasos.syscalls.errors import ProcessLimit

                raise ProcessLimit(f"this node used its whole block of {self.block} {self.key} numbers before "
                                   "the next was reserved; try again, or raise KernelConfig.pid_block")
            self.next, self.limit, self.spare = self.spare, self.spare + self.block, None
        n = self.next
        self.next += 1
        return n

    @property
    def low(self) -> bool:
        return self.spare is None

    def add(self, start: int) -> None:
        """The spare block, once its reservation (``reserve``) is committed."""
        self.spare = start

    def release(self) -> None:
        """Nothing goes back: other nodes reserve blocks past ours (single-node ``PidAllocator`` does)."""
