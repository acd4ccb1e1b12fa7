"""What the shell needs from a kernel, as one small async interface, and its in-process implementation.

Rule: the shell talks to a kernel only through ``KernelClient``, so the same REPL drives a kernel in
this process (``LocalClient``) or a daemon over the HTTP syscall API (a ``RemoteClient`` with the same
methods). Every method is async and returns plain records (``ProcInfo``, ``ExitStatus``, rows below),
never kernel internals; failures are ``LlmasosError`` with a message meant for the user.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio

from llmasos.errors import LlmasosError
from llmasos.syscalls.types import ExitStatus, ProcInfo

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel


class NotAvailable(LlmasosError):
    """This kernel (or this build of llmasos) does not offer what the command needs yet."""


@dataclass(frozen=True, slots=True)
class AppRow:
    """One line of `apps`."""

    name: str
    usage: str
    description: str
    source: str


@dataclass(frozen=True, slots=True)
class Row:
    """A generic (name, description, extra) line: tools, models."""

    name: str
    description: str = ""
    extra: str = ""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The model side of `top`: counters are totals since boot; rates are computed by the caller."""

    engine: str
    policy: str
    max_batch: int
    last_batch: int  # sequences in the latest forward step
    running: int  # admitted sequences (hold a KV cache)
    waiting: int  # queued, not yet admitted
    steps: int
    tokens: int
    busy_time: float  # seconds spent in forward steps
    resident_tokens: int
    max_resident_tokens: int
    uptime: float
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class MemView:
    """What `mem PID` shows: the process's context messages and its memory keys."""

    context: list[dict[str, Any]]
    keys: dict[str, list[str]]  # namespace -> keys
    note: str = ""  # why a part is missing, when it is


@runtime_checkable
class KernelClient(Protocol):
    """The shell's view of a kernel."""

    remote: bool  # True when the kernel is a daemon the shell only connects to
    where: str  # "in-process" or the daemon's URL

    async def apps(self) -> list[AppRow]: ...
    async def spawn(self, app: str, args: list[str], kwargs: dict[str, str], *, priority: int | None = None,
                    caps: dict[str, Any] | None = None) -> int: ...
    async def kill(self, pid: int) -> bool: ...
    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus: ...
    async def ended(self, pid: int) -> ProcInfo: ...
    async def ps(self, all: bool = False) -> list[ProcInfo]: ...
    async def info(self, pid: int) -> ProcInfo: ...
    async def write_stdin(self, pid: int, text: str) -> None: ...
    async def close_stdin(self, pid: int) -> None: ...
    async def output(self, pid: int) -> list[tuple[str, str]]: ...
    def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]: ...
    def strace(self, pid: int | None) -> AsyncIterator[str]: ...
    async def stats(self) -> EngineStats: ...
    async def policies(self) -> list[str]: ...
    async def set_policy(self, name: str) -> None: ...
    async def models(self) -> list[Row]: ...
    async def tools(self) -> list[Row]: ...
    async def mem(self, pid: int) -> MemView: ...


class LocalClient:
    """A KernelClient over a Kernel booted in this process."""

    remote = False
    where = "in-process"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def apps(self) -> list[AppRow]:
        from llmasos.apps.registry import list_apps

        return [AppRow(a.name, a.usage(), a.description, a.source or "") for a in list_apps()]

    async def spawn(self, app: str, args: list[str], kwargs: dict[str, str], *, priority: int | None = None,
                    caps: dict[str, Any] | None = None) -> int:
        return await self.kernel.spawn(app, *args, priority=priority, caps=caps, **kwargs)

    async def kill(self, pid: int) -> bool:
        return self.kernel.kill(pid)

    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus:
        return await self.kernel.wait(pid, timeout)

    async def ended(self, pid: int) -> ProcInfo:
        """Wait until pid ends, without reaping it (ps -a still lists it)."""
        await self.kernel.get(pid).done.wait()
        return self.kernel.info(pid)

    async def ps(self, all: bool = False) -> list[ProcInfo]:
        return self.kernel.ps(all)

    async def info(self, pid: int) -> ProcInfo:
        return self.kernel.info(pid)

    async def write_stdin(self, pid: int, text: str) -> None:
        self.kernel.write_stdin(pid, text)

    async def close_stdin(self, pid: int) -> None:
        self.kernel.close_stdin(pid)

    async def output(self, pid: int) -> list[tuple[str, str]]:
        return self.kernel.output(pid)

    async def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        async for chunk in self.kernel.follow(pid, history=history):
            yield chunk

    async def strace(self, pid: int | None) -> AsyncIterator[str]:
        if pid is not None:
            self.kernel.get(pid)  # NoSuchProcess for a bad pid
        with self.kernel.tracer.subscribe(pid) as events:
            if pid is None:
                async for event in events:
                    yield event.format()
                return
            proc = self.kernel.get(pid)
            while proc.alive:
                with anyio.move_on_after(0.5):  # re-check liveness: exit is not a syscall event
                    event = await events.receive()
                    yield event.format()
            for event in _drain(events):
                yield event.format()

    async def stats(self) -> EngineStats:
        k = self.kernel
        llm, engine = k.llm, k.engine
        if llm is None or engine is None:
            raise NotAvailable("the kernel is not booted")
        cap = engine.capacity()
        sched = llm.scheduler
        return EngineStats(
            engine=getattr(engine, "name", type(engine).__name__), policy=k.policy,
            max_batch=min(cap.max_batch, sched.limits.max_batch), last_batch=llm.last_batch,
            running=len(sched.running), waiting=len(sched.waiting), steps=llm.steps, tokens=llm.tokens,
            busy_time=llm.busy_time, resident_tokens=cap.resident_tokens,
            max_resident_tokens=min(cap.max_resident_tokens, sched.limits.max_resident_tokens),
            uptime=time.time() - (k.booted_at or time.time()),
        )

    async def policies(self) -> list[str]:
        from llmasos.kernel.sched import POLICIES

        return sorted(POLICIES)

    async def set_policy(self, name: str) -> None:
        self.kernel.set_policy(name)

    async def models(self) -> list[Row]:
        try:
            from llmasos.engine.models import list_models
        except ImportError as exc:
            raise NotAvailable(f"the model registry is not available: {exc}") from None
        current = getattr(self.kernel.engine, "name", "")
        rows = await anyio.to_thread.run_sync(list_models)
        out = []
        for m in rows:
            size = f"{m.size / 1e6:.0f} MB" if m.size else ""
            flags = ", ".join(f for f in ("loaded" if m.name == current else "",
                                          "cached" if m.cached else "") if f)
            out.append(Row(m.name, m.source, " ".join(x for x in (flags, size) if x)))
        if current and not any(r.name == current for r in out):
            out.insert(0, Row(current, "the running engine", "loaded"))
        return out

    async def tools(self) -> list[Row]:
        try:
            from llmasos.tools import REGISTRY
        except ImportError:
            raise NotAvailable("no tool registry in this build (llmasos.tools)") from None
        return [Row(t.name, t.description or "") for t in REGISTRY.all()]

    async def mem(self, pid: int) -> MemView:
        proc = self.kernel.get(pid)  # NoSuchProcess for a bad pid
        memory = getattr(self.kernel, "memory", None)
        if memory is None:
            return MemView([], {}, "this kernel runs without a memory manager (KernelConfig.memory=False)")
        from llmasos.kernel.paging import own_namespace

        store = memory.store
        context = [{"role": r.role, "content": r.content, "kind": r.kind} for r in await store.context(pid)]
        namespaces = [own_namespace(pid)]
        granted = proc.caps.as_dict().get("memory")
        if isinstance(granted, list):
            namespaces += [ns for ns in granted if ns not in namespaces]
        keys = {ns: await store.kv_keys(ns) for ns in namespaces}
        note = "" if isinstance(granted, list) else f"it may also use any other namespace; shown: {namespaces[0]}"
        return MemView(context, {ns: k for ns, k in keys.items() if k}, note)


def _drain(events: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(events.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return out


def connect(url: str) -> KernelClient:
    """A client for the kernel daemon at url (the HTTP syscall API)."""
    try:
        from llmasos.api.client import RemoteClient  # type: ignore[import-not-found]
    except ImportError:
        raise NotAvailable(
            f"cannot connect to {url}: this build has no HTTP syscall API yet (llmasos.api); "
            "run `llmasos shell` without --connect to use a kernel in this process"
        ) from None
    return RemoteClient(url)
