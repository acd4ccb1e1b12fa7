"""The `llmasos` command, run as a user would: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LLMASOS = [sys.executable, "-m", "llmasos.cli"]


def _run(*args: str, stdin: str | None = None, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMASOS_HOME": str(home)}
    return subprocess.run([*LLMASOS, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


def test_run_streams_stdout_and_prints_exit_value(tmp_path):
    r = _run("run", "echo", "hello", "world", "--model", "fake", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello world\n"
    assert "[exit] 'hello world'" in r.stderr


def test_run_pipes_stdin_to_the_process(tmp_path):
    r = _run("run", "chat", "--model", "fake", stdin="hi there\n", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("echo: system: You are a helpful assistant.\nuser: hi there")
    assert "[exit] 1" in r.stderr


def test_keyword_arguments(tmp_path):
    app = tmp_path / "kw.py"
    app.write_text("from llmasos import App\napp = App('kw')\n@app.main\n"
                   "async def main(sys, *, times: int = 1, word: str = 'x'):\n    return word * times\n")
    r = _run("run", str(app), "--times=3", "--word=ab", "--model", "fake", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[exit] 'ababab'" in r.stderr


def test_unknown_app_is_one_clear_line(tmp_path):
    r = _run("run", "ehco", "--model", "fake", home=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == ("llmasos: no app named 'ehco'; did you mean 'echo'? "
                                "(or give a path: file.py:app)")


def test_bad_arguments_show_usage(tmp_path):
    r = _run("run", "hello", "a", "b", "c", "--model", "fake", home=tmp_path)
    assert r.returncode == 2
    assert "usage: hello [NAME] [MAX_TOKENS]" in r.stderr
    assert "Traceback" not in r.stderr


def test_crashed_app_exits_nonzero(tmp_path):
    app = tmp_path / "boom.py"
    app.write_text("from llmasos import App\napp = App('boom')\n@app.main\n"
                   "async def main(sys):\n    raise ValueError('bad day')\n")
    r = _run("run", str(app), "--model", "fake", home=tmp_path)
    assert r.returncode == 1
    assert "[crashed]" in r.stderr and "ValueError: bad day" in r.stderr


def test_apps_lists_builtins(tmp_path):
    r = _run("apps", home=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("echo", "hello", "chat"):
        assert name in r.stdout
