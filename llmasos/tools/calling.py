"""Generate with tools: offer the tools in the prompt, constrain decoding, parse the calls back.

Rule: the kernel's ``submit`` calls ``prepare`` once per generate request and uses what it returns
(the rewritten prompt or messages, a per-sequence logits processor, a post-processing step for the
Completion); all tool-calling knowledge lives here. The wire format is the Hermes/Qwen one that small
instruct models have seen: tools listed in the system message, a call written as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, and a result passed back as
``<tool_response>...</tool_response>`` in a user turn (chat templates without tool support, like
SmolLM2's, render the OpenAI-shaped messages an agent keeps only after this rewrite).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmasos.syscalls.errors import InvalidArguments
from llmasos.syscalls.types import Completion, ToolCall
from llmasos.tools.closing import start_path
from llmasos.tools.errors import NoToolCall
from llmasos.tools.grammar import CLOSE, OPEN, ToolCallProcessor, closed, lark_grammar, ll_tokenizer
from llmasos.tools.registry import REGISTRY, Tool

if TYPE_CHECKING:
    from llmasos.syscalls.calls import Generate

CHOICES = ("auto", "required", "none")
_CALL = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


@dataclass(slots=True)
class Offered:
    """One tool offered to the model: its OpenAI schema, and the Tool when it is a registered one."""

    name: str
    schema: dict[str, Any]
    tool: Tool | None = None


@dataclass(slots=True)
class ToolSetup:
    """What ``Kernel.submit`` needs for one generate request with tools."""

    prompt: str | None
    messages: list[dict[str, Any]] | None
    logits_processor: Callable[[list[int], Any], Any] | None
    postprocess: Callable[[Completion], Completion]
    min_tokens: int = 1  # the least max_tokens that fits the shortest valid reply (a call, under "required")
    native: dict[str, Any] | None = None  # for an engine that sends tools to its server (Sequence.tools)


def wants_tools(call: Generate) -> bool:
    """True when the request offers tools or its messages hold tool calls or results."""
    if call.tools:
        return True
    return bool(call.messages) and any(m.get("role") == "tool" or m.get("tool_calls") for m in call.messages)


def prepare(call: Generate, tokenizer: Any = None, sid_hint: str = "", native: bool = False, *,
            max_tokens: int | None = None) -> ToolSetup | None:
    """Rewrite a generate request that involves tools; None when it does not.

    tokenizer is the engine's HF tokenizer; without one (the FakeEngine) the output
    is parsed but not constrained. With max_tokens, a call closes within it, and a max_tokens
    too small for the shortest valid call is InvalidArguments here, before anything runs.
    native: the engine passes tools to a server that calls them itself
    (OpenAIEngine); it gets them in OpenAI's shape as well (``ToolSetup.native``), keeps the rewritten
    prompt for a server that refuses them, and writes the server's calls into the reply in the wire
    format, where they are checked against their schemas like any; as nothing constrains such a
    server, a required call that is missing or invalid raises NoToolCall.
    """
    if not wants_tools(call):
        return None
    offered = resolve(call.tools or ())
    choice = normalize_choice(call.tool_choice, offered)
    active = offered if choice != "none" else []
    named = choice not in CHOICES
    if named:  # a named tool: offer only that one
        active = [o for o in offered if o.name == choice]
        choice = "required"
    system = render_tools(active, choice) if active else ""
    messages = prompt = None
    if call.messages is not None:
        messages = to_template_messages(list(call.messages))
        if system:
            if messages and messages[0].get("role") == "system":
                messages[0] = {**messages[0], "content": f"{messages[0].get('content') or ''}\n\n{system}"}
            else:
                messages.insert(0, {"role": "system", "content": system})
    else:
        prompt = f"{system}\n\n{call.prompt}" if system else call.prompt
    processor, need = None, 1
    if active and tokenizer is not None:
        grammar = lark_grammar([o.schema for o in active], choice)
        if max_tokens is not None:
            need = min_tokens(tokenizer, grammar)
            if max_tokens < need:
                names = ", ".join(o.name for o in active)
                raise InvalidArguments(
                    f"max_tokens={max_tokens} is too small for a call to any of the offered tools ({names}): "
                    f"the shortest valid call takes {need} tokens; ask for max_tokens >= {need}")
        greedy = not call.temperature  # (a tiny positive one is greedy too; checking more is only slower)
        processor = ToolCallProcessor(tokenizer, grammar, max_tokens, check=1 if greedy else SAMPLED_CHECK)

    def postprocess(completion: Completion) -> Completion:
        if not active:
            return completion
        calls, errors, rest = parse(completion.text, active, id_prefix=sid_hint)
        if not calls:
            if native and choice == "required" and completion.finish_reason in ("stop", "length"):
                why = "; ".join(errors) or f"it answered {completion.text[:200]!r}"
                raise NoToolCall(f"{completion.model or 'the model'} was required to call a tool and gave no "
                                 f"valid call ({why}); a server without tool calling is only prompted: use one "
                                 "with native tool calls (e.g. vLLM with --enable-auto-tool-choice), or "
                                 "tool_choice='auto' and handle a plain answer")
            return completion
        return dataclasses.replace(completion, text=rest, tool_calls=tuple(calls), finish_reason="tool_calls")

    setup = ToolSetup(prompt, messages, processor, postprocess, need)
    if native:
        setup.native = {
            "tools": [o.schema for o in active], "messages": openai_messages(call),
            "tool_choice": {"type": "function", "function": {"name": active[0].name}} if named else choice,
        }
    return setup


def openai_messages(call: Generate) -> list[dict[str, Any]]:
    """The request's conversation in OpenAI's shape (tool calls with JSON-text arguments), for a server."""
    if call.messages is None:
        return [{"role": "user", "content": call.prompt or ""}]
    out = []
    for m in call.messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for i, tc in enumerate(m["tool_calls"]):
                if isinstance(tc, ToolCall):
                    tc = {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
                fn = dict(tc.get("function", tc))
                if not isinstance(fn.get("arguments", ""), str):
                    fn["arguments"] = json.dumps(fn["arguments"], ensure_ascii=False)
                calls.append({"id": tc.get("id") or f"call_{i}", "type": "function",
                              "function": {"name": fn.get("name"), "arguments": fn.get("arguments", "{}")}})
            m["tool_calls"] = calls
        if m.get("role") == "tool" and not isinstance(m.get("content"), str):
            m["content"] = json.dumps(m.get("content"), ensure_ascii=False)
        out.append(m)
    return out


SAMPLED_CHECK = 8  # sampling a call: the likeliest tokens whose closing cost is checked (tools/closing.py)


def min_tokens(tokenizer: Any, grammar: str) -> int:
    """The least max_tokens in which a reply of grammar can finish (the closing path from the start)."""
    path = start_path(ll_tokenizer(tokenizer, len(tokenizer)), grammar)
    if path is None:
        raise InvalidArguments("the offered tools' schemas admit no call that can finish (an empty enum, "
                               "a pattern nothing matches?); check the parameters of each tool")
    return max(len(path), 1)


def resolve(tools: Any) -> list[Offered]:
    """Offered tools from names (registered tools), Tool objects or OpenAI-shaped schema dicts."""
    out: dict[str, Offered] = {}
    for t in tools:
        if isinstance(t, str):
            reg = REGISTRY.get(t)
            out[reg.name] = Offered(reg.name, reg.schema, reg)
        elif isinstance(t, Tool):
            out[t.name] = Offered(t.name, t.schema, t)
        elif isinstance(t, dict):
            fn = t.get("function", t) if t.get("type", "function") == "function" else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidArguments(
                    'a tool schema is {"type": "function", "function": {"name": ..., "parameters": {...}}}')
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            if not isinstance(params, dict):
                raise InvalidArguments(f"the parameters of tool {fn['name']!r} are a JSON Schema object, "
                                       f"not {type(params).__name__}")
            try:
                params = closed(params)  # extra keys refused unless the schema allows them
            except RecursionError:
                raise InvalidArguments(f"the parameters of tool {fn['name']!r} nest too deeply") from None
            schema = {"type": "function", "function": {
                "name": fn["name"], "description": fn.get("description", ""), "parameters": params}}
            out[fn["name"]] = Offered(fn["name"], schema, None)
        else:
            raise InvalidArguments(f"tools are names, Tools or schema dicts, not {type(t).__name__}")
    return list(out.values())


def normalize_choice(choice: Any, offered: list[Offered]) -> str:
    """tool_choice as "auto", "required", "none" or the name of one offered tool."""
    if choice is None:
        return "auto" if offered else "none"
    if isinstance(choice, dict):  # OpenAI: {"type": "function", "function": {"name": "x"}}
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if not isinstance(choice, str):
        raise InvalidArguments(f'tool_choice is "auto", "required", "none" or a tool name, not {choice!r}')
    if choice in CHOICES:
        if choice != "none" and not offered:
            raise InvalidArguments(f'tool_choice={choice!r} needs tools=[...] to choose from')
        return choice
    if choice not in {o.name for o in offered}:
        names = ", ".join(o.name for o in offered) or "none"
        raise InvalidArguments(f"tool_choice names {choice!r}, which is not among the offered tools ({names})")
    return choice


def render_tools(offered: list[Offered], choice: str) -> str:
    """The system-prompt text that lists the tools and the call format."""
    lines = ["You can call these tools:", "<tools>"]
    lines += [json.dumps(_for_prompt(o.schema["function"]), ensure_ascii=False) for o in offered]
    lines.append("</tools>")
    # A neutral example: naming a real tool here makes a small model pick that one every time.
    example = f'{OPEN}{{"name": <tool name>, "arguments": {{<arguments>}}}}{CLOSE}'
    if choice == "required":
        lines.append(f"Reply with one tool call and nothing else, like: {example}")
    else:
        lines.append(f"To call a tool, reply with only: {example}\n"
                     "The result comes back in <tool_response></tool_response>. "
                     "If no tool is needed, answer directly.")
    return "\n".join(lines)


def _for_prompt(schema: Any) -> Any:
    """schema without long regex patterns: the grammar enforces them; in the prompt they are noise."""
    if isinstance(schema, dict):
        return {k: _for_prompt(v) for k, v in schema.items()
                if not (k == "pattern" and isinstance(v, str) and len(v) > PROMPT_PATTERN_CHARS)}
    if isinstance(schema, list):
        return [_for_prompt(v) for v in schema]
    return schema


PROMPT_PATTERN_CHARS = 80


def to_template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool messages rewritten as plain text turns any chat template can render."""
    out = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "assistant" and m.get("tool_calls"):
            calls = [format_call(tc) for tc in m["tool_calls"]]
            text = "\n".join(([content] if content else []) + calls)
            out.append({"role": "assistant", "content": text})
        elif role == "tool":
            body = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            out.append({"role": "user", "content": f"<tool_response>\n{body}\n</tool_response>"})
        else:
            out.append({**m, "content": content if content is not None else ""})
    return out


def format_call(tc: Any) -> str:
    """A ToolCall (or an OpenAI tool_calls entry) in the wire format."""
    if isinstance(tc, ToolCall):
        name, args = tc.name, tc.arguments
    else:
        fn = tc.get("function", tc)
        name, args = fn.get("name"), fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
    return f"{OPEN}{json.dumps({'name': name, 'arguments': args}, ensure_ascii=False)}{CLOSE}"


def parse(text: str, offered: list[Offered], id_prefix: str = "") -> tuple[list[ToolCall], list[str], str]:
    """(valid calls, why the other attempts are invalid, the text outside the calls).

    A call is valid when it parses as JSON, names an offered tool and its arguments fit that tool's
    schema. Accepted forms: the tagged wire format, or the whole reply being one bare JSON object.
    """
    by_name = {o.name: o for o in offered}
    chunks = [m.group(1) for m in _CALL.finditer(text)]
    rest = _CALL.sub("", text).strip()
    if not chunks and text.strip().startswith("{"):
        chunks, rest = [text.strip()], ""
    calls, errors = [], []
    for i, chunk in enumerate(chunks):
        try:
            obj = json.loads(chunk)
        except ValueError as exc:
            errors.append(f"the tool call is not valid JSON ({exc}); write {OPEN}{{\"name\": ..., "
                          f"\"arguments\": {{...}}}}{CLOSE}")
            continue
        name = obj.get("name") if isinstance(obj, dict) else None
        args = obj.get("arguments", obj.get("parameters", {})) if isinstance(obj, dict) else None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            errors.append(f"there is no tool named {name!r} available; the tools are: {known}")
            continue
        problem = check_arguments(by_name[name], args)
        if problem:
            errors.append(problem)
            continue
        calls.append(ToolCall(id=f"call_{id_prefix}{i}", name=name, arguments=args))
    return calls, errors, rest


def check_arguments(o: Offered, args: Any) -> str | None:
    """Why args do not fit o's schema (None if they do)."""
    if not isinstance(args, dict):
        return f"the arguments of {o.name} must be a JSON object"
    if o.tool is not None:
        try:
            o.tool.validate(args)
        except InvalidArguments as exc:
            return str(exc)
        return None
    params = o.schema["function"].get("parameters") or {}
    missing = [k for k in params.get("required", []) if k not in args]
    if missing:
        return f"{o.name} is missing the arguments {', '.join(missing)}"
    if params.get("additionalProperties") is False:
        extra = [k for k in args if k not in params.get("properties", {})]
        if extra:
            return f"{o.name} takes no arguments named {', '.join(extra)}"
    return None
