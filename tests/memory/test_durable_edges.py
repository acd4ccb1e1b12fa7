"""Durable means durable: what is acknowledged is committed, what cannot be stored fails its call, files
under LLMASOS_HOME are private, jails are per run, sizes are bounded, old rows are pruned (issue 13).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from llmasos import App, Kernel
from llmasos.api.http import create_app
from llmasos.client.wire import server_token
from llmasos.memory.errors import MemoryStoreError
from llmasos.syscalls.calls import Stdin
from llmasos.syscalls.errors import InvalidArguments
from tests.memory.conftest import config

ROOT_ACKS = Path(__file__).with_name("root_acks.py")


def _app(main, name: str = "edge", **manifest) -> App:
    app = App(name, **manifest)
    app.main(main)
    return app


async def _idle(sys, *args, **kwargs) -> None:
    await sys.sleep(3600)


# -- finding 8: root operations are acknowledged after commit ------------------------------------


def test_root_spawns_sends_and_stdin_writes_survive_a_sigkill_right_after_their_ack(tmp_path):
    home = tmp_path / "home"
    target = None
    with open(tmp_path / "stderr.log", "w") as err, subprocess.Popen(
            [sys.executable, str(ROOT_ACKS), str(home)], stdout=subprocess.PIPE, stderr=err, text=True) as proc:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.startswith("target"):
                    target = int(line.split()[1])
                if line.strip() == "acked 5":
                    os.kill(proc.pid, signal.SIGKILL)  # right after the ack
                    break
            else:
                pytest.fail(f"the kernel died before its 5th ack: {(tmp_path / 'stderr.log').read_text()[-2000:]}")
        finally:
            proc.kill()

    async def restart() -> None:
        async with Kernel(config(home)) as k:
            assert len(k.recovery.restored) == 1 + 2 * 5  # the target and the 10 acknowledged spawns
            proc = k.get(target)
            mail = [m.body for m in proc.get_mailbox().items]
            lines = list(proc.get_stdin().items)
            assert mail == [f"{who} {i}" for i in range(1, 6) for who in ("root", "api")]
            assert lines == [f"{who} {i}\n" for i in range(1, 6) for who in ("root", "api")]
    anyio.run(restart)


async def test_the_python_api_and_the_root_still_take_sync_sends(home):
    async def main(sys):
        return [(await sys.recv()).body, await sys.read()]
    async with Kernel(config(home)) as k:
        pid = await k.spawn(_app(main))
        k.send(pid, "sync")  # not awaited: queued, committed soon after (the old way still works)
        k.write_stdin(pid, "line\n")
        assert (await k.wait(pid)).value == ["sync", "line\n"]


# -- finding 6: a row that cannot be written fails the call that caused it ------------------------


async def test_a_priority_out_of_range_is_refused_at_spawn(home):
    async def parent(sys):
        try:
            await sys.spawn(_app(_idle, "child"), priority=10**30)
        except InvalidArguments as exc:
            return str(exc)
    async with Kernel(config(home)) as k:
        for bad in (10**30, -(10**7), "high", True, 1.5):
            with pytest.raises(InvalidArguments, match="priority"):
                await k.spawn(_app(_idle), priority=bad)
        with pytest.raises(InvalidArguments, match="priority"):
            await k.spawn(_app(_idle, priority=10**30))  # an app's own default is checked too
        status = await k.run(_app(parent, can_spawn=True))
        assert status.ok and "priority" in status.value
        assert not k.ps(all=True)  # no half-made process anywhere
        await k.memory.flush()
        assert [r.app for r in await k.memory.store.processes()] == ["edge"]  # the parent's row only
        ok = await k.spawn(_app(_idle), priority=-1_000_000)
        assert k.get(ok).priority == -1_000_000


async def test_a_process_row_that_cannot_be_written_fails_its_spawn(home):
    async def parent(sys):
        try:
            await sys.spawn(_app(_idle, "doomed"))
        except MemoryStoreError as exc:
            error = str(exc)
        return [error, await sys.getpid()]  # and the next syscall does not raise it again
    async with Kernel(config(home)) as k:
        async def trigger(conn):
            await conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON processes "
                                       "WHEN NEW.app = 'doomed' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        await k.memory.writer.run(trigger)
        with pytest.raises(MemoryStoreError, match="refused"):
            await k.spawn(_app(_idle, "doomed"))
        with pytest.raises(MemoryStoreError, match="refused"):
            await k.root.spawn(_app(_idle, "doomed"))
        status = await k.run(_app(parent, can_spawn=True))
        assert status.ok and "refused" in status.value[0]
        assert not any(p.app == "doomed" for p in k.ps(all=True))


# -- finding 9: files under LLMASOS_HOME are private ------------------------------------------------


def _modes(home: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(home.stat().st_mode)}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(root) / name
            out[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return out


async def test_files_under_the_home_are_private_whatever_the_umask(tmp_path):
    home = tmp_path / "home"

    async def main(sys):
        await sys.memory.set("secret", "x")
        return await sys.call_tool("files", {"action": "write", "path": "notes/a.txt", "content": "hi"})
    old = os.umask(0o022)
    try:
        async with Kernel(config(home)) as k:
            status = await k.run(_app(main, memory=["*"], tools=["files"]))
            assert status.ok, status.error
            server_token(home)
            modes = _modes(home)  # while the database is open: its -wal and -shm exist
    finally:
        os.umask(old)
    assert {"llmasos.db", "llmasos.db-wal", "llmasos.db-shm", "api_token", "procs"} <= set(modes)
    assert any(name.endswith("notes/a.txt") for name in modes)
    for name, mode in modes.items():
        is_dir = name == "." or (home / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), f"{name} is {oct(mode)}"


async def test_an_existing_home_and_database_are_made_private(tmp_path):
    home = tmp_path / "home"
    async with Kernel(config(home)):
        pass
    home.chmod(0o755)
    (home / "llmasos.db").chmod(0o644)
    async with Kernel(config(home)):
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "llmasos.db").stat().st_mode) == 0o600


# -- finding 10: jails are per kernel run -----------------------------------------------------------


async def test_a_new_pid_1_without_a_database_does_not_see_the_old_pid_1s_files(tmp_path):
    async def writer(sys):
        await sys.call_tool("files", {"action": "write", "path": "secret.txt", "content": "mine"})
        return await sys.getpid()

    async def reader(sys):
        listing = await sys.call_tool("files", {"action": "list"})
        return [await sys.getpid(), listing["entries"]]
    async with Kernel(config(tmp_path, memory=False)) as k:
        assert (await k.run(_app(writer, tools=["files"]))).value == 1
    async with Kernel(config(tmp_path, memory=False)) as k:
        assert (await k.run(_app(reader, tools=["files"]))).value == [1, []]


async def test_a_process_keeps_its_jail_across_kernels_on_one_database(home):
    async def writer(sys):
        await sys.call_tool("files", {"action": "write", "path": "kept.txt", "content": "mine"})
        return await sys.getpid()
    async with Kernel(config(home)) as k:
        pid = (await k.run(_app(writer, tools=["files"]))).value
        db_id = k.memory.db_id
    assert (home / "procs" / f"{db_id}-{pid}" / "kept.txt").read_text() == "mine"


# -- finding 11: size limits, bounded searches, pruning ----------------------------------------------


async def test_oversized_keys_values_notes_arguments_and_messages_are_invalid_arguments(home):
    limits = dict(max_key_size=100, max_value_size=1000, max_note_size=1000, max_args_size=1000)

    async def main(sys):
        out = {}
        attempts = {
            "max_key_size": lambda: sys.memory.set("k" * 101, 1),
            "max_key_size ": lambda: sys.memory.keys("k" * 101),
            "max_value_size": lambda: sys.memory.set("k", "v" * 1001),
            "max_note_size": lambda: sys.memory.remember("n " * 501),
            "max_note_size ": lambda: sys.memory.search("q " * 501),
            "max_args_size": lambda: sys.spawn(_app(_idle, "child"), "a" * 1001),
        }
        for limit, attempt in attempts.items():
            try:
                await attempt()
                out[limit.strip()] = "accepted"
            except InvalidArguments as exc:
                out[limit.strip()] = str(exc)
        await sys.memory.set("k", "v" * 900)  # under the limits: fine
        return out
    async with Kernel(config(home, **limits)) as k:
        status = await k.run(_app(main, memory=["*"], can_spawn=True))
        assert status.ok, status.error
        for limit, message in status.value.items():
            assert f"KernelConfig.{limit}" in message, (limit, message)
        sink = await k.spawn(_app(_idle))
        with pytest.raises(InvalidArguments, match="max_args_size"):
            await k.root.send(sink, "m" * 1001)
        with pytest.raises(InvalidArguments, match="max_args_size"):
            await k.root.syscall(Stdin(sink, "line\n" * 300))
        with pytest.raises(InvalidArguments, match="max_args_size"):
            await k.spawn(_app(_idle), x="a" * 1001)
        assert not k.get(sink).get_mailbox().items and not k.get(sink).get_stdin().items  # nothing half-done
        await k.memory.flush()
        assert not await k.memory.store.mailboxes([sink])
        assert (await k.memory.store.kv_get(f"pid:{status.pid}", "k")) == (True, "v" * 900)


async def test_an_http_body_over_the_limit_is_refused_with_413(home):
    async with Kernel(config(home, max_body_size=2000)) as k:
        api = create_app(k, "t")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://x",
                                     headers={"Authorization": "Bearer t"}) as http:
            big = await http.post("/v1/procs", json={"app": "echo", "args": ["a" * 5000]})
            assert big.status_code == 413
            assert "KernelConfig.max_body_size" in big.json()["error"]["message"]

            async def chunks():
                for _ in range(10):
                    yield b" " * 500  # no Content-Length: counted as it arrives
            streamed = await http.post("/v1/procs", content=chunks(), headers={"content-type": "application/json"})
            assert streamed.status_code == 413
            small = await http.post("/v1/procs", json={"app": "echo", "args": ["hi"]})
            assert small.status_code == 201


async def test_a_huge_search_is_refused_at_once_and_does_not_stall_another_write(home):
    query = " ".join(f"w{i}" for i in range(100_000))
    timings = {}

    async def searcher(sys):
        for i in range(50):
            await sys.memory.remember(f"note w{i} about things")
        start = time.perf_counter()
        try:
            await sys.memory.search(query, k=5)
        except InvalidArguments as exc:
            timings["search"] = time.perf_counter() - start
            return str(exc)

    async def writer(sys):
        await sys.sleep(0.01)
        start = time.perf_counter()
        await sys.memory.set("k", "v")
        timings["write"] = time.perf_counter() - start
    async with Kernel(config(home, max_note_size=10**7)) as k:
        a = await k.spawn(_app(searcher))
        b = await k.spawn(_app(writer))
        refused, wrote = await k.wait(a), await k.wait(b)
    assert refused.ok and "KernelConfig.max_search_terms" in refused.value
    assert wrote.ok
    # (unrefused, this search took 5.8 s on two loaded cores: 1 s tells a refusal from a run, and a write
    # queued behind it, with room for a loaded CI machine; the write took 0.78 s there once)
    assert timings["search"] < 1.0 and timings["write"] < 1.0, timings


async def test_search_k_and_key_prefix_errors_name_no_database(home):
    async def main(sys):
        out = []
        for attempt in (lambda: sys.memory.search("x", k=10**30), lambda: sys.memory.search("x", k=0),
                        lambda: sys.memory.keys(prefix=None), lambda: sys.memory.get(None)):
            try:
                await attempt()
                out.append("accepted")
            except InvalidArguments as exc:
                out.append(str(exc))
        return out
    async with Kernel(config(home)) as k:
        status = await k.run(_app(main))
    assert status.ok, status.error
    for message in status.value:
        assert message != "accepted" and str(home) not in message and "database" not in message, message


async def test_ended_processes_rows_are_pruned_after_the_retention(home):
    async def chatty(sys):
        await sys.memory.set("kept", 1)
        await sys.memory.remember("a note that stays")
        await sys.chat("hello")
        return await sys.getpid()

    async def parent(sys):
        await sys.spawn(_app(chatty, "child"))
        await sys.sleep(3600)  # alive: its ended child's row is kept (it may still wait for it)

    async with Kernel(config(home, retention=None)) as k:  # an earlier run, without pruning
        old = (await k.run(_app(chatty))).value
    async with Kernel(config(home, retention=0.05)) as k:
        store = k.memory.store
        keeper = await k.spawn(_app(parent, can_spawn=True))
        done = (await k.run(_app(chatty))).value
        for _ in range(100):
            await anyio.sleep(0.02)
            if not await store.processes(pids=[old, done]):
                break
        assert not await store.processes(pids=[old, done])  # the old one at boot, the new one later
        assert not await store.journal_for([old, done]) and not await store.context(done)
        rows = await store.processes(parents=[keeper])
        assert [r.app for r in rows] == ["child"] and rows[0].state == "exited"  # its parent lives
        assert (await store.kv_get(f"pid:{done}", "kept")) == (True, 1)
        assert [n.text for n in await store.search(f"pid:{done}", "note")] == ["a note that stays"]


@pytest.mark.parametrize("field,value", [("retention", -1), ("retention", True), ("retention", float("nan")),
                                         ("retention", "1d"), ("max_key_size", 0), ("max_value_size", -5),
                                         ("max_search_terms", 1.5), ("max_body_size", None)])
def test_the_new_limits_are_validated(home, field, value):
    from llmasos.kernel.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        config(home, **{field: value})
