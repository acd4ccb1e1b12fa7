"""Small apps the API tests spawn by path (tests/api/apps_for_tests.py:NAME)."""

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


crash = App("crash", "Raise an error")


@crash.main
async def _crash(sys: Sys) -> None:
    await sys.write("about to fail\n", stream="stderr")
    raise ValueError("something broke")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


opaque = App("opaque", "Return a value JSON cannot hold")


@opaque.main
async def _opaque(sys: Sys) -> object:
    return {"thing": Opaque(), "nan": float("nan")}
