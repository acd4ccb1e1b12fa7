"""The tests never touch the user's own home (issue 14, finding 6).

A user with $LLMASOS_HOME set (their database, their pid counter, their token) runs `make test`: the test
session points LLMASOS_HOME at its own folder whatever the environment says, drops their daemon's URL
and token, and every subprocess a test starts inherits that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import os
import subprocess
import sys

from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig


async def test_a_kernel_on_the_default_home():
    async with Kernel(KernelConfig(engine=FakeEngine())) as k:  # no home given: $LLMASOS_HOME
        pid = await k.spawn("echo", "hi")
        assert (await k.wait(pid)).value == "hi"


def test_subprocesses_inherit_the_test_home():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['LLMASOS_HOME'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == os.environ["LLMASOS_HOME"]
    assert "LLMASOS_URL" not in os.environ and "LLMASOS_API_TOKEN" not in os.environ
'''


def test_a_test_session_leaves_the_users_home_untouched(tmp_path: Path) -> None:
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    (user_home / "mine.txt").write_text("the user's own file\n")
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text(PROBE)
    env = {**os.environ, "LLMASOS_HOME": str(user_home), "LLMASOS_URL": "http://127.0.0.1:9",
           "LLMASOS_API_TOKEN": "the-users-token"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(probe)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=110, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
    assert sorted(p.name for p in user_home.iterdir()) == ["mine.txt"]
