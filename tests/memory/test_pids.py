"""Pids across restarts (issue 14, finding 6): a clean restart goes on at the next pid (the README's
`spawn chat` then `attach` gets a small number), and after a crash no pid is ever handed out twice
(journal rows are keyed by pid)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from llmasos import Kernel
from tests.memory.conftest import config

REPO = Path(__file__).resolve().parents[2]

KILLED = '''
import json, os, signal, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
import anyio
from llmasos import Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine


async def main(home):
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home, pid_block=4)) as k:
        pids = [await k.spawn("echo", str(i)) for i in range(3)]
        for pid in pids:
            await k.wait(pid)
        await k.memory.flush()
        print(json.dumps(pids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean shutdown


anyio.run(main, Path(sys.argv[1]))
'''


async def _spawn_echo(home: Path, n: int = 1, **kw) -> list[int]:
    async with Kernel(config(home, **kw)) as k:
        pids = [await k.spawn("echo", str(i)) for i in range(n)]
        for pid in pids:
            await k.wait(pid)
    return pids


async def test_a_clean_restart_goes_on_at_the_next_pid(home: Path) -> None:
    first = await _spawn_echo(home)
    second = await _spawn_echo(home)
    assert (first, second) == ([1], [2])
    many = await _spawn_echo(home, 7, pid_block=4)  # past a block: more are reserved meanwhile
    assert many == list(range(3, 10))
    assert await _spawn_echo(home, pid_block=4) == [10]


async def test_pids_never_repeat_after_a_sigkill(home: Path, tmp_path: Path) -> None:
    assert await _spawn_echo(home, pid_block=4) == [1]
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(repo=str(REPO)))
    with anyio.fail_after(60):
        r = await anyio.run_process([sys.executable, str(script), str(home)], check=False)
    assert r.returncode == -9, r.stderr.decode()
    crashed = json.loads(r.stdout)
    assert crashed == [2, 3, 4]
    after = await _spawn_echo(home, 2, pid_block=4)
    assert min(after) > max(crashed)  # the crashed run's block is skipped, never reused
    assert await _spawn_echo(home, pid_block=4) == [max(after) + 1]  # and clean restarts are consecutive
