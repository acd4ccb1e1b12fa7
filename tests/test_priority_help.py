"""Every face says the same about priorities: a nice value, lower runs first (issue 14, finding 11)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import llmasos.shell.builtins  # noqa: F401 (registers the shell's commands)
from llmasos.api.http import SpawnBody
from llmasos.cli import cli
from llmasos.kernel.sched import PriorityScheduler
from llmasos.shell.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
LOWER = re.compile(r"lower (prio value |priority )?(runs )?first", re.IGNORECASE)
HIGHER = re.compile(r"higher (prio value |priority )?(runs )?first", re.IGNORECASE)


def test_every_face_says_a_lower_priority_runs_first() -> None:
    cli_help = " ".join(CliRunner().invoke(cli, ["spawn", "--help"], terminal_width=200).output.split())
    texts = {
        "llmasos spawn --help": re.sub(r"[│╭╮╰╯─]", " ", cli_help),
        "the shell's spawn": COMMANDS["spawn"].help,
        "the shell's sched": COMMANDS["sched"].help,
        "the HTTP API's spawn body": SpawnBody.model_fields["priority"].description or "",
        "docs/http.md": (ROOT / "docs" / "http.md").read_text(),
        "docs/shell.md": (ROOT / "docs" / "shell.md").read_text(),
        "docs/syscalls.md": (ROOT / "docs" / "syscalls.md").read_text(),
    }
    for where, text in texts.items():
        text = " ".join(text.split())
        assert LOWER.search(text), f"{where} does not say that a lower priority runs first"
        assert not HIGHER.search(text), f"{where} says that a higher priority runs first"
    assert PriorityScheduler.__doc__ and "lowest nice value first" in PriorityScheduler.__doc__
