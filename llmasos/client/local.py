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

from llmasos.client.records import AppRow, EngineStats, MemView, ModelStats, NotAvailable, Row
from llmasos.syscalls.types import ExitStatus, ModelInfo, ProcInfo

if TYPE_CHECKING:
    from llmasos.kernel.cluster import Cluster
    from llmasos.kernel.config import KernelConfig
    from llmasos.kernel.configfile import BootApp, Deployment
    from llmasos.kernel.kernel import Kernel
    from llmasos.syscalls.calls import Syscall


def kernel_config(model: str | list[str] | None = None, policy: str | None = "fifo") -> KernelConfig:
    """The config for a face's --model and --policy: a model name or path, None (the default model) or
    'fake' (the scripted test engine); several (a list), each NAME=SPEC or a bare SPEC (the default)."""
    from llmasos.kernel.config import KernelConfig

    return KernelConfig(**_model_fields(model), policy=policy or "fifo")


def _model_fields(model: str | list[str] | None) -> dict[str, Any]:
    """KernelConfig's engine (one bare --model), or models and default_model (several, or NAME=SPEC)."""
    from llmasos.kernel.config import ConfigError
    from llmasos.kernel.models import ModelSpecError, check_model_name

    specs = [model] if isinstance(model, str) else list(model or [])
    named: list[tuple[str | None, str]] = []
    for spec in specs:
        name, eq, rest = spec.partition("=")
        try:
            named.append((check_model_name(name), rest) if eq else (None, spec))
        except ModelSpecError:
            named.append((None, spec))  # a spec with "=" in it (a URL's query), not NAME=SPEC
    if not named:
        return {"engine": None}
    if len(named) == 1 and named[0][0] is None:
        spec = named[0][1]
        if spec == "fake":
            from llmasos.engine.fake import FakeEngine

            return {"engine": FakeEngine()}
        return {"engine": spec}
    bare = [spec for name, spec in named if name is None]
    if len(bare) > 1:
        raise ConfigError(f"--model: give one bare SPEC at most (the default model) and name the others "
                          f"NAME=SPEC; got {len(bare)} bare ones")
    models: dict[str, Any] = {}
    default = None
    for name, spec in named:
        if name is None:
            try:
                name = check_model_name(spec)
            except ModelSpecError:
                name = "default"
            default = name
        if name in models:
            raise ConfigError(f"--model: model {name!r} is given twice")
        models[name] = spec
    return {"models": models, "default_model": default}


def deployment(config: str | Path | None = None, model: str | list[str] | None = None,
               policy: str | None = None) -> Deployment:
    """What a face boots: the config file (config, else ./llmasos.toml if there is one) with --model and
    --policy over it (--model replaces the file's models); without a file, kernel_config's."""
    from llmasos.kernel.configfile import Deployment, find_config, load_config

    path = find_config(config)
    if path is None:
        return Deployment(kernel_config(model, policy))
    overrides: dict[str, Any] = {}
    if model:
        overrides = {"models": None, "default_model": None, **_model_fields(model)}
    if policy:
        overrides["policy"] = policy
    return load_config(path, **overrides)


def cluster_config(config: KernelConfig, database: str | None, node: str | None,
                   lease: float | None) -> KernelConfig:
    """config with serve's --database, --node and --lease: a postgresql:// database (or a node id) makes
    the kernel a cluster node (heartbeat: a quarter of the lease, at most 2s). ConfigError if invalid."""
    from dataclasses import replace

    if database is None and node is None and lease is None:
        return config
    cluster = node is not None or (database or "").split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")
    changes: dict[str, Any] = {"database": database if database is not None else config.database,
                               "cluster": cluster, "node": node}
    if lease is not None:
        changes.update(lease=lease, heartbeat=min(config.heartbeat, lease / 4) if lease > 0 else lease)
    return replace(config, **changes)


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


def model_rows(states: dict[str, str]) -> list[Row]:
    """The models this machine can run without a network, each with what the kernel says of it (states:
    name -> loaded, loading, loadable, or broken and why: the models syscall); loaded ones that the
    library does not list (an Engine, a path) come first."""
    try:
        from llmasos.engine.models import list_models
    except ImportError as exc:
        raise NotAvailable(f"the model registry is not available: {exc}") from None
    out = []
    for m in list_models():
        size = f"{m.size / 1e6:.0f} MB" if m.size else ""
        flags = ", ".join(f for f in (states.get(m.name, ""), "cached" if m.cached else "") if f)
        out.append(Row(m.name, m.source, " ".join(x for x in (flags, size) if x)))
    listed = {r.name for r in out}
    out[:0] = [Row(name, "the running engine", state) for name, state in states.items()
               if state == "loaded" and name not in listed]
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
    async def boot(cls, config: KernelConfig, apps: list[BootApp] | None = None) -> AsyncIterator[LocalClient]:
        """Boot a kernel from config, start apps (a config file's boot apps), yield a client over it, shut
        the kernel down on the way out."""
        from llmasos.kernel.kernel import Kernel

        async with Kernel(config) as kernel:
            if apps:
                from llmasos.kernel.configfile import start_apps

                await start_apps(kernel, apps)
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

    def _elsewhere(self, pid: int) -> Cluster | None:
        """The cluster, when pid is not this node's (another node may run it); None otherwise."""
        cluster = self.kernel.cluster
        return cluster if cluster is not None and cluster.remote(pid) else None

    async def ended(self, pid: int) -> ProcInfo:
        """Wait until pid ends, without reaping it (ps -a still lists it)."""
        if (cluster := self._elsewhere(pid)) is not None:
            await cluster.wait(self.kernel.root_process, pid, None)
            return await cluster.info(pid)
        await self.kernel.get(pid).done.wait()
        return self.kernel.info(pid)

    async def alive(self, pid: int) -> bool:
        """Whether pid still runs (NoSuchProcess for a bad pid)."""
        if (cluster := self._elsewhere(pid)) is not None:
            return (await cluster.info(pid)).ended is None
        return self.kernel.get(pid).alive

    async def ps(self, all: bool = False) -> list[ProcInfo]:
        """The process table (of every node, with NODE, in a cluster)."""
        if self.kernel.cluster is not None:
            return await self.kernel.cluster.ps(all)
        return self.kernel.ps(all)

    async def info(self, pid: int) -> ProcInfo:
        if (cluster := self._elsewhere(pid)) is not None:
            return await cluster.info(pid)
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
        if (cluster := self._elsewhere(pid)) is not None:  # kept by the node that runs it: asked there
            return [tuple(c) for c in await cluster.forward(self.kernel.root_process, "logs", pid)]
        return self.kernel.output(pid)

    async def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        cluster = self._elsewhere(pid)
        chunks = cluster.follow(pid, history=history) if cluster else self.kernel.follow(pid, history=history)
        async for chunk in chunks:
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

    async def fenced(self) -> None:
        """Return once this kernel, a cluster node, lost its lease (never, for a lone kernel)."""
        cluster = self.kernel.cluster
        if cluster is None:
            await anyio.sleep_forever()
        else:
            await cluster.fenced.wait()

    @property
    def is_fenced(self) -> bool:
        cluster = self.kernel.cluster
        return cluster is not None and cluster.fenced.is_set()

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
        shared = cap.prefix
        return EngineStats(
            engine=getattr(engine, "name", type(engine).__name__), policy=k.policy,
            max_batch=min(cap.max_batch, sched.limits.max_batch), last_batch=llm.last_batch,
            running=len(sched.running), waiting=len(sched.waiting), steps=llm.steps, tokens=llm.tokens,
            busy_time=llm.busy_time, resident_tokens=cap.resident_tokens,
            max_resident_tokens=min(cap.max_resident_tokens, sched.limits.max_resident_tokens),
            uptime=time.time() - (k.booted_at or time.time()),
            **({} if shared is None else {"prefix_blocks": shared.blocks, "prefix_tokens": shared.tokens,
                                          "prefix_shared": shared.shared, "prefix_hit_rate": shared.hit_rate}),
        )

    async def model_stats(self) -> list[ModelStats]:
        """Every loaded model: its engine, policy, queue and counters."""
        k = self.kernel
        if k.llm is None:
            raise NotAvailable("the kernel is not booted")
        uptime = time.time() - (k.booted_at or time.time())
        out = []
        for m in k.models:
            llm, sched = m.llm, m.llm.scheduler
            out.append(ModelStats(
                name=m.name, engine=str(getattr(m.engine, "name", "") or m.kind), kind=m.kind, policy=m.policy,
                default=m.name == k.models.default, context_window=int(getattr(m.engine, "context_window", 0) or 0),
                max_batch=min(m.engine.capacity().max_batch, sched.limits.max_batch), last_batch=llm.last_batch,
                running=len(sched.running), waiting=len(sched.waiting), steps=llm.steps, tokens=llm.tokens,
                busy_time=llm.busy_time, uptime=uptime,
            ))
        return out

    async def policies(self) -> list[str]:
        return policy_names()

    async def set_policy(self, name: str, model: str | None = None) -> None:
        """Switch the policy of one model, or of every model (None)."""
        from llmasos.syscalls.calls import SetPolicy

        await self._syscall(SetPolicy(name, model))

    async def model_states(self) -> tuple[ModelInfo, ...]:
        """Every model the kernel can serve and its state (the models syscall, as root)."""
        from llmasos.syscalls.calls import Models

        return await self._syscall(Models()) if self.kernel.llm is not None else ()

    async def models(self) -> list[Row]:
        infos = await self.model_states()
        states = {i.name: f"broken: {i.reason}" if i.state == "broken" else i.state for i in infos}
        return await anyio.to_thread.run_sync(model_rows, states)

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
