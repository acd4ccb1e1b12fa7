"""chat: a conversation on stdin/stdout; each line you write gets a streamed answer."""

from __future__ import annotations

from llmasos.apps.app import App
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
        reply = sys.generate(messages=history, max_tokens=max_tokens, stream=True)
        async for text in reply:
            await sys.write(text)
        await sys.write("\n")
        history.append({"role": "assistant", "content": reply.completion.text})
        turns += 1
    return turns
