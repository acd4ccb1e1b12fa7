"""chat: a conversation on stdin/stdout; each line you write gets a streamed answer.

Rule: a line the model cannot take never ends the conversation. When the conversation outgrows the
model's context window the oldest turns are dropped (the system prompt stays); a line too long for the
window on its own gets a one-line reply saying so, and the chat goes on.
"""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.errors import ContextOverflow
from llmasos.syscalls.sys import Sys

app = App("chat", "Talk with the model: each stdin line gets a streamed answer")


@app.main
async def main(sys: Sys, system: str = "You are a helpful assistant.", max_tokens: int = 256) -> int:
    history = [{"role": "system", "content": system}]
    turns = 0
    while (line := await sys.read()) is not None:
        line = line.strip()
        if not line:
            continue
        history.append({"role": "user", "content": line})
        while True:
            reply = sys.generate(messages=history, max_tokens=max_tokens, stream=True)
            try:
                async for text in reply:
                    await sys.write(text)
                break
            except ContextOverflow as exc:
                if len(history) > 3:  # forget the oldest exchange and try again
                    del history[1:3]
                    continue
                history.pop()
                await sys.write(f"[not answered: that line is too long for the model ({exc})]")
                reply = None
                break
        await sys.write("\n")
        if reply is not None:
            history.append({"role": "assistant", "content": reply.completion.text})
            turns += 1
    return turns
