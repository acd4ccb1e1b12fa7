"""The cron app: ticks on a timer, runs its app once per tick, and survives a SIGKILLed kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llmasos.syscalls.errors import InvalidArguments
from tests.conftest import make_kernel
from tests.daemon import readline

CRON_KERNEL = Path(__file__).with_name("cron_kernel.py")


async def _cron(kernel, *args, **kwargs):
    pid = await kernel.spawn("cron", *args, **kwargs)
    await kernel.get(pid).done.wait()
    out = "".join(t for s, t in kernel.output(pid) if s == "stdout")
    return await kernel.wait(pid), out


async def test_cron_runs_its_app_once_per_tick_and_passes_arguments_and_options(tmp_path):
    async with make_kernel(tmp_path) as k:
        status, out = await _cron(k, "echo", "hello", "there", every=0.01, ticks=3)
    assert status.state == "exited", status.error
    assert status.value["ticks"] == 3 and status.value["failed"] == 0
    assert status.value["last"]["value"] == "hello there"
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.endswith("exited: 'hello there'") for line in lines)
    assert [line.split()[:2] for line in lines] == [["[tick", "1]"], ["[tick", "2]"], ["[tick", "3]"]]


async def test_options_go_to_the_app_and_a_failing_tick_does_not_stop_cron(tmp_path):
    async with make_kernel(tmp_path) as k:
        status, out = await _cron(k, "hello", name="Ada", every=0.01, ticks=2)  # the fake engine echoes
        assert "Ada" in status.value["last"]["value"]
        status, out = await _cron(k, f"{CRON_KERNEL}:flaky", "7", every=0.01, ticks=2)
    assert status.value["ticks"] == 2 and status.value["failed"] == 2
    assert out.splitlines()[0].endswith("crashed: RuntimeError: tick failed 7")


async def test_forever_ticks_until_killed(tmp_path):
    import anyio

    async with make_kernel(tmp_path) as k:
        pid = await k.spawn("cron", "echo", "x", every=0.01)
        with anyio.fail_after(10):
            while sum(1 for s, _ in k.output(pid)) < 5:
                await anyio.sleep(0.01)
        assert k.kill(pid)
        status = await k.wait(pid)
    assert status.state == "killed"


async def test_an_app_that_cannot_run_ends_cron_at_its_first_tick(tmp_path):
    async with make_kernel(tmp_path) as k:
        unknown, _ = await _cron(k, "no_such_app_xyz", every=0.01, ticks=5)
        bad_args, _ = await _cron(k, "notes", "explode", every=0.01, ticks=5)
        narrowed, _ = await _cron(k, "notes", "list", every=0.01, ticks=5, caps={"memory": []})
    assert unknown.state == "crashed" and "NoSuchApp: no app named 'no_such_app_xyz'" in unknown.error
    assert bad_args.state == "crashed" and "InvalidArguments: notes: bad value 'explode'" in bad_args.error
    assert narrowed.state == "crashed" and "PermissionDenied" in narrowed.error and "'notes'" in narrowed.error


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"every": -1}, {"every": 10**12}, {"every": "soon"},
                                    {"ticks": -1}, {"ticks": 10**12}, {"ticks": 1.5}])
async def test_bad_intervals_and_counts_are_refused_before_the_process_starts(tmp_path, kwargs):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(InvalidArguments, match=r"cron: bad value .* usage: cron TARGET \[ARGS\.\.\.\]"):
            await k.spawn("cron", "echo", **kwargs)


@pytest.mark.timeout(120)
def test_after_a_sigkill_and_a_restart_cron_goes_on_without_running_a_tick_twice(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    boots = []
    for kill_at in (3, 5):  # SIGKILL the kernel once 3 ticks have run, and again at 5
        with subprocess.Popen([sys.executable, str(CRON_KERNEL), str(home), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                boots.append(readline(proc.stdout, 30).split())
                while (line := readline(proc.stdout, 30)).split() != ["echoes", str(kill_at)]:
                    assert line, proc.stderr.read()
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait(10)
    assert not (tmp_path / "results.json").exists()
    done = subprocess.run([sys.executable, str(CRON_KERNEL), str(home), str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    boots.append(done.stdout.splitlines()[0].split())
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["cron"]["state"] == "exited", out["cron"]["error"]
    assert out["cron"]["value"]["ticks"] == 8 and out["cron"]["value"]["failed"] == 0
    echoes = out["echoes"]
    assert len(echoes) == 8  # one child per tick: none spawned again by the replays
    assert all(e["state"] == "exited" for e in echoes)
    assert [int(b[-1]) >= 1 for b in boots] == [False, True, True]  # restarts restored cron
