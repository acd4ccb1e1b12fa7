"""LocalClient: a KernelClient over a kernel in this process, and how a face boots one.

    async with LocalClient.boot(kernel_config("fake")) as client:
        pid = await client.spawn("echo", ["hi"], {})

Rule: this is the only face module that reaches into the kernel, the engine, memory, tools and apps;
the shell, the CLI and the HTTP API hold a ``LocalClient`` (or a ``RemoteClient``) and see only the
records of client/records.py. One door: every request that changes something (spawn, kill, wait,
send, stdin, the policy) is a syscall of the root process (pid 0, ``kernel.root``), so it is checked,
accounted and shown by strace like any process's; what it spawns has ppid 0, as before.
Reading the tables (ps, logs, trace, stats, mem) is looking, like reading /proc: it reads the kernel's
records directly. Kernel modules are imported where they are used, so a face that only lists apps does
not load a model runtime.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.client.records import AppRow, EngineStats, MemView, NotAvailable, Row
from llmasos.syscalls.types import ExitStatus, ProcInfo

if TYPE_CHECKING:
    from llmasos.kernel.config import KernelConfig
    from llmasos.kernel.kernel import Kernel
    from llmasos.syscalls.calls import Syscall


def kernel_config(model: str | None = None, policy: str = "fifo") -> KernelConfig:
    """The config for a face's --model and --policy: a model name or path, None (the default model) or
    'fake' (the scripted test engine)."""
    from llmasos.kernel.config import KernelConfig

    if model == "fake":
        from llmasos.engine.fake import FakeEngine

        return KernelConfig(engine=FakeEngine(), policy=policy)
    return KernelConfig(engine=model, policy=policy)


def app_rows() -> list[AppRow]:
    """The apps that can be spawned by name (no kernel needed)."""
    from llmasos.apps.registry import list_apps

    return [AppRow(a.name, a.usage(), a.description, a.source or "") for a in list_apps()]


def check_app(app: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Find app and check its arguments without a kernel: NoSuchApp or InvalidArguments (with the usage
    line) now, before a model loads; the spawn checks them again."""
    from llmasos.apps.registry import find_app

    find_app(app).bind(tuple(args), dict(kwargs))


def policy_names() -> list[str]:
    """The scheduling policies a kernel can switch to (no kernel needed)."""
    from llmasos.kernel.sched import POLICIES

    return sorted(POLICIES)


def model_rows(current: str = "") -> list[Row]:
    """The models this machine can run without a network; current (the loaded one) is marked."""
    try:
        from llmasos.engine.models import list_models
    except ImportError as exc:
        raise NotAvailable(f"the model registry is not available: {exc}") from None
    out = []
    for m in list_models():
        size = f"{m.size / 1e6:.0f} MB" if m.size else ""
        flags = ", ".join(f for f in ("loaded" if m.name == current else "", "cached" if m.cached else "") if f)
        out.append(Row(m.name, m.source, " ".join(x for x in (flags, size) if x)))
    if current and not any(r.name == current for r in out):
        out.insert(0, Row(current, "the running engine", "loaded"))
    return out


class LocalClient:
    """A KernelClient over a Kernel booted in this process."""

    remote = False
    where = "in-process"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def _syscall(self, call: Syscall) -> Any:
        """call, made by the root process (pid 0)."""
        return await self.kernel.root.syscall(call)

    @classmethod
    @asynccontextmanager
    async def boot(cls, config: KernelConfig) -> AsyncIterator[LocalClient]:
        """Boot a kernel from config, yield a client over it, shut the kernel down on the way out."""
        from llmasos.kernel.kernel import Kernel

        async with Kernel(config) as kernel:
            yield cls(kernel)

    @property
    def home(self) -> Path:
        """The kernel's $LLMASOS_HOME (its database, the shell's history, the API token)."""
        return self.kernel.config.home

    async def apps(self) -> list[AppRow]:
        return app_rows()

    async def spawn(self, app: str, args: list[Any], kwargs: dict[str, Any], *, priority: int | None = None,
                    caps: dict[str, Any] | None = None) -> int:
        """Start app as a child of the root process (ppid 0)."""
        from llmasos.syscalls.calls import Spawn

        return await self._syscall(Spawn(app, tuple(args), dict(kwargs), priority, caps))

    async def kill(self, pid: int) -> bool:
        from llmasos.syscalls.calls import Kill

        return await self._syscall(Kill(pid))

    async def renice(self, pid: int, priority: int) -> None:
        """Give live process pid a new priority (a nice value: lower runs first under the priority policy)."""
        from llmasos.syscalls.calls import Renice

        await self._syscall(Renice(pid, priority))

    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus:
        from llmasos.syscalls.calls import Wait

        return await self._syscall(Wait(pid, timeout))

    async def ended(self, pid: int) -> ProcInfo:
        """Wait until pid ends, without reaping it (ps -a still lists it)."""
        await self.kernel.get(pid).done.wait()
        return self.kernel.info(pid)

    async def alive(self, pid: int) -> bool:
        """Whether pid still runs (NoSuchProcess for a bad pid)."""
        return self.kernel.get(pid).alive

    async def ps(self, all: bool = False) -> list[ProcInfo]:
        return self.kernel.ps(all)

    async def info(self, pid: int) -> ProcInfo:
        return self.kernel.info(pid)

    async def write_stdin(self, pid: int, text: str) -> None:
        from llmasos.syscalls.calls import Stdin

        await self._syscall(Stdin(pid, text))

    async def close_stdin(self, pid: int) -> None:
        from llmasos.syscalls.calls import Stdin

        await self._syscall(Stdin(pid, close=True))

    async def send(self, pid: int, body: Any) -> None:
        from llmasos.syscalls.calls import Send

        await self._syscall(Send(pid, body))

    async def output(self, pid: int) -> list[tuple[str, str]]:
        return self.kernel.output(pid)

    async def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        async for chunk in self.kernel.follow(pid, history=history):
            yield chunk

    async def trace(self, pid: int | None) -> list[str]:
        """The recent syscalls of pid (None: of every process and the root's; 0: the root process's, the
        faces' requests), oldest first, as strace prints them."""
        k = self.kernel
        if pid is None:
            procs = [k.root_process, *k.processes.values()]
        else:
            procs = [k.root_process if pid == 0 else k.get(pid)]
        events = [e for p in procs for e in p.trace or ()]
        return [e.format() for e in sorted(events, key=lambda e: e.start)]

    async def strace(self, pid: int | None) -> AsyncIterator[str]:
        if pid:
            self.kernel.get(pid)  # NoSuchProcess for a bad pid (0 is the root process)
        with self.kernel.tracer.subscribe(pid) as events:
            if pid is None:
                async for event in events:
                    yield event.format()
                return
            proc = self.kernel.root_process if pid == 0 else self.kernel.get(pid)
            while proc.alive:
                with anyio.move_on_after(0.5):  # re-check liveness: exit is not a syscall event
                    event = await events.receive()
                    yield event.format()
            for event in _drain(events):
                yield event.format()

    def end_streams(self) -> None:
        """End every follow and strace stream now (a daemon shutting down: its clients see them end)."""
        self.kernel.tracer.close()
        for proc in self.kernel.processes.values():
            if proc.output is not None:
                proc.output.close()

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
        return policy_names()

    async def set_policy(self, name: str) -> None:
        from llmasos.syscalls.calls import SetPolicy

        await self._syscall(SetPolicy(name))

    async def models(self) -> list[Row]:
        return await anyio.to_thread.run_sync(model_rows, getattr(self.kernel.engine, "name", ""))

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
        notes = []
        if not context:  # no persistent context (sys.chat): the messages it gave the model last, and the reply
            context = _last_exchange(proc.trace or ())
            if context:
                notes.append("no persistent context (it passes its own messages); shown: its last model call")
        namespaces = [own_namespace(pid)]
        granted = proc.caps.as_dict().get("memory")
        if isinstance(granted, list):
            namespaces += [ns for ns in granted if ns not in namespaces]
        keys = {ns: await store.kv_keys(ns) for ns in namespaces}
        if not isinstance(granted, list):
            notes.append(f"it may also use any other namespace; shown: {namespaces[0]}")
        return MemView(context, {ns: k for ns, k in keys.items() if k}, "; ".join(notes))


def _last_exchange(trace: Any) -> list[dict[str, Any]]:
    """The messages of the latest generate in a process's trace, then its reply (a chat's conversation)."""
    from llmasos.syscalls.calls import Generate

    for event in reversed(trace):
        call = event.call
        if not isinstance(call, Generate) or event.error is not None:
            continue
        if call.messages is not None:
            out = [{"role": str(m.get("role", "")), "content": _content(m), "kind": "call"} for m in call.messages]
        else:
            out = [{"role": "user", "content": call.prompt or "", "kind": "call"}]
        reply = getattr(event.result, "completion", event.result)  # a stream: its Completion once it ended
        if reply is not None and hasattr(reply, "text"):
            out.append({"role": "assistant", "content": _content({"content": reply.text,
                                                                  "tool_calls": reply.tool_calls}),
                        "kind": "reply"})
        return out
    return []


def _content(message: dict[str, Any]) -> str:
    """A message's text, with its tool calls written out."""
    calls = message.get("tool_calls") or ()
    shown = [f"{_get(c, 'name')}({_get(c, 'arguments')})" for c in calls]
    return " ".join([message.get("content") or "", *(f"-> {s}" for s in shown)]).strip()


def _get(call: Any, name: str) -> Any:
    if isinstance(call, dict):
        return call.get(name, (call.get("function") or {}).get(name, ""))
    return getattr(call, name, "")


def _drain(events: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(events.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return out
