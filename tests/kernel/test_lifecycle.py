"""Process lifecycle: spawn, exit values, crashes, wait and reaping, pids, limits."""

from __future__ import annotations

import anyio
import pytest

from llmasos import App, Kernel, KernelConfig, ProcState
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import KernelNotRunning
from llmasos.kernel.config import ConfigError
from llmasos.syscalls.errors import InvalidArguments, NoSuchApp, NoSuchProcess, ProcessLimit, WaitTimeout
from tests.conftest import make_kernel

adder = App("adder")


@adder.main
async def _adder(sys, a: int, b: int = 1) -> int:
    return a + b


crasher = App("crasher")


@crasher.main
async def _crasher(sys, message: str = "boom") -> None:
    await sys.sleep(0)
    raise RuntimeError(message)


sleeper = App("sleeper")


@sleeper.main
async def _sleeper(sys, seconds: float = 60.0) -> str:
    await sys.sleep(seconds)
    return "woke"


async def test_spawn_returns_pid_and_wait_returns_exit_value(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(adder, 2, b=3)
        status = await k.wait(pid)
    assert status.state == "exited" and status.ok
    assert status.value == 5


async def test_arguments_are_converted_by_annotations(tmp_path):
    async with make_kernel(tmp_path) as k:
        status = await k.run(adder, "40", "2")
    assert status.value == 42


async def test_pids_are_monotonic_and_never_reused(tmp_path):
    async with make_kernel(tmp_path) as k:
        pids = []
        for _ in range(5):
            pid = await k.spawn(adder, 1)
            await k.wait(pid)
            pids.append(pid)
    assert pids == sorted(set(pids))
    assert len(pids) == 5


async def test_crash_is_isolated_and_traceback_kept(tmp_path):
    async with make_kernel(tmp_path) as k:
        victim = await k.spawn(sleeper, 0.2)
        bad = await k.spawn(crasher, "kaboom")
        status = await k.wait(bad)
        assert status.state == "crashed"
        assert "RuntimeError: kaboom" in status.error
        assert "Traceback" in status.error
        assert (await k.wait(victim)).value == "woke"
        # The kernel still serves new processes after a crash.
        assert (await k.run(adder, 1)).value == 2


async def test_crash_traceback_goes_to_stderr_log(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(crasher)
        await k.spawn("echo", "x")  # unrelated
        proc = k.get(pid)
        proc.get_output(10)
        await proc.done.wait()
        assert any(stream == "stderr" and "RuntimeError" in text for stream, text in k.output(pid))


async def test_bad_arguments_are_refused_before_running(tmp_path):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(InvalidArguments, match="usage: adder A"):
            await k.spawn(adder)  # missing a
        with pytest.raises(InvalidArguments, match="too many"):
            await k.spawn(adder, 1, 2, 3)
        with pytest.raises(InvalidArguments, match="bad value 'x' for a"):
            await k.spawn(adder, "x")
        with pytest.raises(InvalidArguments, match="unexpected keyword"):
            await k.spawn(adder, 1, c=2)
        assert k.ps(all=True) == []


async def test_unknown_app_suggests_closest(tmp_path):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(NoSuchApp, match="did you mean 'echo'"):
            await k.spawn("ecko")
        with pytest.raises(NoSuchApp, match="no app file"):
            await k.spawn(str(tmp_path / "missing.py"))


async def test_app_from_file_path(tmp_path):
    path = tmp_path / "myapp.py"
    path.write_text(
        "from llmasos import App\n"
        "app = App('mine')\n"
        "@app.main\n"
        "async def main(sys, n: int):\n"
        "    return n * 2\n"
    )
    async with make_kernel(tmp_path) as k:
        assert (await k.run(f"{path}:app", "21")).value == 42
        assert (await k.run(str(path), 2)).value == 4


async def test_wait_on_unknown_or_reaped_pid(tmp_path):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(NoSuchProcess):
            await k.wait(999)
        pid = await k.spawn(adder, 1)
        await k.wait(pid)
        with pytest.raises(NoSuchProcess, match="reaped"):
            await k.wait(pid)
        with pytest.raises(NoSuchProcess):
            k.kill(pid)


async def test_wait_timeout(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(sleeper, 10)
        with pytest.raises(WaitTimeout):
            await k.wait(pid, timeout=0.05)
        assert k.get(pid).alive


async def test_process_limit(tmp_path):
    async with make_kernel(tmp_path, max_procs=3) as k:
        for _ in range(3):
            await k.spawn(sleeper, 10)
        with pytest.raises(ProcessLimit, match="process table is full"):
            await k.spawn(sleeper, 10)
        assert len(k.ps()) == 3


async def test_zombies_are_kept_until_retention_limit(tmp_path):
    async with make_kernel(tmp_path, max_zombies=2) as k:
        pids = [await k.spawn(adder, i) for i in range(4)]
        procs = [k.get(pid) for pid in pids]
        for proc in procs:
            await proc.done.wait()
        kept = [p.pid for p in k.ps(all=True)]
        assert kept == pids[-2:]
        assert k.ps() == []  # none live


async def test_ps_shows_state_and_waiting_on(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(sleeper, 10)
        await anyio.sleep(0.01)
        (info,) = k.ps()
        assert info.pid == pid and info.app == "sleeper"
        assert info.state == "waiting" and info.waiting_on == "sleep"
        assert info.usage.syscalls == 1


async def test_thousand_processes_spawned_and_reaped(tmp_path):
    async with make_kernel(tmp_path) as k:
        pids = [await k.spawn(adder, i) for i in range(1000)]
        results = [(await k.wait(pid)).value for pid in pids]
        assert results == [i + 1 for i in range(1000)]
        assert k.ps(all=True) == []
        assert k.processes == {}


async def test_kernel_must_be_booted(tmp_path):
    k = Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path))
    with pytest.raises(KernelNotRunning):
        await k.spawn(adder, 1)


def test_config_validates_itself():
    with pytest.raises(ConfigError, match="max_batch"):
        KernelConfig(max_batch=0)
    with pytest.raises(ConfigError, match="unknown scheduling policy"):
        KernelConfig(policy="lottery")


async def test_shutdown_cancels_running_processes(tmp_path):
    k = make_kernel(tmp_path)
    async with k:
        pid = await k.spawn(sleeper, 60)
        await anyio.sleep(0.01)
    # A shutdown is not a kill: the process stays as it was so recovery can restart it.
    assert k.processes[pid].alive
    assert k.processes[pid].state in (ProcState.RUNNING, ProcState.WAITING)
