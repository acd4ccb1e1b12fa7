"""A real daemon for tests: `llmasos serve --model fake --port 0` in a subprocess, and the `llmasos`
command run against it."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

from llmasos.client.wire import ENV

ROOT = Path(__file__).resolve().parents[1]
LLMASOS = [sys.executable, "-m", "llmasos.cli"]

def daemon_env(home: Path) -> dict[str, str]:
    """This environment minus any token or URL, with home as LLMASOS_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "LLMASOS_URL")}
    env.update(LLMASOS_HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def share_model_caches(home: Path) -> Path:
    """Make home (a fresh LLMASOS_HOME with its own database) read the test session's converted models,
    tokenizers and native builds (conftest's home), so that a daemon on the real model does not convert
    the GGUF and compile the decode step again (~25 s). Returns home."""
    shared = Path(os.environ["LLMASOS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    for cache in ("models", "tokenizers", "native"):
        (shared / cache).mkdir(parents=True, exist_ok=True)
        (home / cache).symlink_to(shared / cache)
    return home


def start_daemon(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start a daemon on the fake engine and a free port; (the process, its URL) once it serves."""
    daemon = subprocess.Popen([*LLMASOS, "serve", "--model", "fake", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = readline(daemon.stdout, 30)
        found = re.search(r"serving (http://127\.0\.0\.1:\d+) \(model fake, policy fifo\)", line)
        assert found, line + daemon.stderr.read()
    except BaseException:
        stop(daemon)
        raise
    return daemon, found.group(1)


def stop_daemon(daemon: subprocess.Popen) -> tuple[int, str]:
    """Stop it as Ctrl-C would; (its exit status, what it wrote to stderr)."""
    daemon.send_signal(signal.SIGINT)
    try:
        rc = daemon.wait(10)
    except subprocess.TimeoutExpired:
        stop(daemon)
        raise
    err = daemon.stderr.read()
    stop(daemon)
    return rc, err


def readline(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise AssertionError(f"nothing to read after {timeout}s")
    return stream.readline()


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait(10)
    for f in (p.stdout, p.stderr):
        if f is not None:
            f.close()
