"""Handlers for the process, ipc and stdio syscalls.

Rule (after xv6's sysproc.c): handlers are thin. They unpack the call and call the kernel; the checks
that every syscall needs happen once, in ``Kernel.syscall``; kill and wait also ask ``caps.may_signal``
(the one rule that reads the process table), and ps shows what the caller may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from llmasos.kernel.caps import may_signal
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NoSuchProcess, RecvTimeout

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process


class ExitProcess(BaseException):
    """Raised by the exit syscall; unwinds the process past ``except Exception``."""

    def __init__(self, value: Any = None) -> None:
        super().__init__(value)
        self.value = value


async def sys_spawn(k: Kernel, p: Process, call: c.Spawn) -> int:
    child = await k.launch(call.app, call.args, call.kwargs, priority=call.priority, parent=p.pid,
                           caps=call.caps)  # (returns once the child's row is committed)
    return child.pid


async def sys_kill(k: Kernel, p: Process, call: c.Kill) -> bool:
    pid = pid_of(call.pid)
    if k.cluster is not None and k.cluster.remote(pid):  # another node's: it applies the kill
        return await k.cluster.forward(p, "kill", pid)
    may_signal(k.processes, p, pid)
    return k.kill(pid)


async def sys_wait(k: Kernel, p: Process, call: c.Wait) -> Any:
    pid = pid_of(call.pid)
    if pid == p.pid:
        raise NoSuchProcess("a process cannot wait for itself")
    if k.cluster is not None and k.cluster.remote(pid):
        return await k.cluster.wait(p, pid, seconds("wait's timeout", call.timeout, optional=True))
    may_signal(k.processes, p, pid)
    return await k.wait(pid, seconds("wait's timeout", call.timeout, optional=True))


async def sys_getpid(k: Kernel, p: Process, call: c.GetPid) -> int:
    return p.pid


async def sys_ps(k: Kernel, p: Process, call: c.Ps) -> list:
    return k.ps(all=call.all, viewer=p)


def seconds(what: str, value: Any, *, optional: bool = False) -> float | None:
    """value as a number of seconds (>= 0); InvalidArguments otherwise."""
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise InvalidArguments(f"{what} is a number of seconds >= 0{' or None' if optional else ''}, not {value!r}")
    return float(value)


def pid_of(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArguments(f"a pid is a whole number, not {value!r}")
    return value


async def sys_sleep(k: Kernel, p: Process, call: c.Sleep) -> None:
    t = call.seconds
    try:
        fine = t >= 0  # (the common case, checked with one comparison)
    except TypeError:
        fine = False
    await anyio.sleep(t if fine else seconds("sleep's time", t))


async def sys_exit(k: Kernel, p: Process, call: c.Exit) -> None:
    raise ExitProcess(call.value)


async def sys_send(k: Kernel, p: Process, call: c.Send) -> None:
    if k.cluster is not None and k.cluster.remote(pid_of(call.pid)):  # acknowledged once committed there
        return await k.cluster.forward(p, "send", call.pid, call.body)
    receipt = k.send(pid_of(call.pid), call.body, sender=p.pid)
    # Invariant: a journaled send's message row commits in the same transaction as its journal entry
    # (queued before it), so a send re-issued after a crash never delivers twice. Only a caller that is
    # not journaled (the root process) waits for the row's own commit before it is acknowledged.
    if not p.journaled:
        await receipt


async def sys_recv(k: Kernel, p: Process, call: c.Recv) -> Any:
    box = p.get_mailbox()
    with anyio.move_on_after(seconds("recv's timeout", call.timeout, optional=True)):
        return await box.get()
    raise RecvTimeout(f"no message arrived within {call.timeout}s")


async def sys_readline(k: Kernel, p: Process, call: c.ReadLine) -> str | None:
    return await p.get_stdin().get()


async def sys_write(k: Kernel, p: Process, call: c.Write) -> None:
    if call.stream not in ("stdout", "stderr"):
        raise InvalidArguments(f"write goes to 'stdout' or 'stderr', not {call.stream!r}")
    p.get_output(k.config.stdout_lines).write(call.stream, str(call.text))


async def sys_stdin(k: Kernel, p: Process, call: c.Stdin) -> None:
    pid = pid_of(call.pid)
    if not isinstance(call.text, str):
        raise InvalidArguments(f"stdin takes text, not {type(call.text).__name__}")
    if k.cluster is not None and k.cluster.remote(pid):
        if call.text:
            await k.cluster.forward(p, "stdin", pid, call.text)
        if call.close:
            await k.cluster.forward(p, "close", pid)
        return
    if call.text:
        await k.write_stdin(pid, call.text)  # (returns once the lines are committed)
    if call.close:
        k.close_stdin(pid)


async def sys_set_policy(k: Kernel, p: Process, call: c.SetPolicy) -> None:
    from llmasos.kernel.sched import POLICIES

    if call.policy not in POLICIES:
        raise InvalidArguments(f"unknown scheduling policy {call.policy!r}; choose one of: "
                               f"{', '.join(sorted(POLICIES))}")
    k.set_policy(call.policy, call.model)


async def sys_renice(k: Kernel, p: Process, call: c.Renice) -> None:
    k.renice(pid_of(call.pid), call.priority)


HANDLERS = {
    c.Spawn: sys_spawn,
    c.Kill: sys_kill,
    c.Wait: sys_wait,
    c.GetPid: sys_getpid,
    c.Ps: sys_ps,
    c.Sleep: sys_sleep,
    c.Exit: sys_exit,
    c.Send: sys_send,
    c.Recv: sys_recv,
    c.ReadLine: sys_readline,
    c.Write: sys_write,
    c.Stdin: sys_stdin,
    c.SetPolicy: sys_set_policy,
    c.Renice: sys_renice,
}
