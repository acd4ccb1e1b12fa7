"""hello: one generate call, streamed to stdout."""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

app = App("hello", "Ask the model for a one-line greeting and print it")


@app.main
async def main(sys: Sys, name: str = "world", max_tokens: int = 48) -> str:
    messages = [{"role": "user", "content": f"Write a one-sentence friendly greeting to {name}."}]
    reply = sys.generate(messages=messages, max_tokens=max_tokens, stream=True)
    async for text in reply:
        await sys.write(text)
    await sys.write("\n")
    return reply.completion.text
