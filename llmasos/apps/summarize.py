"""summarize: map-reduce over a long text; one child process per chunk, so the chunks' generates batch.

Syscalls: ``read`` (the text from stdin when no words are given), ``ps`` (its own max_children, checked
before anything is spawned), ``spawn`` (one ``summarize.part`` child per chunk), ``wait`` (each child),
``kill`` (the children already started, when a spawn or a child fails), ``generate`` (in each child; the
final combining one streamed), ``write``.

A file is given on stdin, ``llmasos run summarize < report.txt``: the user's shell opens it, so the app
holds no file rights at all (the ``files`` tool would only reach its own empty jail). Text may also be
given as words: ``llmasos run summarize "some long text"``.

Rule: the manifest asks for spawning and nothing else; the children it spawns hold nothing (no spawn, no
tools, no memory). A text that needs more chunks than the process may have children fails before any
child starts, naming both numbers.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from llmasos.apps.app import App
from llmasos.apps.errors import ChildFailed, NoInput, TooMuchInput
from llmasos.syscalls.sys import Sys

MAX_CHILDREN = 16  # chunks summarized at once: one forward step batches them all

app = App("summarize", "Summarize a long text (stdin or words): one child process per chunk, then combine",
          can_spawn=True, max_children=MAX_CHILDREN)
part = App("summarize.part", "Summarize one chunk of text (spawned by summarize)")

Chars = Annotated[int, Field(ge=200, le=100_000)]
Tokens = Annotated[int, Field(ge=1, le=2048)]


def chunks(text: str, size: int) -> list[str]:
    """text cut into pieces of at most size characters: whole paragraphs where they fit, else at white
    space, else (one word longer than size) anywhere."""
    out: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if not words:
            continue
        para = " ".join(words)
        if current and len(current) + 2 + len(para) <= size:
            current += "\n\n" + para
            continue
        if current:
            out.append(current)
        current = ""
        for word in words:
            while len(word) > size:
                if current:
                    out.append(current)
                    current = ""
                out.append(word[:size])
                word = word[size:]
            if current and len(current) + 1 + len(word) > size:
                out.append(current)
                current = ""
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


async def _read_all(sys: Sys, limit: int) -> str:
    """stdin to its end, or up to just over limit characters (the caller refuses more)."""
    lines: list[str] = []
    size = 0
    while size <= limit and (line := await sys.read()) is not None:
        lines.append(line)
        size += len(line)
    return "".join(lines)


async def _children_allowed(sys: Sys) -> int:
    me = next(p for p in await sys.ps() if p.pid == sys.pid)
    if not me.caps.get("can_spawn"):
        return 0
    most = me.caps.get("max_children")
    return MAX_CHILDREN if most is None else min(most, MAX_CHILDREN)


def _prompt(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Summarize this text in two sentences.\n\n{text}"}]


@part.main
async def summarize_part(sys: Sys, text: str, max_tokens: int = 96) -> str:
    return (await sys.generate(messages=_prompt(text), max_tokens=max_tokens)).text.strip()


@app.main
async def main(sys: Sys, *words: str, chunk_chars: Chars = 1500, max_tokens: Tokens = 96) -> str:
    allowed = await _children_allowed(sys)
    limit = chunk_chars * max(allowed, 1)
    text = " ".join(words) if words else await _read_all(sys, limit)
    pieces = chunks(text, chunk_chars)
    if not pieces:
        raise NoInput("summarize: there is no text to summarize; give it as words or on stdin "
                      "(llmasos run summarize < FILE)")
    if len(pieces) == 1:
        return await _stream(sys, _prompt(pieces[0]), max_tokens)
    if len(pieces) > allowed:
        raise TooMuchInput(
            f"summarize: the text makes {'' if words else 'at least '}{len(pieces)} chunks of {chunk_chars} "
            f"characters, and this process may run {allowed} children at once (its max_children"
            f"{'' if allowed else ', or it may not spawn'}); give a larger --chunk_chars or a shorter text")
    pids: list[int] = []
    running: list[int] = []  # spawned, not yet reaped: killed if this fails half way
    try:
        for piece in pieces:
            pids.append(await sys.spawn(part, piece, max_tokens=max_tokens, caps={"can_spawn": False}))
            running.append(pids[-1])
        parts = []
        for i, pid in enumerate(pids):
            status = await sys.wait(pid)
            running.remove(pid)
            if status.state != "exited":
                why = (status.error or status.state).strip().splitlines()[-1]
                raise ChildFailed(f"summarize: the child summarizing chunk {i + 1} (pid {pid}) "
                                  f"{status.state}: {why}")
            parts.append(status.value)
    except Exception:
        for pid in running:
            await sys.kill(pid)
        raise
    await sys.write(f"[{len(parts)} chunks summarized by pids {', '.join(map(str, pids))}]\n", "stderr")
    joined = "\n".join(f"- {p}" for p in parts)
    combine = [{"role": "user", "content": f"Combine these partial summaries into one short summary.\n\n{joined}"}]
    return await _stream(sys, combine, max_tokens)


async def _stream(sys: Sys, messages: list[dict[str, str]], max_tokens: int) -> str:
    reply = sys.generate(messages=messages, max_tokens=max_tokens, stream=True)
    async for text in reply:
        await sys.write(text)
    await sys.write("\n")
    return reply.completion.text.strip()
