"""A user's own script (tool + app + kernel under ``__main__``) survives SIGKILLs and restarts.

The script (main_script.py, copied to a temporary directory) is started as ``python script.py``, killed
three times (once inside a tool call, twice at random points) and started again, through a symlink
and a relative path as well: each restart resumes the process from the running script, without
importing the file a second time, and every side effect of its tool happens exactly once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.memory.test_durable import _lines, _wait_for

SCRIPT = Path(__file__).with_name("main_script.py")
ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, so the script imports this llmasos
STEPS = 10
pytestmark = pytest.mark.timeout(90)


def _start(work: Path, launcher: str, mode: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(work / "stderr.log", "a") as err:
        return subprocess.Popen([sys.executable, launcher, "home", str(work), mode], cwd=work, env=env,
                                stdout=stdout, stderr=err, text=True)


def _kill_while_running(work: Path, launcher: str, mode: str, delay: float | None) -> bool:
    """Start the script, let it work (delay s, or until its tool appends a line), SIGKILL it."""
    boots = len(_lines(work / "boots.log"))
    proc = _start(work, launcher, mode)
    try:
        if not _wait_for(lambda: len(_lines(work / "boots.log")) > boots, proc, 30):
            return False
        if delay is None:
            seen = len(_lines(work / "effects.txt"))
            _wait_for(lambda: len(_lines(work / "effects.txt")) > seen, proc, 10)
        else:
            _wait_for(lambda: False, proc, delay)
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGKILL)
        return True
    finally:
        proc.wait(10)


@pytest.mark.parametrize("mode", ["object", "spec"])
def test_a_killed_script_resumes_its_process_and_repeats_no_side_effect(tmp_path: Path, mode: str) -> None:
    work = tmp_path
    shutil.copy(SCRIPT, work / "script.py")
    (work / "link.py").symlink_to(work / "script.py")
    (work / "home").mkdir()
    rng = random.Random(int(os.environ.get("LLMASOS_DURABLE_SEED", "5")))
    kills = [_kill_while_running(work, launcher, mode, delay) for launcher, delay in
             [("script.py", None), ("link.py", rng.uniform(0.1, 0.3)), ("script.py", rng.uniform(0.1, 0.3))]]
    assert kills == [True] * 3, (  # a start that ended by itself: it failed, or finished too soon
        _lines(work / "boots.log"), (work / "stderr.log").read_text()[-3000:])

    proc = _start(work, "link.py", mode, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (work / "stderr.log").read_text()[-3000:]
    status = json.loads(out.splitlines()[-1])
    assert status == {"state": "exited", "error": None,
                      "value": {"lines": list(range(1, STEPS + 1)), "last": f"echo: step {STEPS - 1}"}}

    boots = _lines(work / "boots.log")
    assert len(boots) == 4 and all(line.endswith("lost={}") for line in boots), boots
    assert all("restored=[1]" in line for line in boots[1:]), boots  # resumed, not spawned again
    effects = [line.split(" ") for line in _lines(work / "effects.txt")]
    assert [label for _, label in effects] == [f"step-{i}" for i in range(STEPS)]  # each exactly once
    assert all(n == 1 for n in Counter(key for key, _ in effects).values())
