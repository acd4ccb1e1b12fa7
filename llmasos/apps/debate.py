"""debate: a moderator process runs a debate between debater processes over IPC, then sums it up.

``llmasos run debate "Cities should ban cars" --debaters=2 --rounds=2``: the moderator spawns one
``debate.debater`` per side; each round it sends every debater the previous round, collects their
arguments (their generates share forward steps) and prints them; at the end it tells them to stop,
reaps them, and asks the model for a verdict.

Syscalls: ``spawn`` (the debaters), ``send`` and ``recv`` (the rounds, both ways), ``wait`` (reap them),
``kill`` (the debaters left, when one fails), ``generate`` (each argument, and the verdict, streamed),
``write``.

Rule: the manifest asks for spawning (at most ``MAX_DEBATERS`` children) and nothing else; a debater
holds nothing and heeds messages from its moderator only, and the moderator only from its debaters, so
another process's message cannot steer the debate.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from llmasos.apps.app import App
from llmasos.apps.errors import ChildFailed, NoInput
from llmasos.syscalls.errors import RecvTimeout
from llmasos.syscalls.sys import Sys

SIDES = {"for": "You argue for it.", "against": "You argue against it.",
         "skeptic": "You doubt the claims of both sides.", "pragmatist": "You care what works in practice.",
         "historian": "You compare it with what happened before.", "optimist": "You look for the best outcome."}
MAX_DEBATERS = len(SIDES)

app = App("debate", "Debaters argue a topic over IPC for some rounds; a moderator sums up",
          can_spawn=True, max_children=MAX_DEBATERS)
debater = App("debate.debater", "One side of a debate (spawned by debate): answers each round it is sent")

Debaters = Annotated[int, Field(ge=2, le=MAX_DEBATERS)]
Rounds = Annotated[int, Field(ge=1, le=10)]
Tokens = Annotated[int, Field(ge=1, le=1024)]
Seconds = Annotated[float, Field(gt=0, le=3600)]


@debater.main
async def debater_main(sys: Sys, topic: str, side: str, moderator: int, max_tokens: int = 48) -> int:
    spoken = 0
    while True:
        msg = await sys.recv()
        if msg.sender != moderator:
            continue
        if msg.body is None:
            return spoken
        heard = "\n".join(f"{e['who']}: {e['text']}" for e in msg.body["heard"] if e["who"] != side)
        ask = f"Topic: {topic}\n" + (f"The others said:\n{heard}\n" if heard else "") + "Give your argument."
        messages = [{"role": "system", "content": f"You are in a debate. {SIDES[side]} Answer in two sentences."},
                    {"role": "user", "content": ask}]
        text = (await sys.generate(messages=messages, max_tokens=max_tokens)).text.strip()
        await sys.send(moderator, {"round": msg.body["round"], "text": text})
        spoken += 1


@app.main
async def main(sys: Sys, *words: str, debaters: Debaters = 2, rounds: Rounds = 2, max_tokens: Tokens = 48,
               timeout: Seconds = 300.0) -> dict[str, Any]:
    topic = " ".join(words).strip()
    if not topic:
        raise NoInput('debate: debate what? give a topic: debate "Cities should ban cars"')
    sides = list(SIDES)[:debaters]
    who: dict[int, str] = {}  # debater pid -> side, for those not yet reaped
    transcript: list[dict[str, Any]] = []
    try:
        for side in sides:
            pid = await sys.spawn(debater, topic, side, sys.pid, max_tokens=max_tokens, caps={"can_spawn": False})
            who[pid] = side
        for r in range(1, rounds + 1):
            heard = [e for e in transcript if e["round"] == r - 1]
            for pid in who:
                await sys.send(pid, {"round": r, "heard": heard})
            said = await _collect(sys, who, r, timeout)
            for pid, side in who.items():
                transcript.append({"round": r, "who": side, "text": said[pid]})
                await sys.write(f"[round {r}] {side}: {said[pid]}\n")
        for pid in who:
            await sys.send(pid, None)
        for pid in list(who):
            await sys.wait(pid, timeout)
            del who[pid]
    except Exception:
        for pid in who:
            await sys.kill(pid)
        raise
    lines = "\n".join(f"{e['who']}: {e['text']}" for e in transcript)
    messages = [{"role": "system", "content": "You moderate a debate."},
                {"role": "user", "content": f"Topic: {topic}\n{lines}\nSum up the debate in two sentences "
                                            "and say which side argued better."}]
    await sys.write("[verdict] ")
    reply = sys.generate(messages=messages, max_tokens=max_tokens * 2, stream=True)
    async for text in reply:
        await sys.write(text)
    await sys.write("\n")
    return {"topic": topic, "transcript": transcript, "verdict": reply.completion.text.strip()}


async def _collect(sys: Sys, who: dict[int, str], r: int, timeout: float) -> dict[int, str]:
    """Each debater's argument for round r (messages from anyone else, or stale ones, are dropped)."""
    said: dict[int, str] = {}
    while len(said) < len(who):
        try:
            msg = await sys.recv(timeout=timeout)
        except RecvTimeout:
            late = ", ".join(f"{pid} ({side})" for pid, side in who.items() if pid not in said)
            raise ChildFailed(f"debate: debaters {late} said nothing in round {r} within {timeout}s; "
                              "see their state with ps -a, or give a larger --timeout") from None
        body = msg.body
        if msg.sender in who and isinstance(body, dict) and body.get("round") == r:
            said[msg.sender] = str(body.get("text", ""))
    return said
