"""Durability hardening: a narrowed app narrows its resumed processes, a database value is data and
never code, an unstorable value is the caller's error, and a failed queued write is reported."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import sqlite3
import sys
from pathlib import Path

import anyio

from llmasos import App, Kernel, ProcState
from llmasos.apps import registry
from llmasos.memory.errors import JournalError, MemoryStoreError
from llmasos.syscalls.errors import InvalidArguments, SyscallError

from .conftest import config

_APP = """\
from llmasos import App
from llmasos.syscalls.errors import PermissionDenied

app = App("narrowed", tools={tools!r})

@app.main
async def main(sys):
    await sys.recv()
    try:
        clock = await sys.call_tool("clock")
    except PermissionDenied as exc:
        clock = f"PermissionDenied: {{exc}}"
    return {{"clock": clock, "calculator": await sys.call_tool("calculator", {{"expression": "6*7"}})}}
"""


async def _until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


def _forget(path: Path) -> None:
    """Make the next find_app read the app file again (a restarted kernel is a fresh Python process)."""
    registry.forget(f"{path.resolve()}:app")
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if file and Path(file).resolve() == path.resolve():
            del sys.modules[name]


async def test_a_narrowed_manifest_narrows_the_resumed_process(home, tmp_path):
    app_file = tmp_path / "narrowed.py"
    app_file.write_text(_APP.format(tools=["calculator", "clock"]))
    try:
        async with Kernel(config(home)) as k:
            pid = await k.spawn(f"{app_file}:app")
            await _until(lambda: k.get(pid).waiting_on == "recv")
            assert k.get(pid).caps.tools == {"calculator", "clock"}
        # the kernel stopped with the process alive; its app now asks for the calculator only
        app_file.write_text(_APP.format(tools=["calculator"]))
        _forget(app_file)
        async with Kernel(config(home)) as k:
            assert k.recovery.restored == [pid]
            proc = k.get(pid)
            assert proc.restored and proc.caps.tools == {"calculator"}
            k.send(pid, "go")
            status = await k.wait(pid, timeout=10)
    finally:
        _forget(app_file)
    assert status.ok, status.error
    assert status.value["calculator"] == 42
    assert status.value["clock"].startswith("PermissionDenied: ")
    assert "may not use the tools ['clock']" in status.value["clock"]


class _Plant:
    """A pickle that, if it were ever unpickled, would create a directory (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _pickled(marker: Path) -> str:
    """The JSON an old llmasos wrote for a pickled value: {"__p": base64 of the pickle}."""
    return json.dumps({"__p": base64.b64encode(pickle.dumps(_Plant(marker))).decode()})


def test_the_planted_pickle_is_live(tmp_path):
    """(The control: the payload the next tests plant does run code when unpickled.)"""
    marker = tmp_path / "control"
    pickle.loads(base64.b64decode(json.loads(_pickled(marker))["__p"]))
    assert marker.is_dir()


async def test_a_pickled_kv_value_in_the_database_is_refused_not_executed(home, tmp_path):
    marker = tmp_path / "pwned"
    async with Kernel(config(home)):
        pass  # creates the database
    db = sqlite3.connect(home / "llmasos.db")
    with db:
        db.execute("INSERT INTO kv (namespace, key, value, updated) VALUES ('shared', 'old', ?, 0)",
                   (_pickled(marker),))
    db.close()

    async def main(sys):
        try:
            await sys.memory.get("old", namespace="shared")
        except SyscallError as exc:
            failure = exc
        return {"error": type(failure).__name__, "message": str(failure),
                "is_store_error": isinstance(failure, MemoryStoreError),
                "after": await sys.memory.get("missing", "default", namespace="shared")}

    app = App("reader", memory=["shared"])
    app.main(main)
    async with Kernel(config(home)) as k:
        status = await k.run(app)
    assert status.ok, status.error
    assert status.value["error"] == JournalError.__name__ and status.value["is_store_error"]
    assert "tagged '__p', which llmasos does not decode" in status.value["message"]
    assert "a pickle is code" in status.value["message"]
    assert status.value["after"] == "default"  # the process went on
    assert not marker.exists()


_REPLAYED = """\
from llmasos import App
from llmasos.syscalls.errors import SyscallError

app = App("replayed")

@app.main
async def main(sys):
    try:
        await sys.sleep(0)
    except SyscallError as exc:
        return f"{type(exc).__name__}: {exc}"
    await sys.recv()
    return "replayed"
"""


async def test_a_pickled_journal_result_is_refused_at_replay_not_executed(home, tmp_path):
    marker = tmp_path / "pwned"
    app_file = tmp_path / "replayed.py"
    app_file.write_text(_REPLAYED)
    async with Kernel(config(home)) as k:
        pid = await k.spawn(f"{app_file}:app")
        await _until(lambda: k.get(pid).waiting_on == "recv")
    db = sqlite3.connect(home / "llmasos.db")
    with db:
        changed = db.execute("UPDATE journal SET result = ? WHERE pid = ? AND n = 1 AND call = 'Sleep'",
                             (_pickled(marker), pid)).rowcount
    db.close()
    assert changed == 1
    async with Kernel(config(home)) as k:
        assert k.recovery.restored == [pid]
        status = await k.wait(pid, timeout=10)
    assert status.ok, status.error
    assert status.value.startswith("JournalError: the database holds a value tagged '__p'")
    assert not marker.exists()


async def test_unstorable_values_are_invalid_arguments_and_the_process_goes_on(home):
    async def sink(sys):
        return (await sys.recv()).body

    async def main(sys, peer: int):
        refused = {}
        for what, call in (("set", lambda: sys.memory.set("k", object())),
                           ("send", lambda: sys.send(peer, object())),
                           ("spawn", lambda: sys.spawn(taker, object()))):
            try:
                await call()
                refused[what] = None
            except InvalidArguments as exc:
                refused[what] = str(exc)
        await sys.memory.set("k", {"plain": [1, 2]})
        await sys.send(peer, "plain")
        return {"refused": refused, "k": await sys.memory.get("k")}

    async def take(sys, value):
        return value

    sink_app, main_app, taker = App("sink"), App("main", can_spawn=True), App("taker")
    sink_app.main(sink)
    main_app.main(main)
    taker.main(take)
    async with Kernel(config(home)) as k:
        peer = await k.spawn(sink_app)
        status = await k.run(main_app, peer)
        received = await k.wait(peer, timeout=5)
        assert [p.app for p in k.ps(all=True)] == []  # no half-made child of the refused spawn
    assert status.ok, status.error
    for what, message in status.value["refused"].items():
        assert message is not None, f"{what} accepted an object()"
        assert "a builtins.object cannot be stored" in message, what
    assert status.value["k"] == {"plain": [1, 2]}
    assert received.value == "plain"  # the refused message was never delivered


async def test_a_failed_queued_write_is_logged_and_raised_in_its_process(home, caplog):
    caplog.set_level(logging.ERROR, logger="llmasos.kernel")
    reported = anyio.Event()

    async def main(sys):
        await sys.sleep(0)  # journaled in group mode: its entry is queued, and that write fails
        await reported.wait()  # (not a syscall) until the kernel has heard of the failure
        try:
            await sys.getpid()
        except MemoryStoreError as exc:
            first = f"{type(exc).__name__}: {exc}"
        else:
            first = None
        return {"first": first, "then": await sys.getpid()}

    app = App("victim")
    app.main(main)
    async with Kernel(config(home, journal_commit="group")) as k:
        idle = App("bystander")
        idle.main(_idle)
        bystander = await k.spawn(idle)
        pid = k.memory.pids.next  # the pid the next spawn takes

        async def plant(conn):  # syscall #1 of that pid is in the journal already
            await conn.exec_driver_sql(
                "INSERT INTO journal (pid, n, call, digest, status, result, at, span) "
                f"VALUES ({pid}, 1, 'Sleep', 'x', 'ok', 'null', 0, 0)")
        await k.memory.writer.run(plant)
        assert await k.spawn(app) == pid
        await _until(lambda: k.get(pid).write_error is not None)
        reported.set()
        status = await k.wait(pid, timeout=5)
        assert k.get(bystander).write_error is None and k.get(bystander).state is ProcState.WAITING
        k.kill(bystander)
    assert status.ok, status.error
    assert status.value["first"].startswith("MemoryStoreError: the memory database ")
    assert "UNIQUE constraint failed: journal.pid, journal.n" in status.value["first"]
    assert status.value["then"] == pid  # raised once, then the process goes on
    logged = [r for r in caplog.records if r.name == "llmasos.kernel"]
    assert any(f"a queued write to the database failed for process {pid}" in r.getMessage()
               and "UNIQUE constraint failed" in r.getMessage() for r in logged), caplog.text


async def _idle(sys):
    await sys.recv()
