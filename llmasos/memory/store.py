"""The memory database's contents: process table, journal, mailboxes, key-value, notes, contexts.

Rule: every method is one operation on the Writer's queue, so it is ordered with every other one and
committed before it returns (``post_*`` methods only queue it). Values an app gave are codec JSON.
Writes that a retried syscall may repeat take an idempotency key and do nothing the second time.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from llmasos.memory import codec
from llmasos.memory import schema as s
from llmasos.memory.receipt import Receipt
from llmasos.memory.writer import Writer
from llmasos.syscalls.errors import InvalidArguments
from llmasos.syscalls.types import Note

_WORD = re.compile(r"\w+", re.UNICODE)
_IN_CHUNK = 500  # pids bound in one IN (...): SQLite before 3.32 took at most 999 parameters a statement
PRUNE_CHUNK = _IN_CHUNK  # processes pruned in one transaction (others' operations run between two)


class Store:
    """Typed access to the memory database through one Writer."""

    def __init__(self, writer: Writer) -> None:
        self.w = writer

    # -- meta --------------------------------------------------------------------------------

    async def meta(self) -> dict[str, str]:
        async def op(conn: AsyncConnection) -> dict[str, str]:
            return {r.key: r.value for r in await conn.execute(select(s.meta))}
        return await self.w.run(op, repeatable=True)

    async def set_meta(self, key: str, value: str) -> None:
        await self.w.run(_set_meta(key, value), repeatable=True)

    def post_meta(self, key: str, value: str, *, urgent: bool = True) -> None:
        """Queue a new value for a key the first migration made (``next_pid``)."""
        self.w.post(rows=[("meta=", {"key": key, "value": value})], urgent=urgent)

    # -- processes ---------------------------------------------------------------------------

    def post_process(self, row: dict[str, Any], *, urgent: bool) -> Receipt:
        return self.w.post(rows=[("process+", row)], urgent=urgent, owner=row["parent"] or None)

    def post_process_end(self, pid: int, values: dict[str, Any], *, urgent: bool) -> None:
        """Queue how pid ended (state, ended, exit_value, error, usage); its unread mail goes."""
        self.w.post(rows=[("process-end", {"pid": pid, **values}),
                          ("mailbox-of", {"pid": pid})], urgent=urgent, owner=pid)

    def post_process_priority(self, pid: int, priority: int, *, urgent: bool) -> None:
        """Queue pid's new priority (renice)."""
        self.w.post(rows=[("process-priority", {"pid": pid, "priority": priority})], urgent=urgent, owner=pid)

    def post_process_lost(self, pid: int, state: str, why: str, *, urgent: bool = True) -> None:
        """Queue that recovery could not restart pid (state LOST or KILLED, and why); its mail goes."""
        self.w.post(rows=[("process-lost", {"pid": pid, "state": state, "error": why,
                                            "ended": time.time()}),
                          ("mailbox-of", {"pid": pid})], urgent=urgent)

    async def set_restarts(self, counts: list[tuple[int, int, int]], last_stop: str) -> None:
        """Record (pid, restarts, restart_mark) for each of these processes, and ``meta.last_stop``."""
        async def op(conn: AsyncConnection) -> None:
            if counts:
                await conn.execute(
                    text("UPDATE processes SET restarts = :restarts, restart_mark = :mark WHERE pid = :pid"),
                    [{"pid": pid, "restarts": restarts, "mark": mark} for pid, restarts, mark in counts])
            await _set_meta("last_stop", last_stop)(conn)
        await self.w.run(op)

    def post_restarts_reset(self, pid: int) -> None:
        """Queue restarts = 0 and restart_mark = -1 for pid (as if it had never been restored)."""
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(update(s.processes).where(s.processes.c.pid == pid)
                               .values(restarts=0, restart_mark=-1))
        self.w.post(op, urgent=True, owner=pid)

    async def processes(self, states: list[str] | None = None, pids: list[int] | None = None,
                        parents: list[int] | None = None, node: str | None = None) -> list[Any]:
        """Process rows (all, or those in states / with pids / with parents / run by a cluster node), by pid."""
        query = select(s.processes).order_by(s.processes.c.pid)
        if node is not None:
            query = query.where(s.processes.c.node == node)
        if states is not None:
            query = query.where(s.processes.c.state.in_(states))
        if pids is not None:
            query = query.where(s.processes.c.pid.in_(pids))
        if parents is not None:
            query = query.where(s.processes.c.parent.in_(parents))

        async def op(conn: AsyncConnection) -> list[Any]:
            return list(await conn.execute(query))
        return await self.w.run(op, repeatable=True)

    async def spawned_by(self, keys: list[str]) -> dict[str, int]:
        """spawn idempotency key -> the pid it made, for these keys."""
        if not keys:
            return {}

        async def op(conn: AsyncConnection) -> dict[str, int]:
            rows = await conn.execute(select(s.processes.c.spawn_key, s.processes.c.pid)
                                      .where(s.processes.c.spawn_key.in_(keys)))
            return {r.spawn_key: r.pid for r in rows}
        return await self.w.run(op, repeatable=True)

    async def prune(self, ended_before: float) -> int:
        """Delete the rows of (up to PRUNE_CHUNK) processes that ended before ended_before and that no
        live process can wait for (their parent's row, if any, has ended too), with their journal, mailbox
        and context rows; notes and key-value memory stay. Returns how many processes went."""
        p, parent = s.processes, s.processes.alias("parent")
        waited = select(parent.c.pid).where(parent.c.pid == p.c.parent, parent.c.ended.is_(None)).exists()
        query = select(p.c.pid).where(p.c.ended < ended_before, ~waited).limit(PRUNE_CHUNK)

        async def op(conn: AsyncConnection) -> int:
            pids = [r.pid for r in await conn.execute(query)]
            if pids:
                for table in (s.journal, s.mailbox, s.context, s.processes):
                    await conn.execute(delete(table).where(table.c.pid.in_(pids)))
            return len(pids)
        return await self.w.run(op)

    # -- journal and mailboxes ---------------------------------------------------------------

    async def journal_for(self, pids: list[int]) -> dict[int, dict[int, Any]]:
        """pid -> n -> journal row, for these processes."""
        out: dict[int, dict[int, Any]] = defaultdict(dict)

        async def op(conn: AsyncConnection) -> None:
            out.clear()  # (the writer may run it again, on a new connection: docs/memory.md)
            for i in range(0, len(pids), _IN_CHUNK):
                rows = await conn.execute(select(s.journal).where(s.journal.c.pid.in_(pids[i:i + _IN_CHUNK])))
                for r in rows:
                    out[r.pid][r.n] = r
        await self.w.run(op, repeatable=True)
        return out

    async def mailboxes(self, pids: list[int]) -> dict[int, list[Any]]:
        """pid -> its unread messages' rows, oldest first."""
        out: dict[int, list[Any]] = defaultdict(list)

        async def op(conn: AsyncConnection) -> None:
            out.clear()  # (the writer may run it again, on a new connection: docs/memory.md)
            for i in range(0, len(pids), _IN_CHUNK):
                rows = await conn.execute(select(s.mailbox).where(s.mailbox.c.pid.in_(pids[i:i + _IN_CHUNK]))
                                          .order_by(s.mailbox.c.id))
                for r in rows:
                    out[r.pid].append(r)
        await self.w.run(op, repeatable=True)
        return out

    async def max_mailbox_id(self) -> int:
        async def op(conn: AsyncConnection) -> int:
            return (await conn.execute(select(func.max(s.mailbox.c.id)))).scalar() or 0
        return await self.w.run(op, repeatable=True)

    # -- key-value ---------------------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> tuple[bool, Any]:
        """(found, value)."""
        async def op(conn: AsyncConnection) -> tuple[bool, Any]:
            row = (await conn.execute(select(s.kv.c.value).where(
                and_(s.kv.c.namespace == namespace, s.kv.c.key == key)))).first()
            return (False, None) if row is None else (True, codec.loads(row.value))
        return await self.w.run(op, repeatable=True)

    async def kv_set(self, namespace: str, key: str, value: Any, *, max_size: int | None = None) -> None:
        """Store value under key; InvalidArguments if its JSON is over max_size characters."""
        data, now = codec.dumps(value), time.time()
        if max_size is not None and len(data) > max_size:
            raise InvalidArguments(f"a value of {len(data):,} characters stored is over the limit of "
                                   f"{max_size:,} (KernelConfig.max_value_size); store less, or split it")

        async def op(conn: AsyncConnection) -> None:
            where = and_(s.kv.c.namespace == namespace, s.kv.c.key == key)
            done = await conn.execute(update(s.kv).where(where).values(value=data, updated=now))
            if done.rowcount == 0:
                await conn.execute(insert(s.kv), {"namespace": namespace, "key": key, "value": data,
                                                  "updated": now})
        await self.w.run(op, repeatable=True)

    async def kv_delete(self, namespace: str, key: str) -> bool:
        async def op(conn: AsyncConnection) -> bool:
            done = await conn.execute(delete(s.kv).where(and_(s.kv.c.namespace == namespace,
                                                              s.kv.c.key == key)))
            return done.rowcount > 0
        return await self.w.run(op)

    async def kv_keys(self, namespace: str, prefix: str = "") -> list[str]:
        async def op(conn: AsyncConnection) -> list[str]:
            query = select(s.kv.c.key).where(s.kv.c.namespace == namespace).order_by(s.kv.c.key)
            rows = [r.key for r in await conn.execute(query)]
            return [k for k in rows if k.startswith(prefix)]
        return await self.w.run(op, repeatable=True)

    # -- notes -------------------------------------------------------------------------------

    async def remember(self, namespace: str, text_: str, tags: tuple[str, ...] = (),
                       key: str | None = None) -> int:
        """Store a note; with a key already used, return that note's id and store nothing."""
        async def op(conn: AsyncConnection) -> int:
            return await add_note(conn, namespace, text_, tags, key)
        return await self.w.run(op)

    async def search(self, namespace: str, query: str, k: int = 5, *, max_terms: int | None = None) -> list[Note]:
        """The k notes in namespace that best match query's words, best first.

        InvalidArguments if the query has more than max_terms distinct words (a query's cost grows
        with them, and it holds the one connection while it runs)."""
        terms = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
        if max_terms is not None and len(terms) > max_terms:
            raise InvalidArguments(f"a search query of {len(terms):,} distinct words is over the limit of "
                                   f"{max_terms:,} (KernelConfig.max_search_terms); search for fewer words")
        if not terms or k < 1:
            return []

        async def op(conn: AsyncConnection) -> list[Note]:
            dialect = conn.dialect.name
            if dialect == "sqlite":
                match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
                rows = await conn.execute(text(
                    "SELECT n.id, n.namespace, n.text, n.tags, n.created, -bm25(notes_fts) AS score "
                    "FROM notes_fts JOIN notes n ON n.id = notes_fts.rowid "
                    "WHERE notes_fts MATCH :q AND n.namespace = :ns ORDER BY score DESC, n.id LIMIT :k"
                ), {"q": match, "ns": namespace, "k": k})
                return [_note(r, r.score) for r in rows]
            if dialect == "postgresql":
                rows = await conn.execute(text(
                    "SELECT id, namespace, text, tags, created, ts_rank(to_tsvector('simple', text || ' ' "
                    "|| tags), to_tsquery('simple', :q)) AS score FROM notes WHERE namespace = :ns AND "
                    "to_tsvector('simple', text || ' ' || tags) @@ to_tsquery('simple', :q) "
                    "ORDER BY score DESC, id LIMIT :k"
                ), {"q": " | ".join(terms), "ns": namespace, "k": k})
                return [_note(r, float(r.score)) for r in rows]
            rows = await conn.execute(select(s.notes).where(s.notes.c.namespace == namespace))
            return _rank_portably(list(rows), terms, k)
        return await self.w.run(op, repeatable=True)

    # -- contexts ----------------------------------------------------------------------------

    async def context(self, pid: int) -> list[Any]:
        """pid's context rows: the summary first (if any), then turns oldest first."""
        async def op(conn: AsyncConnection) -> list[Any]:
            rows = await conn.execute(select(s.context).where(s.context.c.pid == pid)
                                      .order_by(s.context.c.id))
            rows = list(rows)
            return [r for r in rows if r.kind == "summary"] + [r for r in rows if r.kind != "summary"]
        return await self.w.run(op, repeatable=True)

    async def append_context(self, pid: int, messages: list[dict[str, Any]]) -> None:
        """Append messages ({role, content, tokens, key}) to pid's context, skipping used keys."""
        async def op(conn: AsyncConnection) -> None:
            now = time.time()
            for m in messages:
                if m.get("key") and (await conn.execute(select(s.context.c.id).where(
                        s.context.c.key == m["key"]))).first() is not None:
                    continue
                await conn.execute(insert(s.context), {"pid": pid, "kind": m.get("kind", "turn"),
                                                       "created": now, **m})
        await self.w.run(op)

    async def page_out(self, pid: int, namespace: str, evicted: list[Any], summary: str,
                       summary_tokens: int) -> None:
        """Move evicted context rows to notes and make summary the context's head, atomically."""
        async def op(conn: AsyncConnection) -> None:
            for r in evicted:
                await add_note(conn, namespace, f"{r.role}: {r.content}", ("context", f"pid{pid}"),
                               f"page-{pid}-{r.id}")
            ids = [r.id for r in evicted]
            await conn.execute(delete(s.context).where(s.context.c.id.in_(ids)))
            await conn.execute(delete(s.context).where(and_(s.context.c.pid == pid,
                                                            s.context.c.kind == "summary")))
            await conn.execute(insert(s.context), {
                "pid": pid, "role": "system", "content": summary, "tokens": summary_tokens,
                "kind": "summary", "key": None, "created": time.time(),
            })
        await self.w.run(op)


def _set_meta(key: str, value: str):  # noqa: ANN202
    async def op(conn: AsyncConnection) -> None:
        done = await conn.execute(update(s.meta).where(s.meta.c.key == key).values(value=value))
        if done.rowcount == 0:
            await conn.execute(insert(s.meta), {"key": key, "value": value})
    return op


async def add_note(conn: AsyncConnection, namespace: str, text_: str, tags: tuple[str, ...],
                   key: str | None) -> int:
    if key is not None:
        row = (await conn.execute(select(s.notes.c.id).where(s.notes.c.key == key))).first()
        if row is not None:
            return row.id
    done = await conn.execute(insert(s.notes).returning(s.notes.c.id), {
        "namespace": namespace, "text": text_, "tags": json.dumps(list(tags)), "created": time.time(),
        "key": key,
    })
    return done.scalar_one()


def _note(row: Any, score: float) -> Note:
    return Note(id=row.id, text=row.text, tags=tuple(json.loads(row.tags)), score=round(score, 6),
                created=row.created, namespace=row.namespace)


def _rank_portably(rows: list[Any], terms: list[str], k: int) -> list[Note]:
    """Term-frequency ranking for databases without a full-text index."""
    scored = []
    for r in rows:
        words = [w.lower() for w in _WORD.findall(r.text + " " + r.tags)]
        hits = sum(words.count(t) for t in terms)
        if hits:
            scored.append((hits / (1 + len(words)) ** 0.5, r))
    scored.sort(key=lambda x: (-x[0], x[1].id))
    return [_note(r, score) for score, r in scored[:k]]
