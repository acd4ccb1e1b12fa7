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
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.memory import test_durable as durable

SCRIPT = Path(__file__).with_name("main_script.py")
ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, so the script imports this llmasos
STEPS = 10
pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("mode", ["object", "spec"])
def test_a_killed_script_resumes_its_process_and_repeats_no_side_effect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SCRIPT, tmp_path / "script.py")
    (tmp_path / "link.py").symlink_to(tmp_path / "script.py")
    monkeypatch.chdir(tmp_path)  # started by relative paths, as a user would
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    rng = random.Random(int(os.environ.get("LLMASOS_DURABLE_SEED", "5")))
    kills = []
    for launcher, delay in [("script.py", None), ("link.py", rng.uniform(0.1, 0.3)),
                            ("script.py", rng.uniform(0.1, 0.3))]:  # first inside a tool call
        monkeypatch.setattr(durable, "DAEMON", Path(launcher))  # its kill loop, with this script as daemon
        kills.append(durable._run_and_kill(home, tmp_path, mode, delay))
    assert kills == [True] * 3, (  # a start that ended by itself: it failed, or finished too soon
        durable._lines(tmp_path / "boots.log"), (tmp_path / "stderr.log").read_text()[-3000:])

    done = subprocess.run([sys.executable, "link.py", str(home), str(tmp_path), mode], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(done.stdout.splitlines()[-1])
    assert status == {"state": "exited", "error": None,
                      "value": {"lines": list(range(1, STEPS + 1)), "last": f"echo: step {STEPS - 1}"}}

    boots = durable._lines(tmp_path / "boots.log")
    assert len(boots) == 4 and all(line.endswith("lost={}") for line in boots), boots
    assert all("restored=[1]" in line for line in boots[1:]), boots  # resumed, not spawned again
    effects = [line.split(" ") for line in durable._lines(tmp_path / "counter.txt")]
    assert [label for _, label in effects] == [f"step-{i}" for i in range(STEPS)]  # each exactly once
    assert all(n == 1 for n in Counter(key for key, _ in effects).values())
