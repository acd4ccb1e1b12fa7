"""Training conversations in the exact form the ``react`` app sends and expects.

Rule: a word problem becomes two training examples, one per agent step, each holding the prompt the
kernel renders for that step (``tools.calling.prepare`` on the messages ``tools.agent.run_agent``
builds: the system prompt, the offered tools' few-shot turns, the question; the tools listed in the
system message for that step's ``tool_choice``) and the reply to learn: first the calculator call in
the wire format, then, after the tool result, the answer sentence quoting it. Nothing here restates
the format: it calls the functions that make it, so a change there changes the training data.
"""

from __future__ import annotations

import json
from typing import Any

from llmasos.syscalls.calls import Generate
from llmasos.tools.agent import DEFAULT_SYSTEM, example_turns
from llmasos.tools.calling import format_call, prepare, resolve

REACT_TOOLS = ("calculator", "clock")  # what the react app asks for (apps/react.py)


def agent_prompt(question: str, tools: tuple[str, ...] = REACT_TOOLS, *, examples: bool = True
                 ) -> list[dict[str, Any]]:
    """The messages run_agent opens with for question (with or without the tools' few-shot turns)."""
    shots = example_turns(resolve(list(tools))) if examples else []
    return [{"role": "system", "content": DEFAULT_SYSTEM}, *shots, {"role": "user", "content": question}]


def rendered(messages: list[dict[str, Any]], tools: tuple[str, ...], choice: str) -> list[dict[str, str]]:
    """messages as the kernel hands them to the chat template for a generate with tools and choice."""
    setup = prepare(Generate(messages=tuple(messages), tools=tools, tool_choice=choice))
    assert setup is not None and setup.messages is not None  # tools are offered: prepare rewrites
    return [{"role": m["role"], "content": m["content"]} for m in setup.messages]


def react_examples(question: str, expression: str, result: Any, reply: str, index: int = 0,
                   tools: tuple[str, ...] = REACT_TOOLS, *, examples: bool = True) -> list[dict[str, Any]]:
    """The two steps of solving question as tunedata chat examples: the call (under "required", as
    react's first step) and the answer (under "auto", the next step)."""
    opening = agent_prompt(question, tools, examples=examples)
    call = {"id": f"call_{index}", "type": "function",
            "function": {"name": "calculator", "arguments": json.dumps({"expression": expression})}}
    after = [*opening, {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": call["id"], "name": "calculator", "content": json.dumps(result)}]
    return [
        {"messages": [*rendered(opening, tools, "required"), {"role": "assistant", "content": format_call(call)}]},
        {"messages": [*rendered(after, tools, "auto"), {"role": "assistant", "content": reply}]},
    ]
