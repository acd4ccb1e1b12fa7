"""`llmasos wait --url` waits without reaping, so `logs` still works after it (issue 14, finding 11).

A crashed process's line says "see logs N": that must then work. The process stays in `ps -a` until the
daemon reaps its oldest ended processes (KernelConfig.max_zombies).
"""

from __future__ import annotations

from pathlib import Path

import anyio

from llmasos.client.remote import RemoteClient
from tests.api.test_remote import _cli_all
from tests.daemon import daemon_env, start_daemon, stop_daemon

APPS = Path(__file__).parent.parent / "apps_for_tests.py"


def test_wait_then_logs_works(tmp_path: Path) -> None:
    env = daemon_env(tmp_path)
    daemon, url = start_daemon(env)
    try:
        env["LLMASOS_URL"] = url
        token = (tmp_path / "api_token").read_text().strip()

        async def spawn() -> list[int]:
            async with RemoteClient(url, token) as client:
                return [await client.spawn("echo", ["hello"], {}), await client.spawn(f"{APPS}:crash", [], {}),
                        await client.spawn(f"{APPS}:sleeper", [], {})]

        assert anyio.run(spawn) == [1, 2, 3]
        echo, crash = _cli_all(["wait", "1"], ["wait", "2"], env=env)
        assert (echo.returncode, echo.stdout) == (0, "[1] exited: 'hello'\n"), echo.stderr
        assert crash.returncode == 1 and crash.stdout == "[2] crashed: ValueError: something broke (see logs 2)\n"
        logs1, logs2 = _cli_all(["logs", "1"], ["logs", "2"], env=env)  # after wait: still there
        assert (logs1.returncode, logs1.stdout) == (0, "hello\n"), logs1.stderr
        assert logs2.returncode == 0 and "about to fail" in logs2.stderr and "something broke" in logs2.stderr
        sleeper, ps = _cli_all(["wait", "3", "-t", "0.2"], ["ps", "-a"], env=env)
        assert sleeper.returncode == 2 and "process 3 still runs after 0.2s" in sleeper.stderr
        assert "echo" in ps.stdout and "crash" in ps.stdout, ps.stdout
    finally:
        rc, err = stop_daemon(daemon)
    assert rc == 0, err
