"""The kernel: the process table, process lifecycle and the one syscall chokepoint.

Rule (after curio): small, and minimally featureful. The kernel runs processes as tasks in its task
group, each under its own cancel scope, and every request a process makes reaches the kernel through
``Kernel.syscall``. Model execution (engine + scheduler), tools and memory are subsystems it calls
through narrow interfaces; features belong there, not here.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.apps.app import App
from llmasos.apps.registry import find_app
from llmasos.engine.base import Engine, SamplingParams, Sequence
from llmasos.errors import LlmasosError
from llmasos.kernel import caps as capmod
from llmasos.kernel.config import KernelConfig
from llmasos.kernel.llm import LLMLoop, TokenStream
from llmasos.kernel.proc import LIVE, ProcState, Process
from llmasos.kernel.sched import SchedLimits, make_scheduler
from llmasos.kernel.table import TABLE, ExitProcess
from llmasos.kernel.trace import TraceBus, TraceEvent
from llmasos.syscalls.calls import Generate, Syscall
from llmasos.syscalls.errors import (
    InvalidArguments, MailboxFull, NoSuchProcess, NotSupported, ProcessLimit, SyscallError, WaitTimeout,
)
from llmasos.syscalls.sys import Sys
from llmasos.tools.calling import prepare as prepare_tools
from llmasos.syscalls.types import ExitStatus, Message, ProcInfo, Usage

if TYPE_CHECKING:
    from llmasos.kernel.caps import Caps

current_sys: contextvars.ContextVar[Sys | None] = contextvars.ContextVar("llmasos_sys", default=None)
"""The Sys of the process whose code is running (None outside any process)."""


class KernelNotRunning(LlmasosError):
    """The kernel has not been booted, or was shut down."""


class Kernel:
    """Runs apps as processes over one model.

    ``async with Kernel(KernelConfig(engine=FakeEngine())) as k: pid = await k.spawn("echo", "hi")``
    """

    def __init__(self, config: KernelConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = KernelConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a KernelConfig or keyword overrides, not both")
        self.config = config
        self.engine: Engine | None = None
        self.llm: LLMLoop | None = None
        self.tracer = TraceBus()
        self.journal: Any = None  # the memory manager's syscall journal, when one is attached
        self.memory: Any = None  # the memory manager (llmasos/memory/), while booted with one
        self._procs: dict[int, Process] = {}  # pid -> process, live or not yet reaped
        self._zombies: deque[int] = deque()  # ended, unreaped pids, oldest first
        self._live = 0
        self._pids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self.booted_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Kernel:
        await self.boot()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def boot(self) -> None:
        """Load the engine and start the kernel's task group and LLM loop."""
        if self._tg is not None:
            raise KernelNotRunning("this kernel is already booted")
        if self.config.memory:  # -- memory: open the database first; a broken one refuses to boot
            from llmasos.memory.manager import MemoryManager

            self.memory = await MemoryManager.open(self.config)
            self._pids = self.memory.pids  # pids persist: never reused across restarts
        try:
            self.engine = await _open_engine(self.config)
        except BaseException:
            if self.memory is not None:
                await self.memory.close()
                self.memory = None
            raise
        cfg = self.config
        limits = SchedLimits(cfg.max_batch, cfg.max_step_tokens, cfg.max_resident_tokens, cfg.quantum)
        self.llm = LLMLoop(self.engine, make_scheduler(cfg.policy, limits))
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.llm.run, name="llmasos llm loop")
        if self.memory is not None:  # -- memory: the writer task, the journal, crash recovery
            self._tg.start_soon(self.memory.serve, name="llmasos memory writer")
            self.journal = self.memory.journal
            await self.memory.recover(self)
        self.booted_at = time.time()

    async def shutdown(self) -> None:
        """Cancel every process and the LLM loop, then release the engine."""
        if self._tg is None:
            return
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._tg = None
            self.tracer.close()
            if self.engine is not None and self.config.engine is not self.engine:
                self.engine.close()  # we built it, we free it
            if self.memory is not None:  # -- memory: commit what is queued, release the database
                self.journal = None
                memory, self.memory = self.memory, None
                await memory.close()

    def _require_running(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
        return self._tg

    # -- the chokepoint ----------------------------------------------------------------------

    async def syscall(self, proc: Process, call: Syscall) -> Any:
        """The one way into the kernel: check, dispatch, account, trace, and type the errors."""
        handler = TABLE.get(type(call))
        if handler is None:
            raise NotSupported(f"{call.name} is not a syscall this kernel offers")
        usage = proc.usage
        usage.syscalls += 1
        n = usage.syscalls
        # Invariant: a process yields at least every 8th syscall, so one looping on calls that never
        # block (write, getpid) still lets the others run; a killed process unwinds here at once.
        if proc.killed or not n & 7:
            await anyio.lowlevel.checkpoint()
        start = time.perf_counter()
        waits = call.waits
        if waits is not None:
            proc.state, proc.waiting_on = ProcState.WAITING, waits
        result = error = None
        try:
            capmod.check(proc, call)
            if self.journal is not None:
                result = await self.journal.run(self, proc, n, call, handler)
            else:
                result = await handler(self, proc, call)
            return result
        except (SyscallError, ExitProcess) as exc:
            error = exc
            raise
        except (TypeError, ValueError) as exc:
            error = InvalidArguments(f"{call.name}: {exc}")
            raise error from exc
        except anyio.get_cancelled_exc_class() as exc:
            error = exc
            raise
        except Exception as exc:  # a handler bug must not take the kernel down
            error = SyscallError(f"{call.name} failed inside the kernel: {type(exc).__name__}: {exc}")
            raise error from exc
        finally:
            duration = time.perf_counter() - start
            usage.syscall_time += duration
            if waits is not None and proc.state is ProcState.WAITING:
                proc.state, proc.waiting_on = ProcState.RUNNING, None
            event = TraceEvent(proc.pid, n, call, result, error, start, duration)
            if proc.trace is None:
                proc.trace = deque(maxlen=self.config.trace_buffer)
            proc.trace.append(event)
            if self.tracer:
                self.tracer.emit(event)

    # -- processes ---------------------------------------------------------------------------

    async def spawn(self, app: str | App, *args: Any, priority: int | None = None, parent: int = 0,
                    caps: dict[str, Any] | None = None, **kwargs: Any) -> int:
        """Start app(*args, **kwargs) as a new process; return its pid at once."""
        return self.start_process(app, args, kwargs, priority=priority, parent=parent, caps=caps).pid

    def start_process(self, app: str | App, args: tuple[Any, ...] = (), kwargs: dict | None = None, *,
                      priority: int | None = None, parent: int = 0, caps: dict[str, Any] | None = None,
                      pid: int | None = None) -> Process:
        """Validate and start a process (the spawn syscall and spawn() both end here)."""
        tg = self._require_running()
        if isinstance(app, str):
            app = find_app(app)
        elif not isinstance(app, App):
            raise InvalidArguments(f"spawn needs an app name, a path or an App, not {type(app).__name__}")
        args, kwargs = app.bind(tuple(args), dict(kwargs or {}))
        if self._live >= self.config.max_procs:
            raise ProcessLimit(
                f"the process table is full ({self.config.max_procs} live processes); "
                "kill or wait for some, or raise KernelConfig.max_procs"
            )
        parent_proc = self._procs.get(parent) if parent else None
        if parent and (parent_proc is None or not parent_proc.alive):
            raise NoSuchProcess(f"no live parent process {parent}")
        parent_caps = parent_proc.caps if parent_proc is not None else capmod.ROOT
        granted: Caps = capmod.grant(parent_caps, app, caps)
        proc = Process(
            pid=pid if pid is not None else next(self._pids), app=app, args=args, kwargs=kwargs,
            parent=parent, priority=app.priority if priority is None else priority, caps=granted,
        )
        self._procs[proc.pid] = proc
        if self.journal is not None:
            self.journal.process_started(proc)
        self._live += 1
        if parent_proc is not None:
            parent_proc.children.add(proc.pid)
        tg.start_soon(self._run, proc, name=f"llmasos pid {proc.pid} ({app.name})")
        return proc

    async def _run(self, proc: Process) -> None:
        sys = Sys(self, proc)
        current_sys.set(sys)
        with anyio.CancelScope() as scope:
            proc.scope = scope
            if proc.killed:
                scope.cancel()
            try:
                await anyio.lowlevel.checkpoint()
                proc.state = ProcState.RUNNING
                value = await proc.app.entry(sys, *proc.args, **proc.kwargs)
            except ExitProcess as exc:
                self._end(proc, ProcState.EXITED, value=exc.value)
            except anyio.get_cancelled_exc_class():
                if proc.killed:
                    self._end(proc, ProcState.KILLED, error="killed")
                raise
            except Exception:
                self._end(proc, ProcState.CRASHED, error=traceback.format_exc())
            else:
                if proc.killed:  # it swallowed the cancellation and returned
                    self._end(proc, ProcState.KILLED, error="killed (the app caught the cancellation)")
                else:
                    self._end(proc, ProcState.EXITED, value=value)
        if proc.alive and proc.killed:
            self._end(proc, ProcState.KILLED, error="killed")
        # Invariant: on kernel shutdown a live process keeps its state, so a persisted process
        # table shows it as alive and recovery can restart it.

    def _end(self, proc: Process, state: ProcState, *, value: Any = None, error: str | None = None) -> None:
        """Record how proc ended and free what it held. Idempotent."""
        if not proc.alive:
            return
        proc.state, proc.waiting_on = state, None
        proc.ended = time.time()
        proc.exit_value, proc.error = value, error
        self._live -= 1
        if self.llm is not None:
            for seq in list(proc.seqs):
                self.llm.cancel(seq)
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
        if self.journal is not None:
            self.journal.process_ended(proc)
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
        """The process with this pid, live or not yet reaped."""
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
        proc.killed = True
        if proc.scope is not None:
            proc.scope.cancel()
        if self._tg is not None and self.config.kill_grace:
            self._tg.start_soon(self._reclaim, proc)
        return True

    async def _reclaim(self, proc: Process) -> None:
        """Report a killed process that will not unwind (it keeps swallowing cancellation)."""
        with anyio.move_on_after(self.config.kill_grace):
            await proc.done.wait()
            return
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

    def ps(self, all: bool = False) -> list[ProcInfo]:
        """The process table: live processes, or also the ended ones not yet reaped."""
        return [self.info(p.pid) for p in self._procs.values() if all or p.alive]

    def info(self, pid: int) -> ProcInfo:
        p = self.get(pid)
        u = p.usage
        return ProcInfo(
            pid=p.pid, ppid=p.parent, app=p.app.name, state=p.state.value, waiting_on=p.waiting_on,
            priority=p.priority, args=p.args, started=p.started, ended=p.ended,
            usage=Usage(u.syscalls, u.prompt_tokens, u.completion_tokens, u.model_time, u.syscall_time),
            exit_value=p.exit_value, error=p.error, caps=p.caps.as_dict(),
        )

    @property
    def processes(self) -> dict[int, Process]:
        """The live table (read-only use: shell, top, recovery)."""
        return self._procs

    # -- ipc and stdio, from the root user ---------------------------------------------------

    def send(self, pid: int, body: Any, sender: int = 0) -> None:
        """Put a message in pid's mailbox."""
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(f"process {pid} has ended; it cannot receive messages")
        box = proc.get_mailbox()
        if len(box.items) >= self.config.mailbox_size:
            raise MailboxFull(f"process {pid} has {len(box.items)} unread messages; try again later")
        message = Message(sender, body)
        if self.journal is not None:
            self.journal.message_sent(pid, message)  # persisted until a recv takes it
        box.put(message)

    def write_stdin(self, pid: int, text: str) -> None:
        """Feed text to pid's stdin (a line per newline)."""
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(f"process {pid} has ended; its stdin is closed")
        stdin = proc.get_stdin()
        for line in text.splitlines(keepends=True):
            if self.journal is not None:
                self.journal.stdin_written(pid, line)  # persisted until a readline takes it
            stdin.put(line)

    def close_stdin(self, pid: int) -> None:
        """End of input for pid: its next read returns None."""
        self.get(pid).get_stdin().close()

    def output(self, pid: int) -> list[tuple[str, str]]:
        """The stdout/stderr chunks pid wrote that are still kept, oldest first."""
        proc = self.get(pid)
        return list(proc.output.chunks) if proc.output is not None else []

    async def follow(self, pid: int, *, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        """Yield (stream, text) as pid writes, until it ends; with history, what it wrote before."""
        proc = self.get(pid)
        out = proc.get_output(self.config.stdout_lines)
        # Invariant: the history snapshot and the subscription are taken together, so no chunk written
        # while the history is being yielded is lost or repeated.
        before = list(out.chunks) if history else []
        send, recv = anyio.create_memory_object_stream[tuple[str, str]](self.config.stdout_lines)
        if proc.alive:
            out.followers.append(send)
        else:
            send.close()
        try:
            with recv:
                for chunk in before:
                    yield chunk
                async for chunk in recv:
                    yield chunk
        finally:  # the follower left (or was dropped): never leave our end open
            if send in out.followers:
                out.followers.remove(send)
            send.close()

    # -- the model, from the root user -------------------------------------------------------

    def submit(self, proc: Process | None, call: Generate) -> TokenStream:
        """Prepare and queue one generate request (the generate syscall and root calls share this)."""
        if self.llm is None or self.engine is None:
            raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
        params = SamplingParams(
            max_tokens=call.max_tokens or self.config.default_max_tokens, temperature=call.temperature,
            top_p=call.top_p, seed=call.seed, stop=call.stop, truncate=call.truncate,
        )
        if (call.prompt is None) == (call.messages is None):
            raise InvalidArguments("generate needs exactly one of a prompt or messages")
        seq = Sequence(
            pid=proc.pid if proc is not None else 0, params=params, prompt=call.prompt,
            messages=[dict(m) for m in call.messages] if call.messages is not None else None,
            priority=proc.priority if proc is not None else 0,
        )
        # -- tools: offer them in the prompt, constrain decoding, parse calls (tools/calling.py)
        tooling = prepare_tools(call, getattr(self.engine, "tokenizer", None), f"{seq.sid}_")
        if tooling is not None:
            seq.prompt, seq.messages = tooling.prompt, tooling.messages
            params.logits_processor = tooling.logits_processor
        self.engine.prepare(seq)
        stream = self.llm.submit(proc, seq)
        if tooling is not None:
            stream.postprocess = tooling.postprocess
        return stream

    def set_policy(self, policy: str) -> None:
        """Switch the scheduling policy at run time."""
        if self.llm is None:
            raise KernelNotRunning("boot the kernel first")
        self.llm.set_scheduler(make_scheduler(policy, previous=self.llm.scheduler))
        self.config.policy = policy

    @property
    def policy(self) -> str:
        return self.llm.scheduler.policy if self.llm is not None else self.config.policy


async def _open_engine(config: KernelConfig) -> Engine:
    """An Engine from KernelConfig.engine: an Engine as is, else a model name or path to load."""
    spec = config.engine
    if spec is not None and not isinstance(spec, (str, bytes)) and hasattr(spec, "step"):
        return spec
    from llmasos.engine import worker
    from llmasos.engine.hf import HFEngine

    load = functools.partial(HFEngine.from_pretrained, spec or "smollm2-135m", max_batch=config.max_batch,
                             max_resident_tokens=config.max_resident_tokens)
    return await worker.run(load)
