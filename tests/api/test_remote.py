"""RemoteClient (a KernelClient over HTTP), the shell connected to a daemon, and one real daemon:
`llmasos serve --model fake` in a subprocess, driven by `llmasos ps/spawn/logs/kill/wait`, RemoteClient
and the openai client over a loopback socket."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from llmasos.client import KernelClient
from llmasos.client.local import LocalClient
from llmasos.client.remote import RemoteClient
from llmasos.client.wire import ENV, DaemonUnreachable, Unauthorized
from llmasos.shell import Shell
from llmasos.syscalls.errors import InvalidArguments, NoSuchApp, NoSuchProcess, WaitTimeout
from tests.api.conftest import TOKEN
from tests.daemon import LLMASOS, ROOT, daemon_env, readline, start_daemon, stop, stop_daemon
from tests.shell.conftest import Driver

APPS = Path(__file__).parent.parent / "apps_for_tests.py"
LINES, SLEEPER = f"{APPS}:lines", f"{APPS}:sleeper"


def remote(s) -> RemoteClient:
    return RemoteClient("http://llmasos.test", TOKEN, transport=s.transport())


async def test_remote_client_matches_the_local_one(served) -> None:
    async with served() as s:
        local = LocalClient(s.kernel)
        async with remote(s) as client:
            assert isinstance(client, KernelClient) and client.remote and client.where == "http://llmasos.test"
            assert await client.apps() == await local.apps()
            pid = await client.spawn("echo", ["hi", "there"], {})
            info = await client.ended(pid)
            assert info == await local.info(pid)  # same record, field for field
            assert await client.ps(all=True) == await local.ps(all=True) == [info]
            assert await client.output(pid) == [("stdout", "hi there\n")]
            assert (await client.wait(pid)).value == "hi there"

            pid = await client.spawn(LINES, [], {}, priority=3)
            await client.write_stdin(pid, "a\n")
            await client.close_stdin(pid)
            assert [chunk async for chunk in client.follow(pid)] == [("stdout", "A\n")]
            assert [line async for line in client.strace(pid)] == []  # it has ended: nothing more to stream
            assert (await client.info(pid)).priority == 3

            stats = await client.stats()
            assert stats.engine == "fake" and stats.policy == "fifo" and stats.max_batch == 32
            assert await client.policies() == await local.policies()
            await client.set_policy("fair")
            assert s.kernel.policy == "fair" and (await client.stats()).policy == "fair"
            assert [m.name for m in await client.models()][0] == "fake"
            assert "calculator" in {t.name for t in await client.tools()}
            assert (await client.mem(pid)) == await local.mem(pid)

            pid = await client.spawn(SLEEPER, [], {"seconds": "30"})
            with pytest.raises(WaitTimeout):
                await client.wait(pid, 0.05)
            assert await client.kill(pid) is True
            assert (await client.wait(pid)).state == "killed"

            with pytest.raises(NoSuchProcess, match="no process 99"):
                await client.info(99)
            with pytest.raises(NoSuchApp, match="did you mean 'echo'"):
                await client.spawn("ehco", [], {})
            with pytest.raises(InvalidArguments, match="usage: hello"):
                await client.spawn("hello", ["a", "b", "c", "d"], {})
            with pytest.raises(InvalidArguments, match="unknown scheduling policy"):
                await client.set_policy("lottery")


async def test_remote_client_errors_are_one_clear_line(served, monkeypatch) -> None:
    async with served() as s:
        async with RemoteClient("http://llmasos.test", "wrong", transport=s.transport()) as client:
            with pytest.raises(Unauthorized, match="refused the API token"):
                await client.ps()
        monkeypatch.delenv(ENV, raising=False)
        monkeypatch.setenv("LLMASOS_HOME", str(s.kernel.config.home / "elsewhere"))
        async with RemoteClient("http://llmasos.test", transport=s.transport()) as client:
            with pytest.raises(Unauthorized, match="needs its API token"):
                await client.ps()
        monkeypatch.setenv(ENV, TOKEN)
        async with RemoteClient("http://llmasos.test", transport=s.transport()) as client:
            assert await client.ps() == []
    async with RemoteClient("http://127.0.0.1:9") as client:  # discard port: nobody listens
        with pytest.raises(DaemonUnreachable, match=r"no llmasos daemon answers at http://127.0.0.1:9; start one"):
            await client.ps()


async def test_the_shell_drives_a_daemon(served, tmp_path: Path) -> None:
    async with served() as s, remote(s) as client:
        with create_pipe_input() as pipe:
            out = io.StringIO()
            shell = Shell(client, input=pipe, output=DummyOutput(), stdout=out, width=140, color=False,
                          history=tmp_path / "shell_history")
            sh = Driver(shell, s.kernel, s.engine, pipe, out)
            async with anyio.create_task_group() as tg:

                async def main() -> None:
                    try:
                        await shell.run()
                    finally:
                        sh.done.set()

                tg.start_soon(main)
                with anyio.fail_after(20):
                    await sh.run("spawn echo over http", r"\[1\] echo")
                    await sh.expect(r"\[1\] exited: 'over http'")
                    await sh.run("ps -a", r"1\s+0\s+echo\s+exited")
                    await sh.run("logs 1", r"over http")
                    await sh.run(f"spawn {SLEEPER}", r"\[2\] sleeper")
                    await sh.run("kill 2", r"\[2\] sleeper killed")
                    await sh.run("sched rr", r"policy: rr")
                    await sh.run("top -n 1", r"llmasos top .* engine fake · policy rr")
                    await sh.run("logs 99", r"no process 99")
                    await sh.run("exit", r"detached from http://llmasos.test")
                    await sh.done.wait()
                tg.cancel_scope.cancel()


# -- a real daemon ------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMASOS, *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)


def _cli_all(first: list[str], second: list[str], *, env: dict[str, str],
             bad_env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Two `llmasos` commands at once (each spends a second or two importing)."""
    procs = [subprocess.Popen([*LLMASOS, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=e, cwd=ROOT)
             for args, e in ((first, env), (second, bad_env or env))]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_a_real_daemon(tmp_path: Path) -> None:
    env = daemon_env(tmp_path)
    daemon, url = start_daemon(env)
    follower = None
    try:
        token_file = tmp_path / "api_token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        env["LLMASOS_URL"] = url

        assert _cli("spawn", "echo", "hello", "world", env=env).stdout == "1\n"

        async def drive() -> None:
            nonlocal follower
            async with RemoteClient(url, token) as client:
                assert await client.spawn(LINES, [], {}) == 2
                # logs -f streams over the socket as the process writes, and ends when it does.
                follower = subprocess.Popen([*LLMASOS, "logs", "2", "-f"], env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                await client.write_stdin(2, "first\n")
                assert await anyio.to_thread.run_sync(readline, follower.stdout, 20) == "FIRST\n"
                await client.write_stdin(2, "second\n")
                assert await anyio.to_thread.run_sync(readline, follower.stdout, 5) == "SECOND\n"
                assert [p.app for p in await client.ps(all=True)] == ["echo", "lines"]

        anyio.run(drive)
        ps, bad = _cli_all(["ps", "-a"], ["ps"], env=env, bad_env={**env, ENV: "wrong"})
        assert ps.returncode == 0 and re.search(r"1\s+0\s+echo\s+exited.*→ 'hello world'", ps.stdout), ps.stdout
        assert re.search(r"2\s+0\s+lines\s+waiting:stdin", ps.stdout), ps.stdout
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "refused the API token" in bad.stderr
        kill, wait = _cli_all(["kill", "2", "77"], ["wait", "1"], env=env)
        assert kill.stdout == "[2] killed\n" and "no process 77" in kill.stderr and kill.returncode == 2
        assert (wait.returncode, wait.stdout) == (0, "[1] exited: 'hello world'\n")
        assert follower.wait(10) == 0

        # A chat completion streamed over the socket, with the openai client where it is installed.
        try:
            import openai
        except ImportError:
            body = {"model": "any", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.text.endswith("data: [DONE]\n\n") and '"content": "hi"' in r.text
        else:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
            stream = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: user: hi"
            client.close()
    finally:
        if follower is not None:
            stop(follower)
        rc, err = stop_daemon(daemon)
    assert rc == 0, err
    assert "Traceback" not in err


def test_serve_reports_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "LLMASOS_HOME": str(tmp_path)}
        started = time.monotonic()
        r = _cli("serve", "--model", "fake", "--port", str(port), env=env)
    assert r.returncode == 2 and time.monotonic() - started < 30
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
