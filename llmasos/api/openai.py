"""OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/completions.

A request's ``model`` names one of the kernel's loaded models (``/v1/models`` lists them), or a model of
the library that the kernel loads on first use (``/v1/models?all=true`` gives each one's state); none
means the default model. A kernel with a single model answers whatever other name a client sends (clients
often send a fixed one); with several, an unknown name is a 404 that lists the loaded ones.

Rule: one door. A request is a generate syscall of its own request process (``kernel.session("openai")``):
it is checked against the request caps (``KernelConfig.request_caps``: a token budget, say), journaled,
accounted, and visible in ps, top and strace while it runs; it enters the same scheduler as every
process's generate call, so concurrent HTTP requests and agent processes share the model's batched
forward steps. It is never restarted after a crash (its connection is gone). A client that disconnects
ends its process, which frees its sequence before the next step. Replies follow OpenAI's shapes exactly,
including the SSE chunk stream that ends with ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmasos.api.errors import status_of
from llmasos.api.http import unless_gone
from llmasos.api.spec import INT64_END, SSE, errors, invalid, streams
from llmasos.client.kernel import Kernel, KernelNotRunning
from llmasos.client.wire import error_body
from llmasos.errors import LlmasosError
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.errors import InvalidArguments, NoSuchModel
from llmasos.syscalls.types import Completion, ReplyStream

FACE = "openai"  # the name of the OpenAI endpoint's request processes in ps

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


Stop = Annotated[str, Field(min_length=1)]
Tokens = Annotated[int, Field(ge=1, lt=INT64_END)]


class _SamplingRequest(BaseModel):
    """The fields both OpenAI request kinds share; fields llmasos does not use are accepted and ignored.

    The ranges are OpenAI's; n must be 1 (a 400 with its message, as before the schema said so).
    """

    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = Field(None, description="A loaded model's id (see /v1/models); none: the default model")
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, lt=INT64_END)
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = Field(
        None, description="Up to 4 non-empty strings; the reply ends before the first one it would contain")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1, description="Must be 1: send separate requests (they are batched together)")

    @field_validator("n", mode="before")
    @classmethod
    def _one(cls, n: Any) -> Any:
        if isinstance(n, int) and not isinstance(n, bool) and n != 1:
            raise invalid("n must be 1 (send separate requests: they are batched together)")
        return n


class ChatRequest(_SamplingRequest):
    """OpenAI's chat completion request."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _some(cls, messages: Any) -> Any:
        if isinstance(messages, list) and not messages:
            raise invalid("messages must hold at least one message")
        return messages


class CompletionRequest(_SamplingRequest):
    """OpenAI's legacy text completion request (one prompt)."""

    prompt: str | list[str]
    max_tokens: Tokens | None = 16


# A generate of a request process: its arguments, its caps (a tool, a budget), the engine, the kernel stopped.
GENERATE = {**streams(SSE, "server-sent events with stream=true"),
            **errors(400, 403, 404, 413, 422, 429, 501, 503)}


def router(kernel: Kernel) -> APIRouter:
    from llmasos.client.local import LocalClient

    r = APIRouter(tags=["openai"])
    local = LocalClient(kernel)

    async def route(asked: str | None) -> str | None:
        """The model a request's model field names (None: the default one): a loaded one, or one of the
        library that the kernel loads on first use (kernel/models.py)."""
        table = kernel.models
        if not asked or asked in table:
            return asked or None
        if any(m.name == asked for m in await local.model_states()):  # a broken one: its reason, a 404
            return asked
        if len(table) == 1:
            return None  # one model: it answers whatever name the client sends
        raise NoSuchModel(f"no model {asked[:100]!r} is loaded here; the loaded ones are "
                          f"{', '.join(table.names[:20])} (GET /v1/models lists them)")

    def model_name(name: str | None) -> str:
        table = kernel.models
        return name or table.default or str(getattr(kernel.engine, "name", None) or "llmasos")

    @r.get("/v1/models", summary="The models this kernel serves (all=true: also those it could load)",
           responses=errors(422, 501))
    async def models(all: bool = False) -> Any:
        created = int(kernel.booted_at or time.time())
        data = [{"id": m.name, "object": "model", "created": created, "owned_by": "llmasos", "engine": m.kind,
                 "context_window": int(getattr(m.engine, "context_window", 0) or 0),
                 "default": m.name == kernel.models.default} for m in kernel.models]
        if all:  # also the models the kernel could load; state and reason: the models syscall's
            states = {i.name: i for i in await local.model_states()}
            for d, m in zip(data, kernel.models):
                d.update(description=f"{m.kind} engine {getattr(m.engine, 'name', '')}".strip(), status="loaded",
                         state="loaded", reason="")
            loaded = {d["id"] for d in data}
            data += [{"id": row.name, "object": "model", "created": created, "owned_by": "llmasos",
                      "description": row.description, "status": row.extra,
                      "state": states[row.name].state if row.name in states else "",
                      "reason": states[row.name].reason if row.name in states else ""}
                     for row in await local.models() if row.name not in loaded]
        return {"object": "list", "data": data}

    @r.post("/v1/chat/completions", summary="Chat completion (stream=true: server-sent events)", responses=GENERATE)
    async def chat(request: Request, body: ChatRequest) -> Any:
        call = Generate(
            messages=tuple(_message(m, i) for i, m in enumerate(body.messages)),
            max_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p, seed=body.seed, stop=_stop(body.stop),
            stream=body.stream, tools=tuple(body.tools) if body.tools else None, tool_choice=body.tool_choice,
            model=await route(body.model),
        )
        if body.tool_choice not in (None, "none") and not body.tools:
            raise InvalidArguments("tool_choice needs tools=[...] to choose from")
        reply = _Reply("chatcmpl", "chat.completion", model_name(call.model))
        if body.stream:
            tools_on = bool(body.tools) and body.tool_choice != "none"
            usage = bool((body.stream_options or {}).get("include_usage"))
            return _sse(_streamed(kernel, call, lambda s: reply.chat_chunks(s, buffer=tools_on, usage=usage)))
        completion = await _collect(request, kernel, call)
        return reply.chat(completion) if completion is not None else _gone()

    @r.post("/v1/completions", summary="Text completion (stream=true: server-sent events)", responses=GENERATE)
    async def complete(request: Request, body: CompletionRequest) -> Any:
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise InvalidArguments("prompt must be one string (send separate requests: they are batched)")
            prompt = prompt[0]
        call = Generate(prompt=prompt, max_tokens=body.max_tokens,
                        temperature=1.0 if body.temperature is None else body.temperature,
                        top_p=1.0 if body.top_p is None else body.top_p, seed=body.seed, stop=_stop(body.stop),
                        model=await route(body.model))
        reply = _Reply("cmpl", "text_completion", model_name(call.model))
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return _sse(_streamed(kernel, call, lambda s: reply.text_chunks(s, usage=usage)))
        completion = await _collect(request, kernel, call)
        return reply.text(completion) if completion is not None else _gone()

    return r


# -- requests -----------------------------------------------------------------------------------------


def _message(m: dict[str, Any], i: int) -> dict[str, Any]:
    """An OpenAI message as the engine takes it: text content; developer is system."""
    role = m.get("role")
    if role not in ("system", "developer", "user", "assistant", "tool"):
        raise InvalidArguments(f"messages[{i}].role must be system, developer, user, assistant or tool, not {role!r}")
    content = m.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidArguments(f"messages[{i}] has a {kind!r} part; this model reads text only")
            texts.append(str(part.get("text", "")))
        content = "".join(texts)
    elif content is not None and not isinstance(content, str):
        raise InvalidArguments(f"messages[{i}].content must be a string or a list of text parts")
    out = {k: v for k, v in m.items() if k in ("name", "tool_calls", "tool_call_id")}
    out.update(role="system" if role == "developer" else role, content=content)
    if content is None and not out.get("tool_calls"):
        out["content"] = ""
    return out


def _gone() -> Response:
    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


async def _collect(request: Request, kernel: Kernel, call: Generate) -> Completion | None:
    """The whole reply of call, made by a request process; None if the client left first (the process
    then ends, and its sequence is freed)."""

    async def generate() -> Completion:
        async with kernel.session(FACE) as sys:
            return await sys.generate(**{**_fields(call), "stream": False})

    completion = await unless_gone(request, generate)
    if completion is None:
        return None
    if completion.finish_reason == "abort":
        raise KernelNotRunning("the kernel stopped before the reply was complete; try again")
    return completion


async def _streamed(kernel: Kernel, call: Generate,
                    chunks: Callable[[ReplyStream], AsyncIterator[dict]]) -> AsyncIterator[dict]:
    """The chunks of a streamed reply, generated by a request process that lives as long as the stream."""
    async with kernel.session(FACE) as sys:
        stream = sys.generate(**{**_fields(call), "stream": True})
        async with aclosing(chunks(stream)) as source:
            async for chunk in source:
                yield chunk


def _fields(call: Generate) -> dict[str, Any]:
    """call's fields as sys.generate's keyword arguments."""
    return {f: getattr(call, f) for f in ("prompt", "messages", "max_tokens", "temperature", "top_p", "seed",
                                          "stop", "stream", "tools", "tool_choice", "truncate", "model")}


# -- replies ------------------------------------------------------------------------------------------


def _finish(reason: str) -> str:
    if reason == "budget":  # cut by the request's budget: the partial reply, as a cut by max_tokens
        return "length"
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _usage(c: Completion) -> dict[str, int]:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens}


def _tool_calls(c: Completion, indexed: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, tc in enumerate(c.tool_calls):
        entry = {"id": tc.id, "type": "function",
                 "function": {"name": tc.name, "arguments": json.dumps(tc.arguments, ensure_ascii=False)}}
        out.append({"index": i, **entry} if indexed else entry)
    return out


class _Reply:
    """The id, timestamps and shapes shared by one completion's reply (or its chunks)."""

    def __init__(self, prefix: str, obj: str, model: str) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.object, self.model, self.created = obj, model, int(time.time())

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def chat(self, c: Completion) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None}
        if c.tool_calls:
            message["content"] = c.text or None
            message["tool_calls"] = _tool_calls(c)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(c.finish_reason)}
        return {**self._head("chat.completion"), "choices": [choice], "usage": _usage(c)}

    def text(self, c: Completion) -> dict[str, Any]:
        choice = {"index": 0, "text": c.text, "logprobs": None, "finish_reason": _finish(c.finish_reason)}
        return {**self._head("text_completion"), "choices": [choice], "usage": _usage(c)}

    def _chunk(self, delta: dict[str, Any], finish: str | None, usage: bool) -> dict[str, Any]:
        chunk = {**self._head("chat.completion.chunk"),
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage:
            chunk["usage"] = None
        return chunk

    async def chat_chunks(self, stream: Any, *, buffer: bool, usage: bool) -> AsyncIterator[dict]:
        """role first, then content deltas, then an empty delta with finish_reason (then usage).

        With tools offered the reply is held back until it is complete, because the model's raw text of
        a tool call is not content; it then comes as one content delta and/or one tool_calls delta.
        """
        yield self._chunk({"role": "assistant", "content": ""}, None, usage)
        try:
            async for text in stream:
                if text and not buffer:
                    yield self._chunk({"content": text}, None, usage)
        finally:  # the client left mid-stream: free the sequence now
            stream.close()
        c = stream.completion
        assert c is not None
        if buffer:
            if c.text:
                yield self._chunk({"content": c.text}, None, usage)
            if c.tool_calls:
                yield self._chunk({"tool_calls": _tool_calls(c, indexed=True)}, None, usage)
        yield self._chunk({}, _finish(c.finish_reason), usage)
        if usage:
            yield {**self._head("chat.completion.chunk"), "choices": [], "usage": _usage(c)}

    async def text_chunks(self, stream: Any, *, usage: bool) -> AsyncIterator[dict]:
        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            out = {**self._head("text_completion"),
                   "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
            return {**out, "usage": None} if usage else out

        try:
            async for text in stream:
                if text:
                    yield chunk(text, None)
        finally:
            stream.close()
        c = stream.completion
        assert c is not None
        yield chunk("", _finish(c.finish_reason))
        if usage:
            yield {**self._head("text_completion"), "choices": [], "usage": _usage(c)}


def _sse(chunks: AsyncIterator[dict]) -> StreamingResponse:
    """Server-sent events: ``data: {json}`` per chunk, ``data: [DONE]`` last; an error mid-stream is
    sent as ``data: {"error": ...}`` (what OpenAI's clients expect) and the stream ends."""

    async def body() -> AsyncIterator[str]:
        try:
            async with aclosing(chunks) as source:
                async for chunk in source:
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except LlmasosError as exc:
            _status, type_ = status_of(exc)
            yield f"data: {json.dumps(error_body(str(exc), type_, type(exc).__name__))}\n\n"
            return
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
