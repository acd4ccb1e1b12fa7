"""A plain script using LLM ends by itself: its private kernel is shut down at exit, close() or collection."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from llmasos import LLM
from llmasos.engine.fake import FakeEngine

ROOT = Path(__file__).resolve().parents[2]

FAKE = """\
from llmasos import LLM
from llmasos.engine.fake import FakeEngine

engine = FakeEngine()
engine.enqueue("4")
model = LLM(engine=engine)
"""


def run_script(tmp_path: Path, source: str, bound: float) -> subprocess.CompletedProcess[str]:
    """Run source as a script (this checkout's llmasos first on the path); fail if it outlives bound."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        return subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=bound, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the script did not exit within {bound} s; it printed {exc.stdout!r} {exc.stderr!r}")


def test_a_plain_script_using_llm_exits_by_itself(tmp_path):
    done = run_script(tmp_path, FAKE + 'print(model.generate_text("What is 2+2?", max_length=30))\n', bound=15)
    assert (done.returncode, done.stdout, done.stderr) == (0, "4\n", "")


def test_a_script_that_closes_its_model_can_use_it_again_and_exits(tmp_path):
    source = FAKE + """\
print(model.generate_text("What is 2+2?", max_length=30))
model.close()
model.close()
print(model.generate_text("And again?", max_length=30))
"""
    done = run_script(tmp_path, source, bound=15)
    assert (done.returncode, done.stdout, done.stderr) == (0, "4\necho: And again?\n", "")


def test_a_script_that_fails_after_using_llm_exits_with_its_own_traceback_only(tmp_path):
    source = FAKE + """\
print(model.generate_text("What is 2+2?", max_length=30))
raise SystemExit("the script gave up")
"""
    done = run_script(tmp_path, source, bound=15)
    assert (done.returncode, done.stdout, done.stderr) == (1, "4\n", "the script gave up\n")


def test_a_script_interrupted_while_it_waits_for_an_answer_exits(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent("""\
        from llmasos import LLM
        from llmasos.engine.fake import FakeEngine

        model = LLM(engine=FakeEngine(step_delay=0.5))
        print("asking", flush=True)
        model.generate_text("a question that takes a long time", max_length=1000)
        """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "asking\n"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert err.count("Traceback") == 1 and err.rstrip().endswith("KeyboardInterrupt"), err
    assert proc.returncode != 0


def _portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llmasos-llm"]


def test_a_collected_llm_stops_its_private_kernel():
    before = len(_portal_threads())
    model = LLM(engine=FakeEngine())
    assert model.generate_text("hello", max_length=5) == "echo: hello"
    assert len(_portal_threads()) == before + 1
    del model
    gc.collect()
    assert len(_portal_threads()) == before


@pytest.mark.slow
def test_a_plain_script_on_the_default_model_exits_by_itself(tmp_path):
    source = """\
    from llmasos import LLM

    model = LLM.from_pretrained("smollm2-135m")
    print(model.generate_text("What is 2+2?", max_length=30))
    """
    done = run_script(tmp_path, source, bound=90)  # a cold machine converts the model first
    assert done.returncode == 0 and "4" in done.stdout, done
    # only llmasos's own status lines (converting the model, the first time); no bars, no traceback
    assert all(line.startswith("llmasos: ") for line in done.stderr.splitlines()), done.stderr
