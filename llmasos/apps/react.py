"""react: answer a question by reasoning with tools (generate -> tool call -> result -> answer).

Rule: the app is the agent loop (tools/agent.py) and nothing else; it asks for the calculator and
the clock, and uses whichever tools its process actually holds.

Which model: ``model=`` when the caller names one (an explicit choice always wins, and a model the
kernel cannot serve is then an error); else the tool-calling adapter ``smollm2-135m-tools`` when the
kernel's ``models`` syscall lists it as loaded or loadable (built with `llmasos models build
smollm2-135m-tools`: the kernel loads it on first use) and it loads; else the process's default model.
It says on stderr (its log) which model it runs on and, on a fallback, why; ``ps`` shows a generate that names its model as waiting on ``llm:NAME``. The adapter was trained on
react's prompt without the tools' few-shot turns, so on it react leaves them out. ``constrained=False``
turns the tool-call grammar off (to measure what it buys: `llmasos eval --agent FILE --free`).
Its log has one line per step: ``[tool(arguments) -> result]`` or ``[invalid call: why]``, and
``[no call: ...]`` when the first step, which must call a tool, answered instead (possible only with
``constrained=False``; the eval counts it as an invalid call).

The answer quotes the calculator's result by construction (``quote_result``): a small model that
computed 25833 may still write "2583" in its sentence, so when the answer that follows a calculator
call does not quote the result, react puts the result in (in place of the last number that is not
one of the call's operands, else at the end) and says so in its log. Only the number is repaired;
an answer without a preceding successful calculator call is left as the model wrote it.
"""

from __future__ import annotations

import math
import re

from llmasos.apps.app import App
from llmasos.syscalls.errors import NoSuchModel
from llmasos.syscalls.sys import Sys
from llmasos.tools.agent import AgentResult

TOOLS_MODEL = "smollm2-135m-tools"  # what `llmasos models build` makes for this app
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")

app = App("react", "Answer a question with the help of tools (calculator, clock)",
          tools=["calculator", "clock"])


async def adapter_problem(sys: Sys, name: str = TOOLS_MODEL) -> str | None:
    """Why the tool-calling adapter cannot serve this process, from the kernel's ``models`` syscall (not
    built, broken and why, not allowed to it); None when the kernel has it loaded or can load it."""
    info = {m.name: m for m in await sys.models()}.get(name)
    if info is None:
        return (f"the kernel does not offer {name} (not built: `llmasos models build {name}`; or loading on first "
                "use is off, KernelConfig.lazy_models=0; or this process may not use it)")
    if info.state == "broken":
        return f"{name} is broken: {info.reason}"
    return None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _shown(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def quote_result(result: AgentResult) -> tuple[str, str | None]:
    """(the answer, a log note or None): the answer with the last calculator result quoted in it.
    Unchanged when the answer already quotes it, or when no successful calculator call came just
    before the answer; else the last number of the answer that is not an operand of the call is
    replaced by the result (or, with none, the result is added at the end)."""
    answer, steps = result.answer, result.steps
    if not result.finished or len(steps) < 2 or steps[-1].kind != "answer":
        return answer, None
    call = steps[-2]
    value = call.result
    if call.kind != "call" or call.name != "calculator" or call.error is not None \
            or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return answer, None
    found = list(_NUMBER.finditer(answer))
    if any((n := _number(m.group())) is not None and math.isclose(n, value, rel_tol=1e-9, abs_tol=1e-9)
           for m in found):
        return answer, None
    operands = {_number(m.group()) for m in _NUMBER.finditer(str((call.arguments or {}).get("expression", "")))}
    wrong = [m for m in found if _number(m.group()) not in operands]
    if wrong:
        m = wrong[-1]
        fixed = answer[:m.start()] + _shown(value) + answer[m.end():]
        return fixed, f"[answer: quoted {m.group()}; the calculator's result {_shown(value)} put in its place]"
    return f"{answer.rstrip()} ({_shown(value)})", f"[answer: the calculator's result {_shown(value)} added]"


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
        why = await adapter_problem(sys)
        result = None
        if why is None:
            await sys.write(f"[model: {TOOLS_MODEL} (the tool-calling adapter)]\n", "stderr")
            try:
                result = await sys.agent(question, model=TOOLS_MODEL, examples=False, **options)
            except NoSuchModel as exc:  # its load failed (ModelUnavailable), or no room for it now
                why = str(exc)
        if result is None:
            await sys.write(f"[model: default (the kernel's default model); not {TOOLS_MODEL}: {why}]\n", "stderr")
            result = await sys.agent(question, **options)
    for step in result.steps:
        if step.kind == "call":
            shown = step.error if step.error is not None else step.result
            await sys.write(f"[{step.name}({step.arguments}) -> {shown}]\n", "stderr")
        elif step.kind == "invalid":
            await sys.write(f"[invalid call: {step.error}]\n", "stderr")
    if result.steps and result.steps[0].kind == "answer" and max_steps > 1 and await sys.tools():
        await sys.write("[no call: the first step answered where a tool call was required]\n", "stderr")
    answer, note = quote_result(result)
    if note is not None:
        await sys.write(note + "\n", "stderr")
    await sys.write(answer + "\n")
    return answer
