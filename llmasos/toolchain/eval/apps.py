"""The apps evaluation items run as: one process per item, spawned by module spec so that a daemon
(``--url``) finds them too (``llmasos.toolchain.eval.apps:qa``, ``:tools``, ``:perplexity``).

Rule: each app makes the model calls of one item and returns plain JSON; scoring happens in the
runner, outside the kernel. Decoding is greedy, so two runs of the same item give the same answer.
"""

from __future__ import annotations

from typing import Any

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

QA_SYSTEM = "Answer the question with a few words only, no sentence."
TOOLS_SYSTEM = "You are a helpful assistant. Call the one tool that helps with the user's request."
BUILTIN_TOOLS = ["calculator", "clock", "files", "memory_get", "memory_set", "recall", "remember"]

qa = App("eval-qa", "Answer one evaluation question (llmasos eval --qa)", restartable=False)
tools = App("eval-tools", "Ask for one tool call (llmasos eval --tools)", tools=BUILTIN_TOOLS, restartable=False)
perplexity = App("eval-perplexity", "Score a text (llmasos eval --perplexity)", restartable=False)


@qa.main
async def answer(sys: Sys, question: str, max_tokens: int = 24) -> str:
    reply = await sys.generate(messages=[{"role": "system", "content": QA_SYSTEM},
                                         {"role": "user", "content": question}], max_tokens=max_tokens)
    return reply.text.strip()


@tools.main
async def call(sys: Sys, question: str, offered: list[str] | None = None, choice: str = "required",
               max_tokens: int = 64) -> dict[str, Any]:
    reply = await sys.generate(messages=[{"role": "system", "content": TOOLS_SYSTEM},
                                         {"role": "user", "content": question}],
                               tools=offered or ["calculator", "clock"], tool_choice=choice,
                               max_tokens=max_tokens)
    return {"text": reply.text, "calls": [{"name": tc.name, "arguments": tc.arguments} for tc in reply.tool_calls]}


@perplexity.main
async def score(sys: Sys, text: str, window: int | None = None, stride: int | None = None) -> dict[str, Any]:
    scores = await sys.score(text, window=window, stride=stride)
    return {"tokens": scores.tokens, "logprobs": list(scores.logprobs), "window": scores.window,
            "stride": scores.stride, "model": scores.model}


SPECS = {"qa": f"{__name__}:qa", "tools": f"{__name__}:tools", "perplexity": f"{__name__}:perplexity"}
