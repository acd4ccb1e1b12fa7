"""react: answer a question by reasoning with tools (generate -> tool call -> result -> answer).

Rule: the app is the agent loop (tools/agent.py) and nothing else; it asks for the calculator and
the clock, and uses whichever tools its process actually holds.
"""

from __future__ import annotations

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

app = App("react", "Answer a question with the help of tools (calculator, clock)",
          tools=["calculator", "clock"])


@app.main
async def main(sys: Sys, question: str, max_steps: int = 4, max_tokens: int = 96) -> str:
    # The first step must call a tool: under "auto" the default model answers from memory (and
    # wrongly) every time; measured in bench/toolcalls.py.
    result = await sys.agent(question, max_steps=max_steps, max_tokens=max_tokens, first_choice="required")
    for step in result.steps:
        if step.kind == "call":
            shown = step.error if step.error is not None else step.result
            await sys.write(f"[{step.name}({step.arguments}) -> {shown}]\n", "stderr")
    await sys.write(result.answer + "\n")
    return result.answer
