"""Apps the sandbox tests run in child processes (found there by spec: tests.kernel.sandbox_apps:NAME).

This module imports only llmasos's public names, so a child loads it quickly.
"""

from __future__ import annotations

import os
import sys as _sys
import time

import anyio

from llmasos import App
from llmasos.syscalls.errors import NotSupported, QuotaExceeded

basic = App("basic", sandbox=True, tools=["calculator"], can_spawn=True)


@basic.main
async def _basic(sys, word: str) -> dict:
    """Every kind of syscall a sandboxed app makes, through the same Sys API."""
    out: dict = {"pid": await sys.getpid(), "sys_pid": sys.pid, "os_pid": os.getpid()}
    out["generate"] = (await sys.generate(f"say {word}", max_tokens=8)).text
    chunks = [text async for text in sys.generate("stream this", max_tokens=8, stream=True)]
    out["chunks"] = chunks
    await sys.memory.set("k", {"word": word, "n": (1, 2)})
    out["mem"] = await sys.memory.get("k")
    await sys.memory.remember("sandboxes keep apps apart")
    out["notes"] = [note.text for note in await sys.memory.search("sandboxes")]
    out["tool"] = await sys.call_tool("calculator", expression="6*7")
    child = await sys.spawn("echo", "from", "child")
    out["child"] = (await sys.wait(child)).value
    await sys.print("printed", word)
    out["ps"] = [p.app for p in await sys.ps()]
    out["models"] = [(m.name, m.state, type(m).__name__) for m in await sys.models()][:1]
    try:
        await sys.recv(timeout=0.01)
    except TimeoutError as exc:
        out["recv"] = type(exc).__name__
    return out


spin = App("spin", sandbox=True)


@spin.main
async def _spin(sys, seconds: float) -> int:
    """Computes without awaiting."""
    await sys.getpid()
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


hostile = App("hostile", sandbox=True, memory=[])


@hostile.main
async def _hostile(sys) -> dict:
    """Reaches for the kernel every way it can, then asks for what its caps deny."""
    from llmasos.syscalls.errors import PermissionDenied

    seen: dict = {"kernel": repr(sys._kernel), "proc": repr(sys._proc)}
    try:
        from llmasos.kernel import caps

        sys._proc.caps = caps.ROOT
        seen["set_caps"] = "worked"
    except Exception as exc:
        seen["set_caps"] = type(exc).__name__
    import llmasos.kernel.kernel as kmod

    seen["kernel_module_from_parent"] = kmod.current_sys.get() is not None
    seen["kernels"] = [type(o).__name__ for o in _referents() if type(o).__name__ == "Kernel"]
    try:
        await sys.memory.set("x", 1, namespace="someone-else")
        seen["denied"] = False
    except PermissionDenied:
        seen["denied"] = True
    try:
        await sys.call_tool("calculator", expression="1+1")
        seen["tool_denied"] = False
    except PermissionDenied:
        seen["tool_denied"] = True
    try:
        with open("/etc/passwd") as f:
            seen["passwd"] = f.read(10)
    except OSError as exc:
        seen["passwd"] = type(exc).__name__
    try:
        os.kill(os.getppid(), 0)
        seen["signal_kernel"] = "worked"
    except OSError as exc:
        seen["signal_kernel"] = type(exc).__name__
    return seen


def _referents() -> list:
    import gc

    return gc.get_objects()


durable = App("durable", sandbox=True)


@durable.main
async def _durable(sys, n: int) -> list:
    """Generates n times, one message between each, so a restart replays what was done."""
    got = []
    for i in range(n):
        got.append((await sys.generate(f"step {i}", max_tokens=4)).text)
        await sys.recv()
    return got


crasher = App("crasher", sandbox=True)


@crasher.main
async def _crasher(sys, how: str) -> None:
    await sys.getpid()
    if how == "raise":
        raise ValueError("boom in the child")
    if how == "exit":
        await sys.exit("bye")
    if how == "die":
        os._exit(7)
    if how == "garbage":
        # write a frame header announcing far more than the limit on the kernel's socket
        for fd in range(3, 64):
            try:
                os.write(fd, b"\xff\xff\xff\xfftrash")
            except OSError:
                continue
        time.sleep(5)
    if how == "memory":
        hog = bytearray(8 << 30)
        return len(hog)
    if how == "sysexit":
        _sys.exit(3)
    if how == "flood":  # more blocking calls at once than a child may have
        refused = []

        async def one() -> None:
            try:
                await sys.sleep(0.5)
            except QuotaExceeded:
                refused.append(1)

        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(one)
        return len(refused)
    if how == "badframe":  # a call whose id is not a number
        await sys._channel.send(["call", "x", "GetPid", {}])
        await sys.sleep(5)
    if how == "unknown":  # a syscall type the kernel does not offer, then a good one
        try:
            await sys._channel._request(["call", 10**6, "Reboot", {}])
        except NotSupported as exc:
            return str(exc)
    if how == "cancel":  # the kernel's recv stops when the app stops waiting for it
        with anyio.move_on_after(0.2):
            await sys.recv()
        return (await sys.recv(timeout=10)).body


waiter = App("sbwaiter", sandbox=True)


@waiter.main
async def _waiter(sys) -> None:
    await sys.recv()
