"""kill during every kind of wait, with everything the process held released."""

from __future__ import annotations

import anyio
import pytest

from llmasos import App
from llmasos.engine.fake import FakeEngine
from tests.conftest import make_kernel

waiter = App("waiter", can_spawn=True)


@waiter.main
async def _waiter(sys, what: str) -> str:
    if what == "llm":
        await sys.generate("tell me a very long story", max_tokens=1000)
    elif what == "stream":
        async for _ in sys.generate("a long story", max_tokens=1000, stream=True):
            pass
    elif what == "recv":
        await sys.recv()
    elif what == "sleep":
        await sys.sleep(60)
    elif what == "stdin":
        await sys.read()
    elif what == "child":
        child = await sys.spawn(waiter, "sleep")
        await sys.wait(child)
    return "finished"


def _long_engine() -> FakeEngine:
    # A slow engine with a long reply, so the process is still generating when it is killed.
    return FakeEngine(step_delay=0.005, responder=lambda seq: "word " * 2000)


async def _until_waiting(k, pid: int, on: str) -> None:
    with anyio.fail_after(5):
        while k.get(pid).waiting_on != on:
            await anyio.sleep(0.005)


@pytest.mark.parametrize("what,on", [("llm", "llm"), ("recv", "recv"), ("sleep", "sleep"),
                                     ("stdin", "stdin"), ("child", "child")])
async def test_kill_during_wait_releases_everything(tmp_path, what, on):
    engine = _long_engine()
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn(waiter, what)
        await _until_waiting(k, pid, on)
        proc = k.get(pid)
        children = set(proc.children)
        assert k.kill(pid) is True
        status = await k.wait(pid)
        assert status.state == "killed"
        assert proc.seqs == set()
        for child in children:
            assert (await k.wait(child)).state == "killed"
        with anyio.fail_after(2):
            while engine.active or len(k.llm.scheduler):
                await anyio.sleep(0.01)
        # Only the kernel's own LLM loop task is left.
        assert all(not p.alive for p in k.processes.values())


async def test_kill_mid_stream_frees_the_sequence(tmp_path):
    engine = _long_engine()
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn(waiter, "stream")
        with anyio.fail_after(5):
            while k.get(pid).usage.completion_tokens < 3:
                await anyio.sleep(0.005)
        k.kill(pid)
        assert (await k.wait(pid)).state == "killed"
        with anyio.fail_after(2):
            while engine.active:
                await anyio.sleep(0.01)
        assert engine.aborted  # freed before it finished
        # The model keeps serving others.
        engine.responder = lambda seq: "fine"
        assert (await k.run("hello")).value == "fine"


async def test_killing_a_parent_kills_its_children(tmp_path):
    async with make_kernel(tmp_path) as k:
        parent = await k.spawn(waiter, "child")
        await _until_waiting(k, parent, "child")
        (child,) = k.get(parent).children
        k.kill(parent)
        assert (await k.wait(parent)).state == "killed"
        assert (await k.wait(child)).state == "killed"


async def test_child_outlives_parent_that_exits_normally(tmp_path):
    spawner = App("spawner", can_spawn=True)

    @spawner.main
    async def main(sys) -> int:
        return await sys.spawn(waiter, "sleep")

    async with make_kernel(tmp_path) as k:
        child = (await k.run(spawner)).value
        await _until_waiting(k, child, "sleep")
        info = k.info(child)
        assert info.state == "waiting" and info.ppid == 0  # adopted by the root
        k.kill(child)
        assert (await k.wait(child)).state == "killed"


async def test_kill_before_first_run(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(waiter, "sleep")
        k.kill(pid)  # not yet started
        assert (await k.wait(pid)).state == "killed"


async def test_kill_of_ended_process_returns_false(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn("echo", "x")
        await k.get(pid).done.wait()
        assert k.kill(pid) is False
        assert (await k.wait(pid)).state == "exited"


stubborn = App("stubborn")


@stubborn.main
async def _stubborn(sys) -> str:
    for _ in range(3):
        try:
            await anyio.sleep(60)
        except BaseException:  # swallows cancellation: a badly written app
            continue
    return "survived"


async def _spawn_then_kill(k, app):
    """Spawn app, let it start, kill it; its exit status (the kill must end it within 3 s)."""
    pid = await k.spawn(app)
    await anyio.sleep(0.01)
    k.kill(pid)
    with anyio.fail_after(3):
        return await k.wait(pid)


async def test_app_that_swallows_cancellation_still_ends_killed(tmp_path):
    async with make_kernel(tmp_path, kill_grace=0.5) as k:
        status = await _spawn_then_kill(k, stubborn)
        assert status.state == "killed"


forever = App("forever")


@forever.main
async def _forever(sys) -> None:
    # Ignores cancellation for about a second (far past the grace), then gives up.
    deadline = anyio.current_time() + 1.0
    while anyio.current_time() < deadline:
        try:
            await anyio.sleep(0.05)
        except BaseException:
            pass


async def test_app_that_never_unwinds_is_reported_after_grace(tmp_path):
    async with make_kernel(tmp_path, kill_grace=0.2) as k:
        status = await _spawn_then_kill(k, forever)
        assert status.state == "killed"
        assert "ignored cancellation" in status.error
        # The kernel is still fully usable.
        assert (await k.run("echo", "ok")).value == "ok"


busy = App("busy")


@busy.main
async def _busy(sys, n: int) -> int:
    # Never awaits: cooperative scheduling means it holds the loop until it is done.
    total = 0
    for i in range(n):
        total += i
    return total


async def test_process_that_never_awaits_runs_to_completion_then_others_resume(tmp_path):
    async with make_kernel(tmp_path) as k:
        sleeper = await k.spawn(waiter, "sleep")
        pid = await k.spawn(busy, 200_000)
        assert (await k.wait(pid)).value == sum(range(200_000))
        assert k.get(sleeper).alive
        k.kill(sleeper)
        assert (await k.wait(sleeper)).state == "killed"
