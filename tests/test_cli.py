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
    assert r.stderr.splitlines()[-1] == "[exited]"  # its value is what it wrote: not repeated


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


def _merged(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run llmasos with stderr into stdout, as a terminal shows both."""
    env = {**os.environ, "LLMASOS_HOME": str(home)}
    return subprocess.run([*LLMASOS, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60, env=env)


def test_run_prints_the_exit_line_on_a_line_of_its_own(tmp_path):
    app = tmp_path / "glued.py"
    app.write_text("from llmasos import App\napp = App('glued')\n@app.main\n"
                   "async def main(sys):\n    await sys.write('good people.')\n    return 1\n")
    r = _merged("run", str(app), "--model", "fake", home=tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.endswith("good people.\n[exit] 1\n"), r.stdout


def test_run_does_not_repeat_a_streamed_answer(tmp_path):
    app = tmp_path / "answer.py"
    app.write_text("from llmasos import App\napp = App('answer')\n@app.main\n"
                   "async def main(sys):\n    text = 'An operating system is a program.'\n"
                   "    for word in text.split(' '):\n        await sys.write(word + ' ')\n"
                   "    await sys.write('\\n')\n    return text\n")
    r = _merged("run", str(app), "--model", "fake", home=tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("An operating system") == 1, r.stdout
    assert r.stdout.endswith("program. \n[exited]\n"), r.stdout
