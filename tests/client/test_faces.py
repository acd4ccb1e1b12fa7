"""The faces over one client: `llmasos ps --url` loads no kernel, and the shell's ps and the CLI's print
the same table (llmasos.client.tables) for the same records. Against one real daemon in a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from llmasos.client.remote import RemoteClient
from llmasos.client.tables import PS_COLUMNS, ps_table
from llmasos.shell import Shell
from tests.daemon import LLMASOS, ROOT, daemon_env, start_daemon, stop_daemon

HEAVY = ("llmasos.kernel", "llmasos.engine", "llmasos.memory", "torch", "transformers")

# Runs one `llmasos` command in this interpreter, then prints which modules it loaded (as JSON).
PROBE = """
import json, sys
from llmasos.cli import main
sys.argv = ["llmasos", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(url, env) of a daemon on the fake engine that has run `echo hello world` to its end (pid 1)."""
    env = daemon_env(tmp_path_factory.mktemp("daemon"))
    proc, url = start_daemon(env)
    try:
        env["LLMASOS_URL"] = url
        spawned = subprocess.run([*LLMASOS, "spawn", "echo", "hello", "world"], capture_output=True, text=True,
                                 env=env, cwd=ROOT, timeout=60)
        assert spawned.stdout == "1\n", spawned.stderr
        yield url, env
    finally:
        rc, err = stop_daemon(proc)
        assert rc == 0, err


def _probe(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=60)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    return r, report


@pytest.mark.parametrize("args", [("ps", "-a"), ("logs", "1")])
def test_a_url_command_loads_no_kernel(daemon, args: tuple[str, ...]) -> None:
    _url, env = daemon
    r, report = _probe(env, *args)
    assert report["code"] in (None, 0), r.stderr
    assert "echo" in r.stdout or "hello world" in r.stdout
    assert [m for m in report["modules"] if m.startswith(HEAVY)] == []


def test_the_shell_and_the_cli_print_the_same_ps_table(daemon) -> None:
    url, env = daemon
    token = (Path(env["LLMASOS_HOME"]) / "api_token").read_text().strip()

    async def shell_and_rows() -> tuple[str, list]:
        async with RemoteClient(url, token) as client:
            out = io.StringIO()
            shell = Shell(client, stdout=out, width=120, color=False)
            assert await shell.execute("ps -a")
            return out.getvalue(), await client.ps(all=True)

    shell_text, rows = anyio.run(shell_and_rows)
    cli = subprocess.run([*LLMASOS, "ps", "-a"], capture_output=True, text=True, env={**env, "COLUMNS": "120"},
                         cwd=ROOT, timeout=60)
    assert cli.returncode == 0, cli.stderr
    expected = io.StringIO()
    Console(file=expected, width=120, color_system=None, highlight=False).print(ps_table(rows))

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    assert lines(shell_text) == lines(cli.stdout) == lines(expected.getvalue())
    header = lines(cli.stdout)[0].split()
    assert header[:5] == list(PS_COLUMNS[:5]) and "→ 'hello world'" in cli.stdout
