"""echo: writes its arguments to stdout and returns them; needs no model."""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

app = App("echo", "Write the arguments to stdout and return them")


@app.main
async def main(sys: Sys, *words: str) -> str:
    text = " ".join(words)
    await sys.write(text + "\n")
    return text
