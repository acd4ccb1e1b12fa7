"""A call that crashes the kernel is not re-run at every boot (issue 13, finding 1).

After ``KernelConfig.max_recoveries`` recoveries in a row that made no progress, the process is marked
LOST with the syscall it was in, and the kernel boots; a process waiting on the world is never blamed,
and a clean shutdown is not a crash.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from llmasos import App
from llmasos.engine.fake import FakeEngine
from tests.conftest import make_kernel

REPO = Path(__file__).resolve().parents[2]

SCRIPT = '''
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
import anyio
from llmasos import App, Kernel, KernelConfig, tool
from llmasos.engine.fake import FakeEngine

HERE = Path(__file__).resolve()


@tool(name="crash_kernel")
def crash_kernel() -> str:
    """Kill the process it runs in: the kernel dies mid-call, as if this tool had crashed it."""
    with open(HERE.with_name("calls.log"), "a") as f:
        f.write("called\\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


doomed = App("doomed", tools=["crash_kernel"])


@doomed.main
async def doomed_main(sys) -> str:
    await sys.write("calling the tool")
    return await sys.call_tool("crash_kernel")


waiter = App("waiter")


@waiter.main
async def waiter_main(sys) -> str:
    msg = await sys.recv()
    return "got " + msg.body


async def main(home):
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home, max_recoveries={limit})) as k:
        if not await k.memory.store.processes():  # the first boot
            await k.spawn(f"{{HERE}}:waiter")
            await k.spawn(f"{{HERE}}:doomed")
            await anyio.sleep(30)  # the tool kills us long before
            return
        out = {{"restored": k.recovery.restored, "lost": k.recovery.lost}}
        for pid in k.recovery.restored:  # the waiter, never blamed
            k.send(pid, "hello")
            out["waiter"] = (await k.wait(pid, timeout=10)).value
        print(json.dumps(out), flush=True)


anyio.run(main, Path(sys.argv[1]))
'''


def _boot(script: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(home)], capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(180)
def test_a_tool_call_that_crashes_the_kernel_is_not_rerun_at_every_boot(tmp_path):
    limit = 2
    script = tmp_path / "crashing_kernel.py"
    script.write_text(SCRIPT.format(repo=str(REPO), limit=limit))
    home = tmp_path / "home"
    # The first run and `limit` recoveries die in the tool (SIGKILL: the kernel crashed mid-call)...
    for boot in range(limit + 1):
        done = _boot(script, home)
        assert done.returncode == -9, f"boot {boot + 1}: {done.returncode}\n{done.stderr[-3000:]}"
    assert len((tmp_path / "calls.log").read_text().splitlines()) == limit + 1
    # ...then the process is marked lost with the call it was in, and the kernel boots and goes on.
    done = _boot(script, home)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["restored"] == [1] and out["waiter"] == "got hello"  # the bystander is restored
    (why,) = out["lost"].values()
    assert "syscall #2 (calltool)" in why and f"max_recoveries = {limit}" in why, why
    assert len((tmp_path / "calls.log").read_text().splitlines()) == limit + 1  # not run again
    # The next boot has nothing left to recover.
    done = _boot(script, home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"restored": [], "lost": {}}


def _pretend_the_kernel_crashed(home: Path) -> None:
    """Make the last (clean) shutdown look like a crash, as a SIGKILLed kernel leaves the database."""
    with sqlite3.connect(home / "llmasos.db") as conn:
        conn.execute("UPDATE meta SET value = 'running' WHERE key = 'last_stop'")


long_generate = App("long_generate")


@long_generate.main
async def _long_generate(sys) -> str:
    return (await sys.generate("a long story", max_tokens=1000)).text


def _slow_engine() -> FakeEngine:
    return FakeEngine(step_delay=0.01, responder=lambda seq: "word " * 2000)


async def test_clean_shutdowns_are_not_counted_as_crashes(tmp_path):
    async with make_kernel(tmp_path, engine=_slow_engine(), max_recoveries=1) as k:
        pid = await k.spawn(long_generate)
        await anyio.sleep(0.05)
    for _ in range(3):  # shut down cleanly while it generates: restored every time
        async with make_kernel(tmp_path, engine=_slow_engine(), max_recoveries=1) as k:
            assert k.recovery.restored == [pid]
            await anyio.sleep(0.05)
    _pretend_the_kernel_crashed(tmp_path)  # one crash recovery without progress: at the limit
    async with make_kernel(tmp_path, engine=_slow_engine(), max_recoveries=1) as k:
        assert k.recovery.restored == [] and pid in k.recovery.lost
        assert "max_recoveries = 1" in k.recovery.lost[pid]
        assert (await k.wait(pid)).state == "lost"


patient = App("patient")


@patient.main
async def _patient(sys) -> str:
    return (await sys.recv()).body


async def test_a_process_waiting_on_the_world_is_not_blamed_for_crashes(tmp_path):
    async with make_kernel(tmp_path, max_recoveries=1) as k:
        pid = await k.spawn(patient)
        await anyio.sleep(0.05)
    for _ in range(4):  # crash after crash, it is found waiting for a message each time: no suspect
        _pretend_the_kernel_crashed(tmp_path)
        async with make_kernel(tmp_path, max_recoveries=1) as k:
            assert k.recovery.restored == [pid], k.recovery.lost
            with anyio.fail_after(5):
                while k.get(pid).waiting_on != "recv":
                    await anyio.sleep(0.005)
    _pretend_the_kernel_crashed(tmp_path)
    async with make_kernel(tmp_path, max_recoveries=1) as k:
        k.send(pid, "at last")
        assert (await k.wait(pid, timeout=5)).value == "at last"


@pytest.mark.parametrize("field,value", [
    ("max_recoveries", 0), ("max_recoveries", -1), ("max_recoveries", 2.5), ("shutdown_grace", -1.0),
    ("shutdown_grace", float("nan")), ("shutdown_grace", float("inf")), ("shutdown_grace", "5"),
])
def test_bad_recovery_and_shutdown_limits_are_refused(tmp_path, field, value):
    from llmasos.kernel.config import ConfigError, KernelConfig

    with pytest.raises(ConfigError, match=field):
        KernelConfig(home=tmp_path, **{field: value})
