"""The agent loop: generate -> tool call -> tool result -> ... -> answer, within a step limit.

Rule: the loop runs inside the calling process and reaches the model and the tools only through that
process's syscalls (``sys.generate``, ``sys.call_tool``), so its capabilities, budgets, trace and
journal apply to every step. A failing tool, a refused tool or an invalid call never ends the loop:
it becomes a message the model sees, and the model gets another step. Repeating an identical call
is not run twice; the model is then asked for its answer, as it is on the last step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llmasos.syscalls.errors import InvalidArguments, PermissionDenied, QuotaExceeded, ToolError
from llmasos.tools.calling import parse, resolve

DEFAULT_SYSTEM = ("You are a careful assistant. Use a tool when it helps; when a tool result arrives, "
                  "answer the user's question in one short sentence that quotes the result.")


@dataclass(slots=True)
class AgentStep:
    """One step: a tool call with its result or error, or the final answer."""

    kind: str  # "call", "invalid" or "answer"
    text: str = ""
    name: str | None = None
    arguments: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None


@dataclass(slots=True)
class AgentResult:
    """What ``sys.agent`` returns; ``str(result)`` is the answer."""

    answer: str
    steps: list[AgentStep] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = True  # False: the step limit ended the loop before an answer

    def __str__(self) -> str:
        return self.answer


async def run_agent(sys: Any, task: str, *, tools: Iterable[Any] | None = None, max_steps: int = 5,
                    system: str | None = DEFAULT_SYSTEM, first_choice: Any = "auto",
                    max_tokens: int = 128, temperature: float = 0.0, seed: int | None = None) -> AgentResult:
    """Solve task with the model and tools (default: every tool the process may use)."""
    if max_steps < 1:
        raise InvalidArguments(f"max_steps must be at least 1, not {max_steps}")
    if tools is None:
        tools = [t["function"]["name"] for t in await sys.tools()]
    tools = list(tools)
    offered = resolve(tools)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": task})
    steps: list[AgentStep] = []
    done: dict[str, Any] = {}  # canonical call -> its result message, to refuse repeats
    answer_now = not tools
    for step in range(max_steps):
        if step == max_steps - 1:
            answer_now = True
        choice = "none" if answer_now else (first_choice if step == 0 else "auto")
        reply = await sys.generate(messages=messages, tools=tools or None, tool_choice=choice if tools else None,
                                   max_tokens=max_tokens, temperature=temperature, seed=seed)
        if not reply.tool_calls:
            _calls, errors, _rest = parse(reply.text, offered) if choice != "none" else ([], [], "")
            if errors:  # an attempted call that is not valid (only possible unconstrained)
                steps.append(AgentStep("invalid", reply.text, error="; ".join(errors)))
                messages.append({"role": "assistant", "content": reply.text})
                messages.append({"role": "user", "content": "Error: " + "; ".join(errors)})
                continue
            steps.append(AgentStep("answer", reply.text))
            messages.append({"role": "assistant", "content": reply.text})
            # The small model sometimes echoes the tool-result markup around its answer.
            return AgentResult(_MARKUP.sub("", reply.text).strip(), steps, messages)
        fresh = [tc for tc in reply.tool_calls if _key(tc) not in done]
        if not fresh:  # the same call again: it would get the same result; ask for the answer
            answer_now = True
            continue
        messages.append({"role": "assistant", "content": reply.text or None, "tool_calls": [
            {"id": tc.id, "type": "function",
             "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}} for tc in fresh]})
        for tc in fresh:
            record = AgentStep("call", reply.text, tc.name, tc.arguments)
            try:
                record.result = await sys.call_tool(tc.name, tc.arguments)
                content = json.dumps(record.result, ensure_ascii=False)
            except (ToolError, PermissionDenied, QuotaExceeded, InvalidArguments) as exc:
                record.error = str(exc)
                content = json.dumps({"error": record.error}, ensure_ascii=False)
            steps.append(record)
            done[_key(tc)] = content
            messages.append({"role": "tool", "tool_call_id": tc.id, "name": tc.name, "content": content})
    last = next((s for s in reversed(steps) if s.kind == "call" and s.error is None), None)
    fallback = json.dumps(last.result) if last is not None else ""
    return AgentResult(fallback, steps, messages, finished=False)


_MARKUP = re.compile(r"</?tool_(?:response|call)>")


def _key(tc: Any) -> str:
    return json.dumps([tc.name, tc.arguments], sort_keys=True, default=str)
