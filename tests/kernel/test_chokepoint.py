"""The syscall chokepoint: one table, typed errors, accounting and tracing for every call."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from llmasos import App
from llmasos.kernel import table
from llmasos.syscalls import calls
from llmasos.syscalls.errors import InvalidArguments, NotSupported, SyscallError
from tests.conftest import make_kernel


def test_every_syscall_type_has_a_handler():
    defined = {cls for cls in vars(calls).values()
               if isinstance(cls, type) and issubclass(cls, calls.Syscall) and cls is not calls.Syscall}
    assert defined <= set(table.TABLE), defined - set(table.TABLE)


@dataclass(frozen=True, slots=True)
class Bogus(calls.Syscall):
    pass


async def test_unknown_syscall_is_not_supported(tmp_path):
    app = App("bogus")

    @app.main
    async def main(sys) -> str:
        try:
            await sys._trap(Bogus())
        except NotSupported as exc:
            return str(exc)
        return "accepted"

    async with make_kernel(tmp_path) as k:
        assert "bogus is not a syscall" in (await k.run(app)).value


@pytest.mark.parametrize("bug", [KeyError("oops"), ValueError("oops"), TypeError("oops")])
async def test_handler_bug_is_an_internal_error_not_the_callers_fault(tmp_path, monkeypatch, caplog, bug):
    async def broken(k, p, call):
        raise bug

    monkeypatch.setitem(table.TABLE, calls.GetPid, broken)
    app = App("victim")

    @app.main
    async def main(sys) -> tuple[str, str]:
        try:
            await sys.getpid()
        except SyscallError as exc:
            return type(exc).__name__, str(exc)
        return "none", "no error"

    async with make_kernel(tmp_path) as k:
        kind, message = (await k.run(app)).value
        assert kind == "InternalError"  # a ValueError in our code is not InvalidArguments
        assert message.startswith(f"getpid failed with an internal error ({type(bug).__name__}: ")
        assert "not in your arguments" in message
        assert (await k.run("echo", "still up")).value == "still up"
    logged = [r for r in caplog.records if r.name == "llmasos.kernel" and r.exc_info]
    assert logged and logged[0].exc_info[1] is bug  # the traceback is in the kernel log


traced = App("traced")


@traced.main
async def _traced(sys) -> int:
    await sys.getpid()
    await sys.sleep(0.001)
    try:
        await sys.sleep(-1)
    except SyscallError:
        pass
    await sys.print("hi", 1)
    return await sys.getpid()


async def test_every_syscall_is_traced_and_counted(tmp_path):
    async with make_kernel(tmp_path) as k:
        events = []
        sub = k.tracer.subscribe()

        async def watch():
            async for ev in sub:
                events.append(ev)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            pid = await k.spawn(traced)
            proc = k.get(pid)
            await proc.done.wait()
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        sub.close()
        assert [e.call.name for e in events] == ["getpid", "sleep", "sleep", "write", "getpid"]
        assert [e.n for e in events] == [1, 2, 3, 4, 5]
        assert isinstance(events[2].error, InvalidArguments) and ">= 0" in str(events[2].error)
        assert "sleep(seconds=-1)" in events[2].format()
        assert events[0].format().endswith(f"= {pid} <{events[0].duration:.4f}s>")
        assert proc.usage.syscalls == 5
        assert list(proc.trace) == events


async def test_exit_syscall_ends_with_value_past_except_exception(tmp_path):
    app = App("quitter")

    @app.main
    async def main(sys) -> str:
        try:
            await sys.exit("early")
        except Exception:
            return "caught"
        return "late"

    async with make_kernel(tmp_path) as k:
        status = await k.run(app)
    assert status.state == "exited" and status.value == "early"


async def test_sys_getpid_ps_and_wait_from_a_process(tmp_path):
    parent = App("parent", can_spawn=True)

    @parent.main
    async def main(sys) -> dict:
        me = await sys.getpid()
        child = await sys.spawn("echo", "from", "child")
        table_ = await sys.ps(all=True)
        status = await sys.wait(child)
        with pytest.raises(SyscallError):
            await sys.wait(me)
        return {"me": me, "pids": sorted(p.pid for p in table_), "child": status.value}

    async with make_kernel(tmp_path) as k:
        status = await k.run(parent)
    assert status.value["child"] == "from child"
    assert status.value["me"] in status.value["pids"]


async def test_a_process_looping_on_nonblocking_syscalls_does_not_starve_others(tmp_path):
    done = {"flag": False}
    spinner = App("spinner")

    @spinner.main
    async def spin(sys) -> int:
        n = 0
        while not done["flag"]:  # only ends if the other process gets to run
            await sys.write("x")
            n += 1
        return n

    setter = App("setter")

    @setter.main
    async def set_flag(sys) -> None:
        await sys.sleep(0.01)
        done["flag"] = True

    async with make_kernel(tmp_path, memory=False, stdout_lines=10) as k:
        spin_pid = await k.spawn(spinner)
        set_pid = await k.spawn(setter)
        with anyio.fail_after(10):
            assert (await k.wait(set_pid)).state == "exited"
            assert (await k.wait(spin_pid)).value > 0
