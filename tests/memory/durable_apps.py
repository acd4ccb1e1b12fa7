"""Apps for the durability tests: they mix generate, memory writes, ipc and a side-effecting tool.

Rule: deterministic between syscalls (a replay must ask for the same syscalls), except the ack log,
which each app appends to *after* a memory write returned (an acknowledged write, to check later).
Spawned by path (``durable_apps.py:worker``) so a restarted kernel finds them again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from llmasos import App
from llmasos.syscalls import Sys
from llmasos.tools import ToolContext, tool


@tool(name="bump_counter")
def bump_counter(ctx: ToolContext, path: str, label: str, honour: bool = True, pause: float = 0.0) -> int:
    """Append one line to a counter file (the side effect); return how many lines label has.

    With honour=True a key seen before returns its first result and appends nothing.
    """
    key = ctx.idempotency_key
    p = Path(path)
    lines = p.read_text().splitlines() if p.exists() else []
    if honour and key:
        for line in lines:
            k, lbl, n = line.split(" ")
            if k == key:
                return int(n)
    n = sum(1 for line in lines if line.split(" ")[1] == label) + 1
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {label} {n}\n".encode())
    finally:
        os.close(fd)
    time.sleep(pause)  # the window in which a crash leaves the call in flight
    return n


def _ack(counter: str, line: str) -> None:
    with open(Path(counter).with_name("acks.log"), "a") as f:
        f.write(line + "\n")


worker = App("worker", "generate, remember the text, bump the counter, sleep; steps times",
             memory=["shared"], tools=["bump_counter"])


@worker.main
async def worker_main(sys: Sys, name: str, steps: int, counter: str, honour: bool = True,
                      pause: float = 0.0) -> dict:
    texts, counts = [], []
    for i in range(steps):
        done = await sys.generate(f"{name} step {i}")
        await sys.memory.set(f"{name}-{i}", done.text, namespace="shared")
        _ack(counter, f"shared {name}-{i} {done.text}")
        counts.append(await sys.call_tool("bump_counter", path=counter, label=name, honour=honour,
                                          pause=pause))
        texts.append(done.text)
        await sys.sleep(0.01)
    return {"texts": texts, "counts": counts}


chatter = App("chatter", "chat over a persistent context and keep notes")


@chatter.main
async def chatter_main(sys: Sys, name: str, turns: int) -> dict:
    replies = []
    for i in range(turns):
        reply = await sys.chat(f"{name} turn {i}", max_tokens=64)
        await sys.memory.remember(f"{name} said {i}", tags=[name])
        replies.append(len(reply.text))
        await sys.sleep(0.01)
    hits = await sys.memory.search(f"{name} said", k=3)
    context = await sys.context()
    return {"replies": replies, "hits": len(hits), "context": len(context)}


parent = App("parent", "spawn children, message them, collect their answers", can_spawn=True)


@parent.main
async def parent_main(sys: Sys, children: int, rounds: int) -> dict:
    pids = [await sys.spawn(_spec("child"), rounds) for _ in range(children)]
    got = []
    for r in range(rounds):
        for pid in pids:
            await sys.send(pid, r)
        for _ in pids:
            msg = await sys.recv(timeout=30)
            got.append(msg.body)
        await sys.sleep(0.01)
    statuses = [await sys.wait(pid, timeout=30) for pid in pids]
    return {"got": sorted(got), "exits": [s.value for s in statuses]}


child = App("child", "answer each message from the parent")


@child.main
async def child_main(sys: Sys, rounds: int) -> int:
    total = 0
    for _ in range(rounds):
        msg = await sys.recv(timeout=30)
        total += msg.body
        await sys.send(msg.sender, msg.body * 10)
        await sys.sleep(0.005)
    return total


streamer = App("streamer", "stream replies to stdout")


@streamer.main
async def streamer_main(sys: Sys, lines: int) -> list:
    out = []
    for i in range(lines):
        reply = sys.generate(f"stream line {i} of words", stream=True)
        async for text in reply:
            await sys.write(text)
        out.append(reply.completion.text)
        await sys.sleep(0.01)
    return out


reader = App("reader", "read a line, wait for a message, read the rest")


@reader.main
async def reader_main(sys: Sys, lines: int) -> list:
    got = [await sys.read()]
    await sys.recv(timeout=30)
    got += [await sys.read() for _ in range(lines - 1)]
    return got


def _spec(attr: str) -> str:
    return f"{Path(__file__).resolve()}:{attr}"
