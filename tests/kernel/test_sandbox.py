"""Sandboxed apps (issue 13, finding 13): an app in its own OS process, with the same Sys API."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from llmasos import App, KernelConfig
from llmasos.apps import registry
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.config import ConfigError
from llmasos.sandbox import confine
from llmasos.syscalls.errors import NoSuchApp
from tests.conftest import make_kernel
from tests.kernel import sandbox_apps as apps

SPEC = "tests.kernel.sandbox_apps:"
LANDLOCK = confine.landlock_abi()

fast = App("fast")


@fast.main
async def _fast(sys, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await sys.sleep(0)
    return time.perf_counter() - t0


async def _until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_a_sandboxed_app_makes_every_syscall_through_the_same_sys_api(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(SPEC + "basic", "hi")
        await _until(lambda: k.get(pid).sandbox is not None and k.get(pid).sandbox.confinement != "starting")
        shown = k.info(pid).sandbox
        await _until(lambda: not k.get(pid).alive, 30)
        output, first_call = k.output(pid), k.get(pid).trace[0].call
        status = await k.wait(pid)
        assert status.ok, status.error
        out = status.value
        assert out["pid"] == out["sys_pid"] == pid and out["os_pid"] != os.getpid()
        assert out["generate"] == "echo: say hi"
        assert "".join(out["chunks"]) == "echo: stream this"
        assert out["mem"] == {"word": "hi", "n": (1, 2)}
        assert out["notes"] == ["sandboxes keep apps apart"]
        assert out["tool"] == 42 and out["child"] == "from child" and "basic" in out["ps"]
        assert out["recv"] == "RecvTimeout"
        assert out["models"] == [("fake", "loaded", "ModelInfo")]  # a record of syscalls.types, over the wire
        assert ("stdout", "printed hi\n") in output
        assert shown is not None and "rlimit" in shown.split("+")
        assert ("landlock" in shown.split("+")) == (LANDLOCK > 0)
        assert first_call.name == "getpid"  # traced like any process's calls


async def test_a_sandboxed_app_computing_without_awaiting_blocks_no_other_process(tmp_path):
    async with make_kernel(tmp_path, memory=False) as k:
        spinner = await k.spawn(apps.spin, 2.0)
        await _until(lambda: k.get(spinner).usage.syscalls >= 1)  # it is spinning now
        t0 = time.perf_counter()
        status = await k.run(fast, 100)
        elapsed = time.perf_counter() - t0
        assert status.ok and elapsed < 1.0, elapsed
        assert k.get(spinner).alive  # the other one was still computing all along
        assert (await k.wait(spinner, timeout=30)).value > 0


async def test_a_sandboxed_app_cannot_reach_kernel_objects_or_raise_its_caps(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(apps.hostile)
        proc = k.get(pid)
        caps = proc.caps
        status = await k.wait(pid, timeout=30)
        assert status.ok, status.error
        seen = status.value
        assert seen["kernel"] == seen["proc"] == "None"
        assert seen["set_caps"] == "AttributeError"
        assert seen["kernel_module_from_parent"] is False and seen["kernels"] == []
        assert seen["denied"] is True and seen["tool_denied"] is True
        assert proc.caps is caps
        if LANDLOCK:
            assert seen["passwd"] == "PermissionError"
        if LANDLOCK >= 6:
            assert seen["signal_kernel"] == "PermissionError"


async def test_killing_a_sandboxed_app_sigkills_its_child_even_while_it_computes(tmp_path):
    async with make_kernel(tmp_path, memory=False) as k:
        waiting = await k.spawn(apps.waiter)
        spinning = await k.spawn(apps.spin, 60.0)
        await _until(lambda: k.get(waiting).waiting_on == "recv" and k.get(spinning).usage.syscalls >= 1)
        children = [k.get(p).sandbox.process.pid for p in (waiting, spinning)]
        t0 = time.perf_counter()
        for pid in (waiting, spinning):
            assert k.kill(pid)
        for pid in (waiting, spinning):
            assert (await k.wait(pid, timeout=5)).state == "killed"
        assert time.perf_counter() - t0 < 2.0
        for child in children:
            with pytest.raises(ProcessLookupError):
                os.kill(child, 0)


async def test_a_sandboxed_app_restarts_after_a_kernel_restart_and_replays_its_journal(tmp_path):
    first = FakeEngine()
    async with make_kernel(tmp_path, engine=first) as k:
        pid = await k.spawn(SPEC + "durable", 2)
        await _until(lambda: k.get(pid).waiting_on == "recv")
        old_child = k.get(pid).sandbox.process.pid
    assert first.prompts == ["step 0"]
    second = FakeEngine()
    async with make_kernel(tmp_path, engine=second) as k:
        assert k.recovery.restored == [pid]
        await _until(lambda: k.get(pid).waiting_on == "recv")
        assert k.get(pid).sandbox.process.pid != old_child
        k.send(pid, "go")
        await _until(lambda: k.get(pid).waiting_on == "recv" and second.prompts)
        k.send(pid, "go")
        status = await k.wait(pid, timeout=30)
    assert status.value == ["echo: step 0", "echo: step 1"]
    assert second.prompts == ["step 1"]  # step 0 came back from the journal, not the model


async def test_a_sandboxed_app_that_cannot_be_found_by_spec_is_refused_at_spawn(tmp_path):
    local = App("local", sandbox=True)

    @local.main
    async def _local(sys) -> None:
        return None

    async with make_kernel(tmp_path, memory=False) as k:
        with pytest.raises(NoSuchApp, match="module:attr"):
            await k.spawn(local)


async def test_hostile_sandboxed_apps_end_only_themselves_next_to_a_bystander(tmp_path):
    limits = {"address_space": 2 << 30, "cpu_seconds": 1}
    async with make_kernel(tmp_path, memory=False, sandbox_limits=limits) as k:
        pids = {how: await k.spawn(apps.crasher, how)
                for how in ("raise", "exit", "die", "garbage", "memory", "sysexit")}
        pids["cpu"] = await k.spawn(apps.spin, 10.0)
        bystander = await k.spawn(fast, 200)
        results = {how: await k.wait(pid, timeout=30) for how, pid in pids.items()}
        assert (await k.wait(bystander, timeout=30)).ok
    assert results["raise"].state == "crashed" and "ValueError: boom in the child" in results["raise"].error
    assert (results["exit"].state, results["exit"].value) == ("exited", "bye")
    assert results["die"].state == "crashed" and "exited with code 7" in results["die"].error
    assert results["garbage"].state == "crashed" and "broke the protocol" in results["garbage"].error
    assert results["memory"].state == "crashed" and "MemoryError" in results["memory"].error
    assert (results["sysexit"].state, results["sysexit"].value) == ("exited", 3)
    assert results["cpu"].state == "crashed" and "cpu_seconds" in results["cpu"].error


async def test_a_sandboxed_app_breaking_the_protocol_or_flooding_the_kernel_hurts_only_itself(tmp_path):
    async with make_kernel(tmp_path, memory=False) as k:
        pids = {how: await k.spawn(apps.crasher, how) for how in ("flood", "badframe", "unknown", "cancel")}
        bystander = await k.spawn(fast, 100)
        await _until(lambda: k.get(pids["cancel"]).usage.syscalls >= 3)  # its first recv was given up
        k.send(pids["cancel"], "late")
        results = {how: await k.wait(pid, timeout=30) for how, pid in pids.items()}
        assert (await k.wait(bystander, timeout=30)).ok
    assert results["flood"].value == 300 - 256  # KernelConfig.sandbox_limits["calls_in_flight"]
    assert results["badframe"].state == "crashed" and "broke the protocol" in results["badframe"].error
    assert "'Reboot' is not a syscall" in results["unknown"].value
    assert results["cancel"].value == "late"


def test_installed_apps_run_sandboxed_unless_they_declare_themselves_trusted(monkeypatch, tmp_path):
    from llmasos.apps import manifest, store
    from llmasos.syscalls.errors import PermissionDenied

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    made = {"plain": App("plain"), "sure": App("sure", trusted=True)}
    for app in made.values():
        app.main(_fast)
    loaded = []

    class EntryPoint:
        def __init__(self, name: str) -> None:
            self.name, self.value = name, f"pkg:{name}"

        def load(self) -> App:
            loaded.append(self.name)
            return made[self.name]

    manifests = {f"pkg:{n}": manifest.check({"name": n, "trusted": a.trusted}) for n, a in made.items()}
    monkeypatch.setattr(registry, "_entry_points", lambda: {n: EntryPoint(n) for n in made})
    monkeypatch.setattr(registry, "read_entry", lambda value: manifests[value])
    try:
        with pytest.raises(PermissionDenied, match="not enabled"):
            registry.find_app("sure")  # trusted only once its user accepted it
        for m in manifests.values():
            store.enable(m, "pkg")
        assert registry.find_app("plain").sandbox is True
        assert loaded == []  # a sandboxed app is never imported in the kernel
        assert registry.find_app("sure").sandbox is False
        assert loaded == ["sure"]
        assert registry.find_app("echo").sandbox is False  # built-ins are trusted
        assert made["plain"].sandbox is False  # (the App object itself is left as it is)
    finally:
        registry.forget("plain")
        registry.forget("sure")


def test_sandbox_limits_are_checked_and_completed():
    assert KernelConfig(sandbox_limits={"cpu_seconds": 5}).sandbox_limits["open_files"] == 256
    with pytest.raises(ConfigError, match="unknown keys"):
        KernelConfig(sandbox_limits={"cpus": 5})
    with pytest.raises(ConfigError, match="positive"):
        KernelConfig(sandbox_limits={"open_files": -1})
