"""react: answer a question by reasoning with tools (generate -> tool call -> result -> answer).

Rule: the app is the agent loop (tools/agent.py) and nothing else; it asks for the calculator and
the clock, and uses whichever tools its process actually holds.

Which model: ``model=`` when the caller names one (an explicit choice always wins, and a model the
kernel has not loaded is then an error); else the tool-calling adapter ``smollm2-135m-tools`` when it
is built (`llmasos models build smollm2-135m-tools`), sound, and loaded by the kernel; else the
process's default model. It says on stderr (its log) which model it runs on and, on a fallback, why;
``ps`` shows a generate that names its model as waiting on ``llm:NAME``. The adapter was trained on
react's prompt without the tools' few-shot turns, so on it react leaves them out. ``constrained=False``
turns the tool-call grammar off (to measure what it buys: `llmasos eval --agent FILE --free`).
Its log has one line per step: ``[tool(arguments) -> result]`` or ``[invalid call: why]``.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmasos.apps.app import App
from llmasos.engine.adapters import ADAPTER_CONFIG, ADAPTER_MANIFEST
from llmasos.syscalls.errors import NoSuchModel
from llmasos.syscalls.sys import Sys

TOOLS_MODEL = "smollm2-135m-tools"  # what `llmasos models build` makes for this app

app = App("react", "Answer a question with the help of tools (calculator, clock)",
          tools=["calculator", "clock"])


def adapter_problem(name: str = TOOLS_MODEL) -> str | None:
    """Why the registered adapter name cannot serve (not built, files missing, training unfinished);
    None when it can."""
    from llmasos.engine import library

    try:
        card = library.registered().get(name)
    except library.LibraryError as exc:
        return f"the model library is unreadable ({exc})"
    if card is None:
        return f"{name} is not built (`llmasos models build {name}`)"
    folder = Path(card.source)
    try:
        manifest = json.loads((folder / ADAPTER_MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return f"{name} is broken: {folder} has no readable {ADAPTER_MANIFEST} ({type(exc).__name__})"
    if not (folder / ADAPTER_CONFIG).is_file():
        return f"{name} is broken: {folder} holds no {ADAPTER_CONFIG}"
    if manifest.get("interrupted") or manifest.get("steps") != manifest.get("total_steps"):
        return f"{name} is unfinished ({manifest.get('steps')}/{manifest.get('total_steps')} steps)"
    return None


@app.main
async def main(sys: Sys, question: str, max_steps: int = 4, max_tokens: int = 96, model: str | None = None,
               constrained: bool = True) -> str:
    options = {"max_steps": max_steps, "max_tokens": max_tokens, "first_choice": "required",
               "constrained": constrained}
    # The first step must call a tool: under "auto" the default model answers from memory (and
    # wrongly) every time; measured in bench/toolcalls.py.
    if model is not None:
        await sys.write(f"[model: {model} (chosen by the caller)]\n", "stderr")
        result = await sys.agent(question, model=model, examples=model != TOOLS_MODEL, **options)
    else:
        why = adapter_problem()
        result = None
        if why is None:
            await sys.write(f"[model: {TOOLS_MODEL} (the tool-calling adapter)]\n", "stderr")
            try:
                result = await sys.agent(question, model=TOOLS_MODEL, examples=False, **options)
            except NoSuchModel:
                why = f"{TOOLS_MODEL} is built but this kernel has not loaded it (boot with --model {TOOLS_MODEL})"
        if result is None:
            await sys.write(f"[model: default (the kernel's default model); not {TOOLS_MODEL}: {why}]\n", "stderr")
            result = await sys.agent(question, **options)
    for step in result.steps:
        if step.kind == "call":
            shown = step.error if step.error is not None else step.result
            await sys.write(f"[{step.name}({step.arguments}) -> {shown}]\n", "stderr")
        elif step.kind == "invalid":
            await sys.write(f"[invalid call: {step.error}]\n", "stderr")
    await sys.write(result.answer + "\n")
    return result.answer
