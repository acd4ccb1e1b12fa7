"""The OpenAI wire format for OpenAIEngine: engine specs, request bodies, and the server-sent events of
a streamed reply, read into plain records.

Rule: nothing here does I/O or holds state; every malformed thing a server sends becomes a
``MalformedReply`` naming what was wrong, so the engine turns it into an EngineError for the one
request that got it, never a crash. An API key never appears in a spec or a config file: both name
the environment variable that holds it.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmasos.engine.base import Sequence
from llmasos.engine.errors import EngineSetupError

SCHEME = "openai:"
MAX_STOPS = 4  # OpenAI's limit on stop strings; the engine applies any further ones itself
FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop",
          "content_filter": "stop"}  # the server's finish_reason -> ours (tool calls are found in the text)


class MalformedReply(Exception):
    """The server sent something that is not an OpenAI streamed reply."""


# -- specs -------------------------------------------------------------------------------------------


def is_spec(spec: Any) -> bool:
    """spec names a remote model (``openai:URL#MODEL``) or an engine config file (``*.toml``)."""
    return isinstance(spec, str) and (spec.startswith(SCHEME) or spec.endswith(".toml"))


def parse_spec(spec: str) -> dict[str, Any]:
    """``openai:URL#MODEL`` or a TOML file's ``[engine]`` table -> OpenAIEngine's keyword arguments."""
    if spec.startswith(SCHEME):
        url, sep, model = spec[len(SCHEME):].partition("#")
        if not sep or not model or not url:
            raise EngineSetupError(f"a remote model is openai:URL#MODEL, e.g. "
                                   f"openai:http://127.0.0.1:8000/v1#smollm2-135m; not {spec!r}")
        return {"base_url": url, "model": model}
    path = Path(spec).expanduser()
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise EngineSetupError(f"cannot read the engine config file {spec}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EngineSetupError(f"{spec} is not valid TOML: {exc}") from None
    engine = table.get("engine")
    if not isinstance(engine, dict) or engine.get("kind") != "openai":
        raise EngineSetupError(f'{spec} needs an [engine] table with kind = "openai", base_url and model')
    options = {k: v for k, v in engine.items() if k != "kind"}
    if "api_key" in options:
        raise EngineSetupError(f"{spec} holds an api_key: keys are never read from files; put the key in an "
                               "environment variable and name it with api_key_env = \"NAME\"")
    return options


def check_base_url(url: Any) -> str:
    """The server's base URL (up to /v1), validated; EngineSetupError otherwise."""
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise EngineSetupError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {url!r}")
    if parsed.username or parsed.password:
        raise EngineSetupError("base_url must not carry credentials; the key comes from api_key_env")
    return url.rstrip("/")


# -- requests ----------------------------------------------------------------------------------------


def request(seq: Sequence, model: str, native_tools: bool) -> tuple[str, dict[str, Any]]:
    """(the endpoint path, the JSON body) of seq's streamed request.

    A prompt goes to /completions (no chat template, as the local engine treats a prompt); messages,
    or any request sent with native tools, to /chat/completions."""
    p = seq.params
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                            "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p}
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop[:MAX_STOPS])
    if native_tools and seq.tools is not None:
        body["messages"] = list(seq.tools["messages"])
        if seq.tools.get("tools"):
            body["tools"] = list(seq.tools["tools"])
            body["tool_choice"] = seq.tools["tool_choice"]
        return "/chat/completions", body
    if seq.messages is not None:
        body["messages"] = [{"role": m.get("role", "user"), "content": m.get("content") or ""}
                            for m in seq.messages]
        return "/chat/completions", body
    body["prompt"] = seq.prompt or ""
    return "/completions", body


CHARS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """A stand-in count until the server's usage arrives: about 3 characters a token, rounded up (an
    over-estimate for English, so a budget reserves enough)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_estimate(seq: Sequence) -> int:
    if seq.messages is not None:
        return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in seq.messages) + 2
    return max(estimate_tokens(seq.prompt or ""), 1)


def rejects_tools(status: int, body: str) -> bool:
    """A 4xx reply that refuses the request's tools (a server without tool calling)."""
    return status in (400, 404, 422, 501) and "tool" in body.lower()


def error_text(body: bytes | str, limit: int = 300) -> str:
    """The message of a server's error reply, shortened."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        if isinstance(err, dict):
            text = str(err.get("message") or err.get("detail") or err)
        elif isinstance(err, str):
            text = err
    except ValueError:
        pass
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds; None if absent or not a number)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


# -- replies ----------------------------------------------------------------------------------------


class Lines:
    """Split a byte stream into lines, refusing any line longer than max_bytes (a server that never
    sends a newline cannot make the engine buffer without end)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        if len(self._buf) > self.max_bytes or any(len(line) > self.max_bytes for line in lines):
            raise MalformedReply(f"an event of more than {self.max_bytes} bytes")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


@dataclass(slots=True)
class Delta:
    """What one event adds to a reply."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # partial, keyed by "index"
    finish: str | None = None  # the server's finish_reason
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens)
    done: bool = False  # data: [DONE]


def parse_line(line: str) -> Delta | None:
    """One line of a server-sent event stream: a Delta for a data line, None for anything else."""
    if not line.startswith("data:"):
        return None  # blank separators, comments, event:/id:/retry: fields
    data = line[5:].strip()
    if data == "[DONE]":
        return Delta(done=True)
    try:
        obj = json.loads(data)
    except ValueError:
        raise MalformedReply(f"an event that is not JSON: {data[:80]!r}") from None
    if not isinstance(obj, dict):
        raise MalformedReply(f"an event that is not a JSON object: {data[:80]!r}")
    if obj.get("error") is not None:
        raise MalformedReply(f"an error: {error_text(json.dumps(obj))}")
    out = Delta()
    usage = obj.get("usage")
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if _count(prompt) and _count(completion):
            out.usage = (prompt, completion)
    choices = obj.get("choices") or []
    if not isinstance(choices, list):
        raise MalformedReply("choices that are not a list")
    for choice in choices[:1]:
        if not isinstance(choice, dict):
            raise MalformedReply("a choice that is not an object")
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text is not None and not isinstance(text, str):
            raise MalformedReply(f"text that is not a string: {text!r:.80}")
        out.text = text or ""
        calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        if calls is not None:
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise MalformedReply("tool_calls that are not a list of objects")
            out.tool_calls = calls
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise MalformedReply(f"a finish_reason that is not a string: {finish!r:.80}")
        out.finish = finish
    return out


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31


def merge_tool_calls(acc: dict[int, dict[str, Any]], deltas: list[dict[str, Any]], max_bytes: int) -> None:
    """Fold streamed tool-call deltas (name once, arguments in pieces) into acc, by index; the calls
    together may hold at most max_bytes characters."""
    for d in deltas:
        index = d.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 64:
            raise MalformedReply(f"a tool call index out of range: {index!r:.40}")
        fn = d.get("function") or {}
        if not isinstance(fn, dict):
            raise MalformedReply("a tool call whose function is not an object")
        entry = acc.setdefault(index, {"name": "", "arguments": ""})
        name, args = fn.get("name"), fn.get("arguments")
        if name is not None:
            entry["name"] += str(name)
        if args is not None:
            entry["arguments"] += args if isinstance(args, str) else json.dumps(args)
    if sum(len(e["name"]) + len(e["arguments"]) for e in acc.values()) > max_bytes:
        raise MalformedReply(f"tool calls of more than {max_bytes} characters")


def render_tool_calls(acc: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The merged calls as {"name", "arguments"} (arguments parsed from JSON when they parse)."""
    out = []
    for _, entry in sorted(acc.items()):
        args: Any = entry["arguments"] or "{}"
        try:
            args = json.loads(args)
        except ValueError:
            pass  # left as text: the tool-call check reports it
        out.append({"name": entry["name"], "arguments": args})
    return out
