"""renice: the root user (the shell, the CLI, the HTTP API, the web console) changes a live process's
priority; its queued generations take it at once, a restarted kernel keeps it, an app may not."""

from __future__ import annotations

import anyio
import pytest

from llmasos import App, Kernel
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.control import PRIORITY_LIMIT
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NoSuchProcess, PermissionDenied
from tests.conftest import make_kernel
from tests.memory.conftest import config, spec

talker = App("talker")


@talker.main
async def _talker(sys) -> str:
    return (await sys.generate(prompt="a long answer, please", max_tokens=200)).text


parent = App("parent", can_spawn=True, signal=True)


@parent.main
async def _parent(sys) -> str:
    child = await sys.spawn("tests/apps_for_tests.py:lines")
    try:
        await sys.syscall(c.Renice(child, -5))
    except PermissionDenied as exc:
        return str(exc)
    finally:
        await sys.kill(child)
    return "reniced"


async def _until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


async def test_renice_changes_the_priority_of_the_process_and_of_its_queued_generation(tmp_path) -> None:
    engine = FakeEngine(step_delay=0.01, responder=lambda seq: "word " * 200)
    async with make_kernel(tmp_path, engine=engine, policy="priority") as k:
        pid = await k.spawn(talker, priority=3)
        sched = k.llm.scheduler
        await _until(lambda: any(s.pid == pid for s in (*sched.waiting, *sched.running)))
        await k.root.syscall(c.Renice(pid, -7))
        assert k.info(pid).priority == -7
        assert [s.priority for s in (*sched.waiting, *sched.running) if s.pid == pid] == [-7]
        trace = [e.format() for e in k.root_process.trace or ()]
        assert any(line.startswith(f"[0] renice(pid={pid}, priority=-7) = None") for line in trace)
        k.kill(pid)


on_big = App("on-big", model="big")


@on_big.main
async def _on_big(sys) -> str:
    return (await sys.generate(prompt="a long answer, please", max_tokens=200)).text


async def test_renice_reaches_a_generation_queued_on_any_model(tmp_path) -> None:
    engines = {name: FakeEngine(step_delay=0.01, responder=lambda seq: "word " * 200) for name in ("small", "big")}
    async with Kernel(models=engines, home=tmp_path, memory=False, policy="priority") as k:
        pid = await k.spawn(on_big, priority=3)
        sched = k.models.get("big").llm.scheduler
        await _until(lambda: any(s.pid == pid for s in (*sched.waiting, *sched.running)))
        await k.root.syscall(c.Renice(pid, -7))
        assert [s.priority for s in (*sched.waiting, *sched.running) if s.pid == pid] == [-7]
        k.kill(pid)


async def test_an_app_may_not_renice_even_its_own_child(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        status = await k.run(parent)
    assert status.ok and "may not make the renice syscall" in status.value


@pytest.mark.parametrize("priority", [True, "1", 1.5, None, PRIORITY_LIMIT + 1, -PRIORITY_LIMIT - 1, 2**63, [1]])
async def test_renice_refuses_what_is_no_priority(tmp_path, priority) -> None:
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn("tests/apps_for_tests.py:lines", priority=2)
        with pytest.raises(InvalidArguments, match="a priority is a whole number"):
            await k.root.syscall(c.Renice(pid, priority))
        assert k.info(pid).priority == 2
        k.kill(pid)


async def test_renice_of_a_process_that_is_gone_or_ended_says_so(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        with pytest.raises(NoSuchProcess):
            await k.root.syscall(c.Renice(42, 1))
        with pytest.raises(NoSuchProcess):
            await k.root.syscall(c.Renice(0, 1))  # the root process is no process of the table
        status = await k.run("echo", "hi")
        pid = await k.spawn("echo", "bye")
        await k.get(pid).done.wait()
        with pytest.raises(InvalidArguments, match="has ended"):
            await k.root.syscall(c.Renice(pid, 1))
        assert status.ok


async def test_a_restarted_kernel_keeps_the_new_priority(tmp_path) -> None:
    async with Kernel(config(tmp_path)) as k:
        pid = await k.spawn(spec("reader"), 3)
        await _until(lambda: k.get(pid).waiting_on == "stdin")
        await k.root.syscall(c.Renice(pid, 11))
    async with Kernel(config(tmp_path)) as k:
        assert k.info(pid).priority == 11
        k.kill(pid)
