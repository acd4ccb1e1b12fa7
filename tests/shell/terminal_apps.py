"""Apps the terminal tests spawn by path (tests/shell/terminal_apps.py:NAME)."""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

dribble = App("dribble", "Answer each stdin line word by word, as a model streams, then a newline")


@dribble.main
async def _dribble(sys: Sys, words: int = 40, every: float = 0.02) -> int:
    n = 0
    while (line := await sys.read()) is not None:
        for i in range(words):
            await sys.write(f"w{i} ")
            await sys.sleep(every)
        await sys.write(f"the end of {line.strip()}.\n")
        n += 1
    return n


chatter = App("chatter", "Wait a little, write a few lines, return")


@chatter.main
async def _chatter(sys: Sys, lines: int = 3, wait: float = 0.3) -> str:
    await sys.sleep(wait)
    for i in range(lines):
        await sys.write(f"line {i}\n")
    return "done"
