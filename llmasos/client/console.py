"""What the web console reads beyond ``KernelClient``: apps with their parameters and manifests, a
process's context-window usage, and one live feed of what changed (rows, model counters, syscalls).

    feed = ConsoleFeed(local)
    async for kind, data in feed.events(interval=0.5):   # ("hello", {...}), then ("procs"|"stats"|"trace", ...)
        ...

Rule: like ``LocalClient``'s reads this only looks (the process table, the engine's counters, the
scheduler's sequences, the trace bus), as reading /proc does; it never changes anything, so it needs no
syscall, and it is the one client module beside local.py that touches the kernel. The feed sends the
whole table once, then only the rows that changed and the pids that left, so a browser never polls it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.client.records import NotAvailable
from llmasos.syscalls.types import as_dict

if TYPE_CHECKING:
    from llmasos.client.local import LocalClient

TRACE_LINES = 200  # syscall lines sent per tick at most; the rest are counted as dropped
TTFT_SEEN = 4096  # sequence ids remembered so a time to first token is reported once


def _plain(v: Any) -> Any:
    """A default value as JSON can hold it (anything else as its repr)."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, bool, int, float)) for x in v):
        return list(v)
    return repr(v)


KINDS = {"POSITIONAL_ONLY": "positional", "POSITIONAL_OR_KEYWORD": "named", "VAR_POSITIONAL": "rest",
         "KEYWORD_ONLY": "option", "VAR_KEYWORD": "options"}


def app_details() -> list[dict[str, Any]]:
    """Every app that can be spawned by name: its parameters (main's, Sys left out) and its manifest."""
    from llmasos.apps.registry import list_apps

    out = []
    for app in list_apps():
        sig = app.signature
        params = []
        for i, p in enumerate(sig.parameters.values() if sig is not None else ()):
            if i == 0:
                continue
            hint = p.annotation if p.annotation is not p.empty else ""
            params.append({
                "name": p.name, "kind": KINDS[p.kind.name],
                "required": p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
                "default": None if p.default is p.empty else _plain(p.default),
                "type": hint if isinstance(hint, str) else getattr(hint, "__name__", repr(hint)),
                "secret": p.name in app.secret,
            })
        out.append({
            "name": app.name, "description": app.description, "usage": app.usage(), "source": app.source or "",
            "params": params,
            "manifest": {"version": app.version, "tools": list(app.tools), "memory": list(app.memory),
                         "can_spawn": app.can_spawn, "max_children": app.max_children, "priority": app.priority,
                         "restartable": app.restartable, "token_budget": app.token_budget,
                         "syscall_budget": app.syscall_budget, "time_budget": app.time_budget,
                         "model_time_budget": app.model_time_budget, "signal": app.signal,
                         "see_args": app.see_args, "sandbox": app.sandbox, "trusted": app.trusted},
        })
    return out


async def context_usage(local: LocalClient, pid: int) -> dict[str, Any]:
    """How much of the model's context window pid's context holds: {pid, messages, tokens, window}."""
    view = await local.mem(pid)  # NoSuchProcess for a bad pid
    engine = local.kernel.engine
    if engine is None:
        raise NotAvailable("the kernel is not booted")
    text = "\n".join(str(m.get("content", "")) for m in view.context)
    tokens = await anyio.to_thread.run_sync(engine.count_tokens, text) if text else 0
    return {"pid": pid, "messages": len(view.context), "tokens": tokens, "window": engine.context_window,
            "note": view.note}


class ConsoleFeed:
    """The console's live view of one kernel, computed tick by tick from what ``LocalClient`` reads."""

    def __init__(self, local: LocalClient) -> None:
        self.local = local
        self._ttft_seen: dict[int, None] = {}

    def _ttft(self) -> list[float]:
        """Times to first token (seconds) of the sequences that got theirs since the last tick and are
        still in the scheduler: a sample (a sequence that starts and ends between two ticks is missed)."""
        llm = self.local.kernel.llm
        if llm is None:
            return []
        out = []
        sched = llm.scheduler
        for seq in (*sched.running, *sched.waiting):
            if seq.first_token_at is None or seq.sid in self._ttft_seen:
                continue
            self._ttft_seen[seq.sid] = None
            out.append(max(seq.first_token_at - seq.arrival, 0.0))
        while len(self._ttft_seen) > TTFT_SEEN:
            del self._ttft_seen[next(iter(self._ttft_seen))]
        return out

    async def _stats(self) -> dict[str, Any]:
        stats = as_dict(await self.local.stats())
        stats["ttft"] = self._ttft()
        stats["time"] = time.time()
        return stats

    async def events(self, interval: float = 0.5, trace: bool = True) -> AsyncIterator[tuple[str, Any]]:
        """("hello", the table, stats, policies, context window), then each tick what changed: ("procs",
        {changed, gone}), ("stats", counters), ("trace", {lines, dropped}); ends when the kernel's streams
        end (a daemon shutting down)."""
        kernel = self.local.kernel
        procs = {p.pid: as_dict(p) for p in await self.local.ps(all=True)}
        engine = kernel.engine
        yield "hello", {"procs": list(procs.values()), "stats": await self._stats(),
                        "policies": await self.local.policies(),
                        "context_window": getattr(engine, "context_window", None), "interval": interval}
        subscription = kernel.tracer.subscribe(None)  # (also how the feed learns that the daemon stops)
        try:
            while True:
                await anyio.sleep(interval)
                now = {p.pid: as_dict(p) for p in await self.local.ps(all=True)}
                changed = [row for pid, row in now.items() if procs.get(pid) != row]
                gone = [pid for pid in procs if pid not in now]
                procs = now
                if changed or gone:
                    yield "procs", {"changed": changed, "gone": gone}
                yield "stats", await self._stats()
                lines, dropped, ended = _drain(subscription, TRACE_LINES if trace else 0)
                if trace and (lines or dropped):
                    yield "trace", {"lines": lines, "dropped": dropped}
                if ended:
                    return
        finally:
            subscription.close()


def _drain(events: Any, limit: int) -> tuple[list[str], int, bool]:
    """What the trace bus holds now: (up to limit formatted lines, how many more were dropped, whether
    the bus closed the stream)."""
    lines: list[str] = []
    dropped = 0
    while True:
        try:
            event = events.receive_nowait()
        except anyio.WouldBlock:
            return lines, dropped, False
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return lines, dropped, True
        if len(lines) < limit:
            lines.append(event.format())
        else:
            dropped += 1
