"""The kernel: the process table, process lifecycle and the one syscall chokepoint.

Rule (after curio): small, and minimally featureful. The kernel runs processes as tasks in its task
group, each under its own cancel scope, and every request a process makes reaches the kernel through
``Kernel.syscall``. Model execution (engine + scheduler), tools and memory are subsystems it calls
through narrow interfaces; features belong there, not here.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import math
import secrets
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.apps.app import App
from llmasos.apps.registry import find_app
from llmasos.engine.base import Engine
from llmasos.kernel import budget, sandbox
from llmasos.kernel import caps as capmod
from llmasos.kernel.config import ConfigError, KernelConfig
from llmasos.kernel.control import Control, check_priority
from llmasos.kernel.errors import KernelNotRunning, blame, log
from llmasos.kernel.faces import Faces, root_app
from llmasos.kernel.journal import FRAME, Durability, Journal, NoJournal
from llmasos.kernel.llm import LLMLoop
from llmasos.kernel.models import ModelTable, listed
from llmasos.kernel.proc import ProcState, Process
from llmasos.kernel.recovery import PARKS, Recovery, clean_stop, parked, recover
from llmasos.kernel.stdio import Stdio
from llmasos.kernel.table import TABLE, ExitProcess
from llmasos.kernel.trace import TraceBus, TraceEvent
from llmasos.syscalls.calls import Syscall
from llmasos.syscalls.errors import (
    InvalidArguments, NoSuchModel, NoSuchProcess, NotSupported, PermissionDenied, ProcessKilled, ProcessLimit,
    SyscallError, WaitTimeout,
)
from llmasos.syscalls.sys import Sys
from llmasos.tools import mcp
from llmasos.syscalls.types import ExitStatus

if TYPE_CHECKING:
    from llmasos.kernel.caps import Caps
    from llmasos.kernel.cluster import Cluster
    from llmasos.memory.errors import MemoryStoreError
    from llmasos.memory.manager import MemoryManager

_OUT_OF_TIME = "QuotaExceeded: its time_budget of {:g}s ran out (spawn it with a larger time_budget)"

current_sys: contextvars.ContextVar[Sys | None] = contextvars.ContextVar("llmasos_sys", default=None)
"""The Sys of the process whose code is running (None outside any process)."""


class Kernel(Faces, Stdio, Control):
    """Runs apps as processes over its models (kernel/models.py: one by default).

    ``async with Kernel(KernelConfig(engine=FakeEngine())) as k: pid = await k.spawn("echo", "hi")``
    """

    def __init__(self, config: KernelConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = KernelConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a KernelConfig or keyword overrides, not both")
        self.config = config
        self.models = ModelTable()  # every loaded model, each with its own LLM loop and scheduler
        self.engine: Engine | None = None  # the default model's engine, while booted
        self.llm: LLMLoop | None = None  # the default model's LLM loop, while booted
        self.tracer = TraceBus()
        self.durability: Durability = NoJournal()  # the journal, while booted with a durable database
        self._journaling = False  # durability is a Journal (calls made inside calls are tracked)
        self.memory: MemoryManager | None = None  # the memory manager (llmasos/memory/), while booted with one
        self.recovery = Recovery()  # what the last boot's crash recovery did
        self.cluster: Cluster | None = None  # this kernel's cluster membership (KernelConfig.cluster)
        self._faces: dict[str, App] = {}  # name -> the App of that face's request processes
        # The root process (pid 0): the root user's faces (shell, CLI, HTTP process control) make their
        # calls as it. It is not in the table (ps, kill and wait never see it), holds every capability,
        # and its calls are checked, accounted and traced but not journaled (it is never replayed).
        self._root = Process(pid=0, app=root_app(), args=(), kwargs={}, parent=0, priority=0, caps=capmod.ROOT,
                             state=ProcState.RUNNING, face="root", journaled=False)
        self._procs: dict[int, Process] = {}  # pid -> process, live or not yet reaped
        self._zombies: deque[int] = deque()  # ended, unreaped pids, oldest first
        self._live = 0  # processes holding a slot of max_procs: not ended, or ended while their task runs on
        self._lingering: set[Process] = set()  # reported killed after kill_grace, their tasks still running
        self._pids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None  # the kernel's own tasks: LLM loop, memory writer
        self._ptg: anyio.abc.TaskGroup | None = None  # the processes' tasks (see _host_processes)
        self._ptg_done: anyio.Event | None = None  # set when the processes' task group has exited
        self._stopping = False  # shutdown has begun: a cancelled process keeps its state
        self.booted_at: float | None = None
        self.mcp: list[mcp.Server] = []  # the MCP servers whose tools are registered, while booted
        self.run_id = secrets.token_hex(6)  # this kernel object's run: names what must not outlive it

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Kernel:
        await self.boot()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def boot(self) -> None:
        """Load the models and start the kernel's task group and the models' LLM loops."""
        if self._tg is not None:
            raise KernelNotRunning("this kernel is already booted")
        cfg = self.config
        if cfg.memory:  # -- memory: open the database first; a broken one refuses to boot
            from llmasos.memory.manager import MemoryManager

            self.memory = await MemoryManager.open(cfg)
            self.memory.writer.on_error = self._write_failed
            self._pids = self.memory.pids  # pids persist: never reused across restarts
        try:
            if cfg.models is not None and cfg.engine is not None:
                raise ConfigError("give KernelConfig.engine (one model) or KernelConfig.models, not both")
            await self.models.load(cfg)
        except BaseException:
            if self.memory is not None:
                await self.memory.close()
                self.memory = None
            raise
        default = self.models.get()
        self.engine, self.llm = default.engine, default.llm
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.models.tg = self._tg  # models loaded on first use run their loops in it
        for model in self.models:
            self._tg.start_soon(model.llm.run, name=f"llmasos llm loop ({model.name})")
        self.mcp = await mcp.boot(self._tg, cfg.mcp_servers, cfg.home)  # their tools: SERVER.tool
        self._stopping = False
        ready, self._ptg_done = anyio.Event(), anyio.Event()
        _start_detached(lambda: self._host_processes(ready), "llmasos processes")
        await ready.wait()
        if self.memory is not None:  # -- memory: the writer task, the journal, crash recovery
            self._tg.start_soon(self.memory.serve, name="llmasos memory writer")
            if self.memory.journal_rows is not None:
                journal = Journal(self.memory.journal_rows)
                self.durability, self._journaling = journal, True
                if cfg.cluster:  # -- cluster: take the lease first; restore only this node's processes
                    from llmasos.kernel.cluster import Cluster

                    self.cluster = Cluster(self, self.memory, journal)
                    await self.cluster.join()
                self.recovery = await recover(self, journal, node=self.cluster and self.cluster.node)
                if self.cluster is not None:
                    self._tg.start_soon(self.cluster.run, name="llmasos cluster node")
        self.booted_at = time.time()

    async def shutdown(self) -> None:
        """Cancel every process and the LLM loops, then release the engines the kernel loaded.

        Returns within about ``KernelConfig.shutdown_grace`` seconds whatever the apps do: processes
        that still ignore their cancellation then are abandoned (see ``_stop_processes``).
        """
        if self._tg is None:
            return
        self._stopping = True
        try:
            await self._stop_processes()
        finally:
            for server in self.mcp:
                server.close()
            self.models.tg = None
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(None, None, None)
            finally:
                self._tg = None
                self.tracer.close()
                self.models.close()  # the engines we built; an Engine we were given is its owner's
                self.engine = self.llm = None
                if self.memory is not None:  # -- memory: commit what is queued, release the database
                    self.durability, self._journaling = NoJournal(), False
                    memory, self.memory = self.memory, None
                    if memory.journal_rows is not None:
                        clean_stop(memory.store)  # the next boot does not count this stop as a crash
                    if self.cluster is not None:  # -- cluster: what is queued commits, then the lease ends
                        await self.cluster.leave()
                    await memory.close()

    async def _host_processes(self, ready: anyio.Event) -> None:
        """The task that holds the processes' task group.

        No task group waits for this task (it is started detached), so that shutdown can return even
        when a process ignores its cancellation: anyio cannot stop a task that keeps catching it, and a
        task group's exit waits for every task in it.
        """
        assert self._ptg_done is not None
        done = self._ptg_done
        try:
            async with anyio.create_task_group() as tg:
                self._ptg = tg
                ready.set()
                await anyio.sleep_forever()  # until shutdown cancels the group
        except anyio.get_cancelled_exc_class():
            raise  # the event loop is closing (its end cancels every task left)
        except BaseException:  # nothing a process raises gets here (_run keeps it); log what does
            log.exception("the processes' task group failed")
        finally:
            ready.set()
            done.set()

    async def _stop_processes(self) -> None:
        """Cancel the processes, wait up to shutdown_grace for them, then abandon those still running.

        Invariant: an abandoned process keeps its state in the database (it is restored at the next
        boot, like any process alive at shutdown); here it is marked killed so that every syscall its
        code still makes is refused, and no row of it is written from now on.
        """
        ptg, done, self._ptg = self._ptg, self._ptg_done, None
        if ptg is None or done is None:
            return
        ptg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.shutdown_grace):
            await done.wait()
        if done.is_set():
            return
        stuck = [p for p in self._procs.values() if p.face is None and (p.alive or p in self._lingering)]
        for proc in stuck:
            proc.killed = proc.notice = True
        self.drop_journal()
        log.warning("shutdown: %d process(es) ignored cancellation for %ss and were abandoned (pids %s); "
                    "their tasks cannot be stopped in-process", len(stuck), self.config.shutdown_grace,
                    ", ".join(str(p.pid) for p in stuck[:20]))

    def drop_journal(self) -> None:
        """Journal nothing more (shutdown abandoned processes, or a cluster node lost its lease)."""
        self.durability, self._journaling = NoJournal(), False

    def _write_failed(self, error: MemoryStoreError, pid: int | None) -> None:
        """A queued write failed: log it, and raise it in the process that made it at its next syscall."""
        log.error("a queued write to the database failed%s: %s", f" for process {pid}" if pid else "", error)
        proc = self._procs.get(pid) if pid is not None else None
        if proc is not None and proc.alive and proc.write_error is None:
            proc.write_error, proc.notice = error, True

    def _require_running(self) -> anyio.abc.TaskGroup:
        """The processes' task group (processes are started in it)."""
        if self._tg is None or self._ptg is None:
            raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
        return self._ptg

    # -- the chokepoint ----------------------------------------------------------------------

    async def syscall(self, proc: Process, call: Syscall) -> Any:
        """The one way into the kernel: check, journal, dispatch, account, trace, and type the errors."""
        handler = TABLE.get(type(call))
        if handler is None:
            raise NotSupported(f"{getattr(call, 'name', type(call).__name__)} is not a syscall this kernel offers")
        usage = proc.usage
        usage.syscalls += 1
        n = usage.syscalls
        if self._journaling:
            frame = FRAME.get()
            if frame is not None and n > frame[0]:  # made inside a journaled syscall: within its span
                frame[0] = n
        # Invariant: a process yields at least every 8th syscall, so one looping on calls that never
        # block (write, getpid) still lets the others run; a killed process unwinds here at once.
        if proc.notice or not n & 7:
            await anyio.lowlevel.checkpoint()
            if proc.killed:  # a request process (no scope to cancel), or code that shields itself
                # from its cancellation or swallows it: a killed process makes no more syscalls
                if proc.face is not None:
                    raise ProcessKilled(f"process {proc.pid} was killed; this request has ended")
                raise ProcessKilled(f"process {proc.pid} was killed; it may make no more syscalls "
                                    "(let the cancellation unwind it: do not catch it)")
        if self._journaling and self.recovery.suspects and call.waits in PARKS:
            if proc.pid in self.recovery.suspects:  # restored after a crash loop: now it waits on the world?
                parked(self, self.durability, proc, n)
        start = time.perf_counter()
        waits = call.waits
        if waits == "llm" and getattr(call, "model", None):  # ps shows which model it waits on, when named
            waits = f"llm:{call.model}"
        if waits is not None:
            outer = proc.waiting_on  # a call made inside another (a tool's) restores the outer wait
            proc.state, proc.waiting_on = ProcState.WAITING, waits
        result = error = None
        try:
            if proc.notice and proc.write_error is not None:  # a write it queued failed: it hears now
                failed, proc.write_error = proc.write_error, None
                proc.notice = proc.killed
                raise failed
            capmod.check(proc, call)
            if call.journaled and proc.journaled:
                result = await self.durability.run(self, proc, n, call, handler)
            else:
                result = await handler(self, proc, call)
            return result
        except (SyscallError, ExitProcess) as exc:
            error = exc
            raise
        except anyio.get_cancelled_exc_class() as exc:
            error = exc
            raise
        except BaseException as exc:  # a handler bug (or a BaseException from a plugin: SystemExit,
            # KeyboardInterrupt) must not take the kernel down, nor be blamed on the caller
            error = blame(call, exc)
            raise error from exc
        finally:
            duration = time.perf_counter() - start
            usage.syscall_time += duration
            if waits is not None and proc.state is ProcState.WAITING:
                if outer is None:
                    proc.state, proc.waiting_on = ProcState.RUNNING, None
                else:
                    proc.waiting_on = outer
            event = TraceEvent(proc.pid, n, call, result, error, start, duration)
            if proc.trace is None:
                proc.trace = deque(maxlen=self.config.trace_buffer)
            proc.trace.append(event)
            if self.tracer:
                self.tracer.emit(event)

    # -- processes ---------------------------------------------------------------------------

    async def spawn(self, app: str | App, *args: Any, priority: int | None = None, parent: int = 0,
                    caps: dict[str, Any] | None = None, **kwargs: Any) -> int:
        """Start app(*args, **kwargs) as a new process; return its pid once its row is committed."""
        return (await self.launch(app, args, kwargs, priority=priority, parent=parent, caps=caps)).pid

    async def launch(self, app: str | App, args: tuple[Any, ...] = (), kwargs: dict | None = None, *,
                     priority: int | None = None, parent: int = 0, caps: dict[str, Any] | None = None) -> Process:
        """start_process, returning once the new process's row is committed (the spawn syscall and
        spawn() use it); its code runs from then on. A row that cannot be written fails the spawn with
        the database's error, and the process never runs."""
        proc = self.start_process(app, args, kwargs, priority=priority, parent=parent, caps=caps, task=False)
        try:
            await self.durability.process_row(proc.pid)
        except BaseException as exc:
            self._end(proc, ProcState.KILLED, error=f"never ran: its process row could not be written ({exc})")
            self._reap(proc)
            raise
        self._require_running().start_soon(self._run, proc, name=f"llmasos pid {proc.pid} ({proc.app.name})")
        return proc

    def start_process(self, app: str | App, args: tuple[Any, ...] = (), kwargs: dict | None = None, *,
                      priority: int | None = None, parent: int = 0, caps: dict[str, Any] | Caps | None = None,
                      pid: int | None = None, task: bool = True) -> Process:
        """Validate and start a process (the spawn syscall, spawn(), recovery and sessions end here).

        caps: what the spawner asks for (a dict, checked against the parent), or, from recovery, Caps
        already decided (narrowed to the parent's). task=False: no task is started; the caller runs the
        process's code in its own task (a face's request process, see ``session``).
        """
        tg = self._require_running()
        if isinstance(app, str):
            app = find_app(app)
        elif not isinstance(app, App):
            raise InvalidArguments(f"spawn needs an app name, a path or an App, not {type(app).__name__}")
        args, kwargs = app.bind(tuple(args), dict(kwargs or {}))
        if app.sandbox:
            sandbox.check(app)  # its child finds it by spec (NoSuchApp)
        if self._live >= self.config.max_procs:
            raise ProcessLimit(
                f"the process table is full ({self.config.max_procs} live processes); "
                "kill or wait for some, or raise KernelConfig.max_procs"
            )
        parent_proc = self._procs.get(parent) if parent else None
        if parent and (parent_proc is None or not parent_proc.alive):
            raise NoSuchProcess(f"no live parent process {parent}")
        if priority is None:
            priority = app.priority
        check_priority(priority)
        parent_caps = budget.available(parent_proc, parent_proc.caps) if parent_proc is not None else capmod.ROOT
        if isinstance(caps, capmod.Caps):
            granted: Caps = capmod.intersect(caps, parent_caps)
        else:
            granted = capmod.grant(parent_caps, app, caps)
        model = self._default_model(app, granted, checked=not isinstance(caps, capmod.Caps))
        proc = Process(
            pid=pid if pid is not None else next(self._pids), app=app, args=args, kwargs=kwargs,
            parent=parent, priority=priority, caps=granted, model=model,
        )
        self.durability.process_started(proc)  # InvalidArguments if its arguments cannot be stored
        budget.carve(parent_proc, proc)  # its budgets come out of what the parent has left
        self._procs[proc.pid] = proc
        self._live += 1
        if parent_proc is not None:
            parent_proc.children.add(proc.pid)
        if task:
            tg.start_soon(self._run, proc, name=f"llmasos pid {proc.pid} ({app.name})")
        return proc

    def _default_model(self, app: App, caps: Caps, *, checked: bool) -> str | None:
        """The model a new process's generate and chat calls use when they name none: its manifest's
        model, else the kernel's default, else (when its caps exclude that) the first model it may use.

        checked: caps were asked for (not restored after a crash), so a model they name that is neither
        loaded nor in the model library (loaded on first use) is refused (NoSuchModel), as is a manifest's
        model the caps do not allow.
        """
        allowed, names = caps.models, self.models.names
        if checked and names and ({*(allowed or ()), app.model} - {None} - set(names)):
            names = self.models.servable(self.config)  # the library's too: loaded on first use
        if checked and allowed is not None and names:
            unknown = sorted(allowed - set(names))
            if unknown:
                raise NoSuchModel(f"app {app.name!r} is to be allowed models that are not loaded: {listed(unknown)} "
                                  f"(nor in the model library); the loaded ones are {listed(self.models.names)}")
        if app.model is not None:
            if checked and names and app.model not in names:
                raise NoSuchModel(f"app {app.name!r} names model {app.model!r} in its manifest, which is not "
                                  f"loaded (nor in the model library); the loaded ones are {listed(self.models.names)}")
            if checked and allowed is not None and app.model not in allowed:
                raise PermissionDenied(f"app {app.name!r} names model {app.model!r} in its manifest, but it may "
                                       f"only use {listed(sorted(allowed))}; allow it with caps={{'models': [...]}}")
            return app.model
        default = self.models.default
        if allowed is None or default in allowed:
            return default
        return next((name for name in names if name in allowed), default)

    async def _run(self, proc: Process) -> None:
        sys = Sys(self, proc)
        current_sys.set(sys)
        FRAME.set(None)  # Invariant: a process spawned inside a syscall does not inherit its frame
        with anyio.CancelScope(deadline=math.inf if proc.deadline is None else proc.deadline) as scope:
            proc.scope = scope
            if proc.killed:
                scope.cancel()
            try:
                await anyio.lowlevel.checkpoint()
                proc.state = ProcState.RUNNING
                value = await (sandbox.run(self, proc) if proc.app.sandbox  # in a child OS process
                               else proc.app.entry(sys, *proc.args, **proc.kwargs))
            except ExitProcess as exc:
                self._end(proc, ProcState.EXITED, value=exc.value)
            except anyio.get_cancelled_exc_class():
                if proc.killed:
                    self._end(proc, ProcState.KILLED, error="killed")
                    raise
                if self._stopping:
                    raise
                if scope.cancel_called:  # its own scope's deadline: its time_budget ran out
                    self._end(proc, ProcState.KILLED, error=_OUT_OF_TIME.format(proc.caps.time_budget))
                    raise
                # Nobody cancelled it: the app raised the cancellation exception itself. Re-raised, it
                # would cancel the task group, and every other process with it.
                self._end(proc, ProcState.CRASHED, error=traceback.format_exc())
            except SystemExit as exc:  # sys.exit(n) in the app: n is its exit value
                self._end(proc, ProcState.EXITED, value=exc.code)
            except BaseException:  # an Exception, KeyboardInterrupt, GeneratorExit...: this process only
                self._end(proc, ProcState.CRASHED, error=traceback.format_exc())
            else:
                if proc.killed:  # it swallowed the cancellation and returned
                    self._end(proc, ProcState.KILLED, error="killed (the app caught the cancellation)")
                else:
                    self._end(proc, ProcState.EXITED, value=value)
        if proc.alive and proc.killed:
            self._end(proc, ProcState.KILLED, error="killed")
        if proc.alive and scope.cancelled_caught:  # its deadline passed
            self._end(proc, ProcState.KILLED, error=_OUT_OF_TIME.format(proc.caps.time_budget))
        if proc in self._lingering:  # reported killed after kill_grace; its task has ended at last
            self._lingering.discard(proc)
            self._live -= 1
        # Invariant: on kernel shutdown a live process keeps its state, so a persisted process
        # table shows it as alive and recovery can restart it.

    def _end(self, proc: Process, state: ProcState, *, value: Any = None, error: str | None = None) -> None:
        """Record how proc ended and free what it held. Idempotent: a process ends once.

        Its slot of max_procs is freed here, unless its task still runs (``_lingering``): then when
        that task ends.
        """
        if proc.ended is not None or not proc.alive:
            return
        proc.state, proc.waiting_on = state, None
        proc.ended = time.time()
        proc.exit_value, proc.error = value, error
        if proc not in self._lingering:
            self._live -= 1
        budget.settle(proc)  # what it did not use goes back to the parent it was carved from
        for seq in list(proc.seqs):
            self.models.cancel(seq)
        for inbox in (proc.mailbox, proc.stdin):
            if inbox is not None:
                inbox.close()
        if proc.output is not None:
            if state is ProcState.CRASHED and error:
                proc.output.write("stderr", error)
            proc.output.close()
        parent = self._procs.get(proc.parent)
        if parent is not None:
            parent.children.discard(proc.pid)
        for child_pid in proc.children:  # orphans are adopted by the root
            child = self._procs.get(child_pid)
            if child is not None:
                child.parent = 0
        proc.children = set()
        self.durability.process_ended(proc)
        proc.done.set()
        self._zombies.append(proc.pid)
        while len(self._zombies) > self.config.max_zombies:
            self._procs.pop(self._zombies.popleft(), None)

    def add_ended(self, proc: Process) -> None:
        """Put a process that ended outside this kernel in the table, unreaped (recovery's LOST)."""
        assert not proc.alive, "add_ended takes ended processes only; start_process runs the others"
        proc.done.set()
        self._procs[proc.pid] = proc
        self._zombies.append(proc.pid)
        while len(self._zombies) > self.config.max_zombies:
            self._procs.pop(self._zombies.popleft(), None)

    def get(self, pid: int) -> Process:
        """The process with this pid, live or not yet reaped (never the root process, pid 0)."""
        try:
            return self._procs[pid]
        except KeyError:
            raise NoSuchProcess(f"no process {pid} (it never existed or was already reaped); see ps -a") from None

    def kill(self, pid: int) -> bool:
        """Kill pid and its descendants. Returns False if it had already ended."""
        proc = self.get(pid)
        if not proc.alive:
            return False
        for child in list(proc.children):
            if child in self._procs:
                self.kill(child)
        proc.killed = proc.notice = True
        if proc.sandbox is not None:
            proc.sandbox.kill()  # a sandboxed app's child: SIGKILL, now
        if proc.face is not None:  # a request process has no task to cancel: end it now (see session)
            self._end(proc, ProcState.KILLED, error="killed")
            return True
        if proc.scope is not None:
            proc.scope.cancel()
        if self._tg is not None and self.config.kill_grace:
            self._tg.start_soon(self._reclaim, proc)
        return True

    async def _reclaim(self, proc: Process) -> None:
        """Report a killed process that will not unwind (it keeps swallowing cancellation).

        Its task is abandoned: in-process, nothing can stop code that catches its cancellation (a loop
        doing so spins a core until it gives up; a sandboxed app's OS process can be killed). Until
        that task ends, it keeps its slot of max_procs, and its syscalls are refused.
        """
        with anyio.move_on_after(self.config.kill_grace):
            await proc.done.wait()
            return
        if proc.ended is None and proc.alive:
            self._lingering.add(proc)
            self._end(proc, ProcState.KILLED,
                      error=f"killed, but its code ignored cancellation for {self.config.kill_grace}s; "
                            "its task is abandoned")

    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus:
        """Wait for pid to end, reap it and return how it ended."""
        proc = self.get(pid)
        if proc.alive:
            with anyio.move_on_after(timeout):
                await proc.done.wait()
            if proc.alive:
                raise WaitTimeout(f"process {pid} still runs after {timeout}s")
        self._reap(proc)
        return ExitStatus(pid, proc.state.value, proc.exit_value, proc.error)

    def _reap(self, proc: Process) -> None:
        if self._procs.get(proc.pid) is proc:
            del self._procs[proc.pid]
            try:
                self._zombies.remove(proc.pid)
            except ValueError:
                pass

    async def run(self, app: str | App, *args: Any, **kwargs: Any) -> ExitStatus:
        """Spawn app and wait for it."""
        return await self.wait(await self.spawn(app, *args, **kwargs))


_detached: set[asyncio.Task[None]] = set()  # asyncio keeps weak references to tasks only


def _start_detached(fn: Callable[[], Awaitable[None]], name: str) -> None:
    """Run fn() in a task that no task group waits for (anyio has no such thing: the backend's own)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio: a system task (trio.run waits for it at its very end only)
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name)
        return
    task = loop.create_task(fn(), name=name)  # type: ignore[arg-type]
    _detached.add(task)
    task.add_done_callback(_detached.discard)
