"""The agent loop: generate -> tool call -> tool result -> ... -> answer, within a step limit.

Rule: the loop runs inside the calling process and reaches the model and the tools only through that
process's syscalls (``sys.generate``, ``sys.call_tool``), so its capabilities, budgets, trace and
journal apply to every step. A failing tool, a refused tool or an invalid call never ends the loop:
it becomes a message the model sees, and the model gets another step. Repeating an identical call
is not run twice; the model is then asked for its answer, as it is on the last step. The answer is
either the model's real answer or ``"could not answer: <reason>"`` (``finished=False``): never a
tool call's JSON, a tool result standing in for an answer, or (after a failed step) a paragraph
about the call format.
The offered tools' few-shot examples (``@tool(examples=...)``) open the conversation as worked turns,
unless ``examples=False`` (a model fine-tuned on the prompt without them, as ``smollm2-135m-tools``).
Every generate names ``model`` (None: the process's default model). ``constrained=False`` sends the
same prompt without the tools, so no grammar applies, and parses the model's own text (for measuring
what the grammar buys; an invalid call is then possible and is an "invalid" step).

A call can be checked before it runs: ``check_call(task, call)`` returns why the call does not fit the
task (or None). A call that fails it is not run at once: up to ``retries`` more replies are sampled
(``retry_temperature``, seeds ``seed + 1, seed + 2, ...``), and the call most of the passing samples
agree on is run (self-consistency over the checked ones; the earliest wins a tie). With no passing
sample, the first call runs as the model made it. The step's ``note`` says what the check did. The
samples are generate syscalls like any other: journaled, traced and counted against the budgets.
Before sampling, ``repair_call(task, call)`` may narrow the failing call's tool for one more reply: it
returns that tool's schema (OpenAI's shape) with a stricter one for its arguments (say, a pattern that
makes the expression begin ``59 - ``), offered in the tool's place with the same prompt (a long pattern
is not shown in it); the model's reply under that grammar runs if it passes the check. Only with
``constrained`` (without a grammar there is nothing to narrow).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from llmasos.syscalls.calls import Generate
from llmasos.syscalls.errors import (
    InvalidArguments,
    PermissionDenied,
    QuotaExceeded,
    ToolError,
)
from llmasos.tools.calling import parse, prepare, resolve

FAILED = "could not answer: "
MAX_EXAMPLES = 4  # few-shot examples in one agent's prompt, over all its tools
REPAIRS = 2  # repairs of one step's call, each of the call the last one made (check_call, repair_call)
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
    note: str | None = None  # what check_call did to this step's call, if anything


@dataclass(slots=True)
class AgentResult:
    """What ``sys.agent`` returns; ``str(result)`` is the answer."""

    answer: str
    steps: list[AgentStep] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = True  # False: no answer; ``answer`` is "could not answer: <reason>"

    def __str__(self) -> str:
        return self.answer


async def run_agent(sys: Any, task: str, *, tools: Iterable[Any] | None = None, max_steps: int = 5,
                    system: str | None = DEFAULT_SYSTEM, first_choice: Any = "auto",
                    max_tokens: int = 128, temperature: float = 0.0, seed: int | None = None,
                    model: str | None = None, examples: bool = True, constrained: bool = True,
                    check_call: Callable[[str, Any], str | None] | None = None, retries: int = 4,
                    retry_temperature: float = 0.8,
                    repair_call: Callable[[str, Any], dict[str, Any] | None] | None = None) -> AgentResult:
    """Solve task with the model and tools (default: every tool the process may use)."""
    if max_steps < 1:
        raise InvalidArguments(f"max_steps must be at least 1, not {max_steps}")
    if not 0 <= retries <= 16:
        raise InvalidArguments(f"retries must be between 0 and 16, not {retries}")
    if tools is None:
        tools = [t["function"]["name"] for t in await sys.tools()]
    tools = list(tools)
    offered = resolve(tools)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages += example_turns(offered) if examples else []
    messages.append({"role": "user", "content": task})
    steps: list[AgentStep] = []
    done: dict[str, Any] = {}  # canonical call -> its result message, to refuse repeats
    answer_now = not tools
    for step in range(max_steps):
        if step == max_steps - 1:
            answer_now = True
        choice = "none" if answer_now else (first_choice if step == 0 else "auto")
        sizes = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed, "model": model}
        ask = partial(_ask, sys, messages, tools, offered, choice, constrained, step)
        reply, calls = await ask(sizes)
        note = None
        if calls and check_call is not None:
            narrowed = partial(_narrowed, sys, messages, tools, choice, step) if constrained and repair_call else None
            reply, calls, note = await _checked(task, reply, calls, check_call, ask, sizes, retries,
                                                retry_temperature, repair_call, narrowed)
        if not calls:
            _calls, errors, _rest = parse(reply.text, offered) if choice != "none" else ([], [], "")
            if errors:  # an attempted call that is not valid (only possible unconstrained)
                steps.append(AgentStep("invalid", reply.text, error="; ".join(errors)))
                messages.append({"role": "assistant", "content": reply.text})
                messages.append({"role": "user", "content": "Error: " + "; ".join(errors)})
                continue
            steps.append(AgentStep("answer", reply.text))
            messages.append({"role": "assistant", "content": reply.text})
            failed_before = any(s.kind == "invalid" or s.error is not None for s in steps[:-1])
            answer, problem = check_answer(reply.text, after_failure=failed_before)
            if problem is not None:
                steps[-1].error = problem
                return AgentResult(FAILED + problem, steps, messages, finished=False)
            return AgentResult(answer, steps, messages)
        fresh = [tc for tc in calls if _key(tc) not in done]
        if not fresh:  # the same call again: it would get the same result; ask for the answer
            answer_now = True
            continue
        messages.append({"role": "assistant", "content": reply.text or None, "tool_calls": [
            {"id": tc.id, "type": "function",
             "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}} for tc in fresh]})
        for tc in fresh:
            record = AgentStep("call", reply.text, tc.name, tc.arguments, note=note)
            try:
                record.result = await sys.call_tool(tc.name, tc.arguments)
                content = json.dumps(record.result, ensure_ascii=False)
            except (ToolError, PermissionDenied, QuotaExceeded, InvalidArguments) as exc:
                record.error = str(exc)
                content = json.dumps({"error": record.error}, ensure_ascii=False)
            steps.append(record)
            done[_key(tc)] = content
            messages.append({"role": "tool", "tool_call_id": tc.id, "name": tc.name, "content": content})
    reason = f"no answer within {max_steps} step{'s' if max_steps != 1 else ''}"
    last = next((s for s in reversed(steps) if s.kind in ("call", "invalid")), None)
    if last is not None and last.error is not None:
        reason += f"; the last step failed: {_short(last.error)}"
    return AgentResult(FAILED + reason, steps, messages, finished=False)


async def _ask(sys: Any, messages: list[dict[str, Any]], tools: list[Any], offered: list[Any], choice: Any,
               constrained: bool, step: int, sizes: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(the reply, its tool calls) for the conversation so far."""
    if constrained or not tools or choice == "none":
        reply = await sys.generate(messages=messages, tools=tools or None, tool_choice=choice if tools else None,
                                   **sizes)
        return reply, list(reply.tool_calls)
    # the same prompt, no grammar: the model's own text, parsed
    plain = prepare(Generate(messages=tuple(messages), tools=tuple(tools), tool_choice=choice))
    assert plain is not None and plain.messages is not None
    reply = await sys.generate(messages=plain.messages, **sizes)
    return reply, parse(reply.text, offered, id_prefix=f"{step}_")[0]


async def _narrowed(sys: Any, messages: list[dict[str, Any]], tools: list[Any], choice: Any, step: int,
                    schema: dict[str, Any], sizes: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The reply with schema offered in place of the tool of its name, all else as asked before."""
    name = resolve([schema])[0].name
    swapped = [schema if resolve([t])[0].name == name else t for t in tools]
    return await _ask(sys, messages, swapped, resolve(swapped), choice, True, step, sizes)


async def _checked(task: str, reply: Any, calls: list[Any], check: Callable[[str, Any], str | None],
                   ask: Callable[[dict[str, Any]], Any], sizes: dict[str, Any], retries: int,
                   temperature: float, repair: Callable[[str, Any], dict[str, Any] | None] | None = None,
                   narrowed: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
                   ) -> tuple[Any, list[Any], str | None]:
    """(reply, calls, note): the model's calls if they pass check, else its reply under the repaired
    schema if that passes (a repaired call that fails another rule gets that rule's repair, up to
    ``REPAIRS`` in all), else the calls most passing samples agree on (the first sample among equals),
    else the model's first calls."""
    failing, why = _failing(task, calls, check)
    if why is None:
        return reply, calls, None
    first = _calls_shown(calls)
    how = "repaired under a narrower grammar as "
    schemas: list[dict[str, Any]] = []
    while repair is not None and narrowed is not None and len(schemas) < REPAIRS:
        schema = repair(task, failing)
        if schema is None or schema in schemas:
            break
        schemas.append(schema)
        again, found = await narrowed(schema, sizes)
        if not found:
            break
        failing, still = _failing(task, found, check)
        how += _calls_shown(found)
        if still is None:
            return again, found, f"check: {first} {why}; {how}"
        how += f", which {still}; then as "
    passing: list[tuple[Any, list[Any]]] = []
    votes: Counter[str] = Counter()
    base, tried = sizes.get("seed") or 0, 0
    for tried in range(1, retries + 1):  # tried: the samples taken so far
        again, found = await ask({**sizes, "temperature": temperature, "seed": base + tried})
        if found and _problem(task, found, check) is None:
            key = "|".join(_key(tc) for tc in found)
            votes[key] += 1
            passing.append((again, found))
            if votes[key] * 2 > retries:  # a majority of all the samples: the rest cannot outvote it
                break
    if not passing:
        return reply, calls, f"check: {first} {why}; no sample of {retries} passed, so it ran as made"
    best = max(votes.values())
    again, found = next((r, f) for r, f in passing if votes["|".join(_key(tc) for tc in f)] == best)
    return again, found, (f"check: {first} {why}; {best} of {len(passing)} passing samples (of "
                          f"{tried}) agreed on this call")


def _calls_shown(calls: list[Any]) -> str:
    return _short(", ".join(f"{tc.name}({json.dumps(tc.arguments)})" for tc in calls), 120)


def _failing(task: str, calls: list[Any], check: Callable[[str, Any], str | None]) -> tuple[Any, str | None]:
    """(the first call check refuses, why) or (None, None)."""
    return next(((tc, why) for tc in calls if (why := check(task, tc)) is not None), (None, None))


def _problem(task: str, calls: list[Any], check: Callable[[str, Any], str | None]) -> str | None:
    return _failing(task, calls, check)[1]


_MARKUP = re.compile(r"</?tool_(?:response|call)>")
_CALL_JSON = re.compile(r'^\s*[{\[]|"(?:name|arguments)"\s*:|<tool_call>')
_ABOUT_FORMAT = re.compile(r"\bjson\b|malformed|tool[ _]call|function call|\bsyntax\b|\bschema\b", re.IGNORECASE)


def check_answer(text: str, *, after_failure: bool = True) -> tuple[str, str | None]:
    """(the answer, None) or (text, why it is not an answer). Talk of JSON or the call format only
    disqualifies an answer after_failure (an invalid call or a tool error earlier in the loop): a
    question may well be about JSON."""
    if _CALL_JSON.search(text):
        return text, "the model wrote a tool call where its answer should be"
    answer = _MARKUP.sub("", text).strip()  # the small model sometimes echoes the tool-result markup
    if not answer:
        return answer, "the model's answer was empty"
    if after_failure and _ABOUT_FORMAT.search(answer):
        return answer, "the model wrote about the tool-call format instead of answering"
    return answer, None


def example_turns(offered: list[Any]) -> list[dict[str, Any]]:
    """The offered tools' few-shot examples as worked turns: question, call, result, answer."""
    turns: list[dict[str, Any]] = []
    shown = 0
    for o in offered:
        for i, ex in enumerate(getattr(o.tool, "examples", ()) or ()):
            if shown >= MAX_EXAMPLES:
                return turns
            shown += 1
            cid = f"example_{o.name}_{i}"
            turns.append({"role": "user", "content": ex["question"]})
            turns.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function",
                 "function": {"name": o.name, "arguments": json.dumps(ex["arguments"])}}]})
            if "result" in ex:
                turns.append({"role": "tool", "tool_call_id": cid, "name": o.name,
                              "content": json.dumps(ex["result"], ensure_ascii=False)})
                if "answer" in ex:
                    turns.append({"role": "assistant", "content": ex["answer"]})
    return turns


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _key(tc: Any) -> str:
    return json.dumps([tc.name, tc.arguments], sort_keys=True, default=str)
