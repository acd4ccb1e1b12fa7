"""Small apps the API and shell tests spawn by path (tests/apps_for_tests.py:NAME)."""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

mailbox = App("mailbox", "Return the body of the first message it receives")


@mailbox.main
async def _mailbox(sys: Sys) -> object:
    return (await sys.recv()).body


lines = App("lines", "Echo each stdin line upper-cased; return how many")


@lines.main
async def _lines(sys: Sys) -> int:
    n = 0
    while (line := await sys.read()) is not None:
        await sys.write(line.upper())
        n += 1
    return n


sleeper = App("sleeper", "Sleep, then return")


@sleeper.main
async def _sleep(sys: Sys, seconds: float = 30.0) -> str:
    await sys.sleep(seconds)
    return "rested"


flood = App("flood", "Write many lines as fast as it can")


@flood.main
async def _flood(sys: Sys, lines: int = 20000) -> int:
    """lines=0: forever."""
    i = 0
    while not lines or i < lines:
        await sys.write(f"line {i} " + "x" * 60 + "\n")
        i += 1
    return lines


crash = App("crash", "Raise an error")


@crash.main
async def _crash(sys: Sys) -> None:
    await sys.write("about to fail\n", stream="stderr")
    raise ValueError("something broke")


ticker = App("ticker", "Print a line every few milliseconds, forever")


@ticker.main
async def _tick(sys: Sys, every: float = 0.02) -> None:
    i = 0
    while True:
        await sys.write(f"tick {i}\n")
        i += 1
        await sys.sleep(every)


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


opaque = App("opaque", "Return a value JSON cannot hold")


@opaque.main
async def _opaque(sys: Sys) -> object:
    return {"thing": Opaque(), "nan": float("nan")}
