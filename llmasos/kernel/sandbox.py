"""Sandboxed apps, the kernel's end: a process whose code runs in a child OS process.

Rule: the child holds no kernel object. The process is a normal ``Process`` in the table; its task runs
``run`` instead of the app's main: it starts the child (``python -m llmasos.sandbox.child``, over a
socket pair, with a scrubbed environment), and passes each syscall the child sends through
``Kernel.syscall(proc, call)``, so capabilities, the journal, accounting and the trace apply exactly as
to an app in this process, then writes the result (or the ``SyscallError``) back. A blocking call runs
in a task of its own (the child may make several at once, and may cancel one); a call that never
blocks runs in line. Killing the process is SIGKILL of the child's process group (``Child.kill``, from
``Kernel.kill``) and the cancellation of this task. The app is found in the child by its spec
(``app_spec``): an app without one cannot be sandboxed (``NoSuchApp`` at spawn).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

import llmasos
from llmasos.apps.registry import app_spec
from llmasos.kernel.streams import ReplayStream
from llmasos.kernel.table import TABLE, ExitProcess
from llmasos.sandbox import wire
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NoSuchApp, QuotaExceeded, SyscallError
from llmasos.syscalls.types import Completion

if TYPE_CHECKING:
    from llmasos.apps.app import App
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process

_BOOT = ("import os,sys;sys.path[:]=[p for p in os.environ.pop('LLMASOS_SANDBOX_PATH').split(os.pathsep) if p];"
         "from llmasos.sandbox.child import main;main()")
_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")  # what the child inherits; no secrets
_TYPES = {cls.__name__: cls for cls in TABLE}  # the only syscalls a child can name
_STDERR_TAIL = 4096


class SandboxCrashed(Exception):
    """A sandboxed app raised, or its child process died; the message says which and how."""


class Child:
    """A sandboxed process's child OS process (``Process.sandbox``) and the confinement it runs under."""

    __slots__ = ("process", "confinement")

    def __init__(self) -> None:
        self.process: anyio.abc.Process | None = None
        self.confinement = "starting"  # then what the child applied: "rlimit+landlock+seccomp", "none"

    def kill(self) -> None:
        """SIGKILL the child and anything it started (its own process group); no await."""
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def check(app: App) -> str:
    """The spec a sandboxed app's child finds it by; NoSuchApp when it has none."""
    spec = app_spec(app)
    if spec is None:
        raise NoSuchApp(
            f"app {app.name!r} is sandboxed, so it runs in its own OS process, which finds it by name or "
            "spec; define it at the top level of a module or file and spawn it as 'module:attr' or "
            "'file.py:attr' (or pass the App object from that module)")
    return spec


def shown(proc: Process) -> str | None:
    """What ps shows of proc's sandbox: its confinement, "starting", or None (it runs in the kernel)."""
    if proc.sandbox is not None:
        return proc.sandbox.confinement
    return "starting" if getattr(proc.app, "sandbox", False) and proc.alive else None


async def run(kernel: Kernel, proc: Process) -> Any:
    """Run proc's app in a child OS process until it ends; its exit value, or SandboxCrashed."""
    spec = check(proc.app)
    limits = dict(kernel.config.sandbox_limits)
    start = wire.frame(["start", proc.pid, spec, list(proc.args), proc.kwargs, limits])  # InvalidArguments
    child = proc.sandbox = Child()
    ours, theirs = socket.socketpair()
    try:
        try:
            child.process = await anyio.open_process(
                [sys.executable, "-I", "-B", "-c", _BOOT, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                env=_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
        finally:
            theirs.close()
        stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
        proxy = _Proxy(kernel, proc, child, stream, limits)
        await proxy.send_raw(start)
        return await proxy.serve()
    finally:
        child.kill()
        with anyio.CancelScope(shield=True):
            ours.close()
            if child.process is not None:
                with anyio.move_on_after(5):
                    await child.process.aclose()


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV}
    here = str(Path(llmasos.__file__).resolve().parent.parent)  # this llmasos, first
    paths = [here, *(os.path.abspath(p) if p else os.getcwd() for p in sys.path)]
    env["LLMASOS_SANDBOX_PATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class _Proxy:
    """Serves one child: reads its requests, makes its syscalls, writes the answers."""

    def __init__(self, kernel: Kernel, proc: Process, child: Child, stream: anyio.abc.ByteStream,
                 limits: dict[str, Any]) -> None:
        self.kernel, self.proc, self.child = kernel, proc, child
        self.stream, self.reader = stream, BufferedByteReceiveStream(stream)
        self.limit = limits["message_bytes"]
        self.start_seconds, self.in_flight = limits["start_seconds"], limits["calls_in_flight"]
        self.lock = anyio.Lock()
        self.calls: dict[int, anyio.CancelScope] = {}  # id of a blocking call in progress -> its scope
        self.pending = 0  # blocking calls started and not finished (at most calls_in_flight)
        self.streams: dict[int, Any] = {}  # id -> a streamed generate's reply, while the child reads it
        self.stream_ids = itertools.count(1)
        self.outcome: tuple[str, Any] | None = None
        self.loop = anyio.CancelScope()
        self.stderr = bytearray()

    async def send_raw(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send(data)

    async def reply(self, message: list[Any]) -> None:
        try:
            data = wire.frame(message)
        except InvalidArguments as exc:  # a result that cannot cross (it could not be journaled either)
            data = wire.frame(wire.error_message(message[1], exc))
        try:
            await self.send_raw(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the child is gone; the read loop reports how

    def finish(self, kind: str, value: Any) -> None:
        if self.outcome is None:
            self.outcome = (kind, value)
        self.loop.cancel()

    async def serve(self) -> Any:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.drain_stderr)
            with anyio.move_on_after(self.start_seconds):
                hello = await self.receive()
            if hello is None:
                self.finish("crash", f"the sandboxed app did not start within {self.start_seconds}s "
                                     "(KernelConfig.sandbox_limits['start_seconds'])")
            elif hello[0] == "hello":
                self.child.confinement = str(hello[1]) if len(hello) > 1 else "none"
            else:
                await self.dispatch(tg, hello)
            with self.loop:
                while self.outcome is None:
                    await self.dispatch(tg, await self.receive())
            tg.cancel_scope.cancel()
        kind, value = self.outcome
        if kind == "exit":
            return value
        if kind == "exitprocess":
            raise value
        raise SandboxCrashed(value)

    async def receive(self) -> list[Any]:
        try:
            n = wire.size(await self.reader.receive_exactly(wire.HEADER.size), self.limit)
            return wire.parse(await self.reader.receive_exactly(n))
        except wire.ProtocolError as exc:
            self.child.kill()
            return ["crash", f"the sandboxed app broke the protocol, so it was killed: {exc}"]
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            await anyio.lowlevel.checkpoint()  # (a kill's cancellation is raised here)
            return ["crash", await self.death()]

    async def death(self) -> str:
        """How the child died without saying so."""
        code = None
        if self.child.process is not None:
            with anyio.move_on_after(2):
                code = await self.child.process.wait()
        await anyio.sleep(0.01)  # (the last of its stderr)
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if -code == signal.SIGXCPU:
                how += " (over its CPU time limit, KernelConfig.sandbox_limits['cpu_seconds'])"
        else:
            how = f"exited with code {code}"
        tail = self.stderr.decode(errors="replace").strip()
        return f"the sandboxed app's process {how}" + (f"; its last output:\n{tail}" if tail else "")

    async def drain_stderr(self) -> None:
        assert self.child.process is not None and self.child.process.stderr is not None
        try:
            async for chunk in self.child.process.stderr:
                self.stderr += chunk
                del self.stderr[:-_STDERR_TAIL]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    # -- requests ------------------------------------------------------------------------------

    async def dispatch(self, tg: anyio.abc.TaskGroup, message: list[Any]) -> None:
        op, args = message[0], message[1:]
        if op in ("call", "next") and len(args) == (3 if op == "call" else 2) and isinstance(args[0], int):
            cid = args[0]
            if op == "call":
                try:
                    call = wire.build_call(args[1], args[2], _TYPES)
                except SyscallError as exc:
                    await self.reply(wire.error_message(cid, exc))
                    return
                if call.waits is None:  # (it never blocks: in line, no task)
                    await self.syscall(cid, call)
                    return
                work: tuple[Any, ...] = (self.syscall, cid, call)
            else:
                work = (self.next_chunk, cid, args[1])
            if self.pending >= self.in_flight:
                await self.reply(wire.error_message(cid, QuotaExceeded(
                    f"process {self.proc.pid} has {self.pending} blocking syscalls in progress, the most a "
                    "sandboxed app may (KernelConfig.sandbox_limits['calls_in_flight']); await some first")))
                return
            self.pending += 1
            tg.start_soon(self.blocking, cid, *work)
        elif op == "close" and len(args) == 1:
            stream = self.streams.pop(args[0], None) if isinstance(args[0], int) else None
            if stream is not None:
                stream.close()
        elif op == "cancel" and len(args) == 1:
            scope = self.calls.get(args[0]) if isinstance(args[0], int) else None
            if scope is not None:
                scope.cancel()
        elif op in ("exit", "crash") and len(args) == 1:
            self.finish(op, args[0] if op == "exit" else str(args[0]))
        else:
            self.child.kill()
            self.finish("crash", f"the sandboxed app broke the protocol, so it was killed: it sent {op!r} "
                                 f"with {len(args)} values")

    async def blocking(self, cid: int, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) under a scope the child can cancel (``[cancel, id]``)."""
        with anyio.CancelScope() as scope:
            self.calls[cid] = scope
            try:
                await fn(*args)
            finally:
                self.pending -= 1
                if self.calls.get(cid) is scope:
                    del self.calls[cid]

    async def syscall(self, cid: Any, call: c.Syscall) -> None:
        try:
            result = await self.kernel.syscall(self.proc, call)
        except SyscallError as exc:
            await self.reply(wire.error_message(cid, exc))
            return
        except ExitProcess as exc:  # the exit syscall: the process ends, and with it the child
            self.finish("exitprocess", exc)
            return
        if isinstance(call, c.Generate) and call.stream:
            if isinstance(result, Completion):
                result = ReplayStream([result.text], result)
            sid = next(self.stream_ids)
            self.streams[sid] = result
            result = sid
        await self.reply(["ok", cid, result])

    async def next_chunk(self, cid: Any, sid: Any) -> None:
        stream = self.streams.get(sid) if isinstance(sid, int) else None
        if stream is None:
            await self.reply(wire.error_message(cid, InvalidArguments(f"no open stream {sid!r}")))
            return
        try:
            text = await stream.__anext__()
        except StopAsyncIteration:
            text = None
            self.streams.pop(sid, None)
        except SyscallError as exc:
            self.streams.pop(sid, None)
            await self.reply(wire.error_message(cid, exc))
            return
        await self.reply(["ok", cid, [text, stream.completion]])
