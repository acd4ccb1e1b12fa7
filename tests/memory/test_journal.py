"""The journal: results are recorded, a restarted kernel replays them, mismatches are reported.

A kernel shutdown keeps live processes alive in the database, exactly as a crash would, so these
tests "crash" in-process by shutting a kernel down and booting another on the same home.
"""

from __future__ import annotations

import anyio
import pytest

from llmasos import Kernel, ProcState
from llmasos.engine.fake import FakeEngine
from llmasos.memory.manager import MemoryManager

from .conftest import config, spec


async def _rows(home, **kw):
    mm = await MemoryManager.open(config(home))
    try:
        return await mm.store.processes(**kw)
    finally:
        await mm.close()


async def _until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


async def test_results_are_journaled_before_the_process_sees_them(home, tmp_path):
    counter = tmp_path / "counter.txt"
    async with Kernel(config(home)) as k:
        status = await k.run(spec("worker"), "w", 2, str(counter))
        assert status.ok
        mm = k.memory
        entries = await mm.store.journal_for([status.pid])
    calls = [e.call for _, e in sorted(entries[status.pid].items())]
    assert calls == ["Generate", "MemSet", "CallTool", "Sleep"] * 2
    assert all(e.status == "ok" for e in entries[status.pid].values())


async def test_a_restarted_kernel_replays_without_rerunning(home, tmp_path):
    counter = tmp_path / "counter.txt"
    engine = FakeEngine(step_delay=0.001)
    async with Kernel(config(home, engine=engine)) as k:
        pid = await k.spawn(spec("worker"), "w", 6, str(counter), pause=0.0)
        await _until(lambda: counter.exists() and len(counter.read_text().splitlines()) >= 3)
    prompts_before = len(engine.prompts)
    assert prompts_before >= 3
    engine2 = FakeEngine()
    async with Kernel(config(home, engine=engine2)) as k:
        assert k.get(pid).restored
        assert pid in [p.pid for p in k.ps()]  # ps shows restored processes
        status = await k.wait(pid, timeout=10)
    assert status.ok, status.error
    assert status.value["counts"] == [1, 2, 3, 4, 5, 6]
    assert len(counter.read_text().splitlines()) == 6  # each side effect once
    # the model ran only for the steps not journaled before the "crash"
    assert len(engine2.prompts) <= 6 - (prompts_before - 1)


async def test_a_non_deterministic_app_gets_replay_mismatch(home, tmp_path, monkeypatch):
    app_file = tmp_path / "flaky.py"
    app_file.write_text(
        "import os\nfrom llmasos import App\napp = App('flaky')\n"
        "@app.main\nasync def main(sys):\n"
        "    if os.environ.get('FLAKY') == '1':\n        await sys.sleep(0)\n"
        "    else:\n        await sys.memory.set('x', 1)\n"
        "    await sys.recv()\n"
    )
    monkeypatch.setenv("FLAKY", "1")
    async with Kernel(config(home)) as k:
        pid = await k.spawn(f"{app_file}:app")
        await _until(lambda: k.get(pid).state is ProcState.WAITING and k.get(pid).waiting_on == "recv")
    monkeypatch.setenv("FLAKY", "0")
    async with Kernel(config(home)) as k:
        status = await k.wait(pid, timeout=5)
    assert status.state == "crashed"
    assert "ReplayMismatch" in status.error and "journal recorded Sleep at #1" in status.error


async def test_an_in_flight_tool_call_is_reissued_with_the_same_key(home, tmp_path):
    counter = tmp_path / "counter.txt"
    async with Kernel(config(home)) as k:
        pid = await k.spawn(spec("worker"), "w", 2, str(counter), True, 30.0)  # the tool hangs
        await _until(lambda: counter.exists())
        first = counter.read_text().split()[0]
    async with Kernel(config(home)) as k:
        await _until(lambda: pid in k.processes)
    # (the second life also hangs in the tool: check the key the re-issued call saw, then finish)
    rows = await _rows(home, pids=[pid])
    assert rows[0].state == "waiting" or rows[0].state in ("running", "ready")
    lines = counter.read_text().splitlines()
    assert lines == [f"{first} w 1"]  # the tool honoured the key: no second line


async def test_recv_messages_survive_a_restart_and_are_not_redelivered(home):
    async with Kernel(config(home)) as k:
        ppid = await k.spawn(spec("parent"), 2, 3)
        await _until(lambda: len(k.processes) >= 3 and k.get(ppid).usage.syscalls >= 6)
    async with Kernel(config(home)) as k:
        status = await k.wait(ppid, timeout=10)
    assert status.ok, status.error
    assert status.value == {"got": sorted([0, 0, 10, 10, 20, 20]), "exits": [3, 3]}


async def test_a_streamed_generate_replays_the_same_chunks(home):
    async with Kernel(config(home, engine=FakeEngine(step_delay=0.002))) as k:
        pid = await k.spawn(spec("streamer"), 5)
        await _until(lambda: k.get(pid).usage.syscalls >= 12)
    async with Kernel(config(home)) as k:
        proc = k.get(pid)
        status = await k.wait(pid, timeout=10)
        out = "".join(text for _, text in proc.output.chunks)
    assert status.ok, status.error
    assert status.value == [f"echo: stream line {i} of words" for i in range(5)]
    assert out == "".join(status.value)  # the log is rebuilt once, not duplicated


async def test_an_app_that_cannot_be_found_is_marked_lost(home, tmp_path):
    app_file = tmp_path / "gone.py"
    app_file.write_text("from llmasos import App\napp = App('gone')\n"
                        "@app.main\nasync def main(sys):\n    await sys.recv()\n")
    async with Kernel(config(home)) as k:
        pid = await k.spawn(f"{app_file}:app")
        await _until(lambda: k.get(pid).waiting_on == "recv")
    app_file.unlink()
    from llmasos.apps import registry
    registry.forget()
    async with Kernel(config(home)) as k:
        assert pid in k.recovery.lost
        assert [p.pid for p in k.ps()] == []  # not runnable
        (info,) = [p for p in k.ps(all=True) if p.pid == pid]  # but shown by ps -a, with why
        assert info.state == "lost" and info.app == "gone" and "could not be found" in info.error
        status = await k.wait(pid, timeout=1)
        assert status.state == "lost" and not status.ok and "could not be found" in status.error
        assert pid not in k.processes  # wait reaped it
    row = (await _rows(home, pids=[pid]))[0]
    assert row.state == "lost" and "could not be found" in row.error
    async with Kernel(config(home)) as k:  # a later boot neither restarts nor shows it again
        assert pid not in k.processes and not k.recovery.lost


async def test_pids_are_never_reused_across_restarts(home):
    async with Kernel(config(home)) as k:
        first = await k.spawn("echo", "a")
        await k.wait(first)
    async with Kernel(config(home)) as k:
        second = await k.spawn("echo", "b")
    assert second > first


@pytest.mark.parametrize("mode", ["call", "group"])
async def test_both_commit_modes_finish_the_same(home, tmp_path, mode):
    counter = tmp_path / "counter.txt"
    async with Kernel(config(home, journal_commit=mode)) as k:
        status = await k.run(spec("worker"), "w", 3, str(counter))
    assert status.ok and status.value["counts"] == [1, 2, 3]


async def test_unread_stdin_lines_survive_a_restart(home):
    async with Kernel(config(home)) as k:
        pid = await k.spawn(spec("reader"), 3)
        k.write_stdin(pid, "one\ntwo\nthree\n")
        await _until(lambda: k.get(pid).waiting_on == "recv")  # it read "one"; two lines unread
    async with Kernel(config(home)) as k:
        assert list(k.get(pid).stdin.items) == ["two\n", "three\n"]  # "one" was taken, not restored
        k.send(pid, "go")
        status = await k.wait(pid, timeout=10)
        left = await k.memory.store.mailboxes([pid])
    assert status.ok, status.error
    assert status.value == ["one\n", "two\n", "three\n"]
    assert not left.get(pid)  # every line left the database with the readline that took it
