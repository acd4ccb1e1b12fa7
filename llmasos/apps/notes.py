"""notes: a notebook that outlives every process that writes it; add, search and list notes.

Syscalls: ``remember`` and ``search`` (long-term notes, full-text ranked), ``memory.set``, ``get`` and
``keys`` (an index of the notes in key order, for ``list``), ``write``. Needs no model.

Rule: the notes live in the namespace ``notes``, which the manifest asks for (a process's own namespace,
``pid:N``, dies with its pid; the app's namespace is shared by every ``notes`` process, in this run and
the next). So any process granted ``notes`` may read and write them, and nothing else is held.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llmasos.apps.app import App
from llmasos.apps.errors import NoInput
from llmasos.syscalls.sys import Sys
from llmasos.syscalls.types import Note

NS = "notes"
INDEX = "note:"  # key prefix of the index: note:<id, 10 digits> -> the note's text

app = App("notes", "Keep notes across runs: notes add TEXT | notes search QUERY | notes list",
          memory=[NS])

Count = Annotated[int, Field(ge=1, le=100)]


@app.main
async def main(sys: Sys, command: Literal["add", "search", "list"], *words: str, k: Count = 5,
               last: Count = 20) -> list:
    text = " ".join(words).strip()
    if command == "add":
        return [await add(sys, text)]
    if command == "search":
        if not text:
            raise NoInput("notes: search for what? give some words: notes search QUERY")
        found = await sys.memory.search(text, k=k, namespace=NS)
        await _show(sys, found)
        return [n.id for n in found]
    keys = (await sys.memory.keys(INDEX, namespace=NS))[-last:]
    found = [Note(int(key[len(INDEX):]), await sys.memory.get(key, "", namespace=NS)) for key in keys]
    await _show(sys, found)  # (list)
    return [n.id for n in found]


async def add(sys: Sys, text: str) -> int:
    """Keep text as a note (searchable, and listed); its id."""
    if not text:
        raise NoInput("notes: nothing to add; give the note's words: notes add TEXT")
    note = await sys.memory.remember(text, namespace=NS)
    await sys.memory.set(f"{INDEX}{note:010d}", text, namespace=NS)
    await sys.write(f"[note {note}] kept\n")
    return note


async def _show(sys: Sys, notes: list[Note]) -> None:
    if not notes:
        await sys.write("(no notes)\n")
    for n in notes:
        await sys.write(f"[note {n.id}] {n.text}\n")
