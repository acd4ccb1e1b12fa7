"""The OpenAI-compatible endpoints: shapes, SSE streaming, tool calls, errors, batching, and the
official `openai` client against the ASGI app."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from llmasos.api.openai import _Reply, _streamed
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.calls import Generate
from tests.api.conftest import TOKEN

USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


async def sse(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    """The data of each server-sent event ("[DONE]" as is)."""
    async with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.aread()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), raw
    return [e[6:] if e[6:] == "[DONE]" else json.loads(e[6:]) for e in events]


async def test_chat_completion_shape_and_usage(served) -> None:
    async with served() as s:
        s.engine.enqueue("Hello there, friend.")
        r = await s.http.post("/v1/chat/completions", json={"model": "anything", "messages": USER, "max_tokens": 10})
        body = r.json()
        assert r.status_code == 200
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        assert body["model"] == "fake" and isinstance(body["created"], int)
        assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello there, friend.",
                                                            "refusal": None},
                                    "logprobs": None, "finish_reason": "stop"}]
        assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_chat_sampling_fields_reach_the_engine(served) -> None:
    async with served() as s:
        s.engine.enqueue("one two three four five")
        body = {"messages": [{"role": "developer", "content": "Be brief."},
                             {"role": "user", "content": [{"type": "text", "text": "count"}]}],
                "max_completion_tokens": 2, "temperature": 0, "seed": 3}
        r = (await s.http.post("/v1/chat/completions", json=body)).json()
        assert r["choices"][0]["message"]["content"] == "one two "
        assert r["choices"][0]["finish_reason"] == "length"
        assert s.engine.prompts[-1] == "system: Be brief.\nuser: count"
        s.engine.enqueue("alpha beta STOP gamma")
        r = (await s.http.post("/v1/chat/completions", json={"messages": USER, "stop": ["STOP"]})).json()
        assert r["choices"][0]["message"]["content"] == "alpha beta "
        assert r["choices"][0]["finish_reason"] == "stop"


async def test_chat_stream_is_openai_sse(served) -> None:
    async with served() as s:
        s.engine.enqueue("The sky is blue.")
        events = await sse(s.http, "/v1/chat/completions", {"messages": USER, "stream": True})
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == "The sky is blue."
        assert len(chunks) == 2 + 4  # role, one chunk per token, finish
        assert all("usage" not in c for c in chunks)


async def test_chat_stream_usage_chunk(served) -> None:
    async with served() as s:
        s.engine.enqueue("a b")
        events = await sse(s.http, "/v1/chat/completions",
                           {"messages": USER, "stream": True, "stream_options": {"include_usage": True}})
        *chunks, usage, done = events
        assert done == "[DONE]"
        assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
        assert all(c["usage"] is None for c in chunks)


async def test_completions(served) -> None:
    async with served() as s:
        s.engine.enqueue("jumps over the dog")
        r = (await s.http.post("/v1/completions", json={"prompt": "The fox", "max_tokens": 3})).json()
        assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
        assert r["choices"] == [{"index": 0, "text": "jumps over the ", "logprobs": None, "finish_reason": "length"}]
        assert r["usage"]["completion_tokens"] == 3
        s.engine.enqueue("jumps high")
        events = await sse(s.http, "/v1/completions", {"prompt": ["The fox"], "stream": True})
        assert events[-1] == "[DONE]"
        assert "".join(c["choices"][0]["text"] for c in events[:-1]) == "jumps high"
        assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_tool_calls_come_back_in_openai_shape(served) -> None:
    async with served() as s:
        s.engine.enqueue(CALL)
        r = (await s.http.post("/v1/chat/completions", json={"messages": USER, "tools": [WEATHER]})).json()
        choice = r["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        (tc,) = choice["message"]["tool_calls"]
        assert choice["message"]["content"] is None
        assert tc["type"] == "function" and tc["id"].startswith("call_")
        assert tc["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert "get_weather" in s.engine.prompts[-1]  # offered in the prompt

        # The result goes back as a tool message; the model then answers in text.
        s.engine.enqueue("It is sunny in Paris.")
        messages = [*USER, choice["message"], {"role": "tool", "tool_call_id": tc["id"], "content": "sunny"}]
        r = (await s.http.post("/v1/chat/completions", json={"messages": messages, "tools": [WEATHER]})).json()
        assert r["choices"][0]["message"]["content"] == "It is sunny in Paris."
        assert "<tool_response>\nsunny\n</tool_response>" in s.engine.prompts[-1]

        s.engine.enqueue(CALL)
        events = await sse(s.http, "/v1/chat/completions", {"messages": USER, "tools": [WEATHER], "stream": True})
        deltas = [c["choices"][0]["delta"] for c in events[:-1]]
        assert deltas[0] == {"role": "assistant", "content": ""}
        (call,) = deltas[1]["tool_calls"]
        assert call["index"] == 0 and call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_chat_errors(served) -> None:
    async with served(engine=FakeEngine(context_window=64), default_max_tokens=16) as s:
        cases = [
            ({"messages": []}, 400, "InvalidArguments"),
            ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "InvalidArguments"),
            ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
             "InvalidArguments"),
            ({"messages": USER, "n": 2}, 400, "InvalidArguments"),
            ({"messages": USER, "tool_choice": "required"}, 400, "InvalidArguments"),
            ({"messages": USER, "tools": [{"type": "function"}]}, 400, "InvalidArguments"),
            ({"messages": USER, "max_tokens": 100}, 400, "ContextOverflow"),
            ({"messages": USER, "temperature": 5}, 422, "InvalidArguments"),
            ({"prompt": "no messages"}, 422, "InvalidArguments"),
        ]
        for body, status, code in cases:
            r = await s.http.post("/v1/chat/completions", json=body)
            assert r.status_code == status, (body, r.text)
            err = r.json()["error"]
            assert err["code"] == code and err["message"] and err["type"], body
        r = await s.http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"

        s.engine.enqueue(RuntimeError("GPU on fire"))
        r = await s.http.post("/v1/chat/completions", json={"messages": USER})
        assert r.status_code == 500 and r.json()["error"]["code"] == "EngineError"
        assert "GPU on fire" in r.json()["error"]["message"]
        s.engine.enqueue(RuntimeError("GPU on fire"))
        events = await sse(s.http, "/v1/chat/completions", {"messages": USER, "stream": True})
        assert events[-1]["error"]["code"] == "EngineError"  # mid-stream: an error event, no [DONE]


async def test_models(served) -> None:
    async with served() as s:
        r = (await s.http.get("/v1/models")).json()
        assert r["object"] == "list"
        assert [(m["id"], m["object"], m["owned_by"]) for m in r["data"]] == [("fake", "model", "llmasos")]
        everything = (await s.http.get("/v1/models", params={"all": "true"})).json()["data"]
        assert everything[0]["id"] == "fake" and everything[0]["status"] == "loaded"


# -- batching -----------------------------------------------------------------------------------------


async def test_concurrent_requests_share_forward_steps(served) -> None:
    async with served(engine=FakeEngine(step_delay=0.01)) as s:
        replies: dict[int, str] = {}

        async def ask(i: int) -> None:
            body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8}
            r = await s.http.post("/v1/chat/completions", json=body)
            replies[i] = r.json()["choices"][0]["message"]["content"]

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(ask, i)
        assert replies == {i: f"echo: user: question {i}" for i in range(4)}
        assert max(len(b) for b in s.engine.batches) == 4  # all four in one forward step
        assert len(s.engine.batches) < 4 * 4


async def test_http_requests_and_processes_share_forward_steps(served) -> None:
    async with served(engine=FakeEngine(step_delay=0.01)) as s:
        s.engine.responder = lambda seq: "w " * 20
        pid = (await s.http.post("/v1/procs", json={"app": "hello", "kwargs": {"max_tokens": 20}})).json()["pid"]
        r = await s.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 20})
        assert r.status_code == 200
        await s.http.post(f"/v1/procs/{pid}/wait")
        assert any(len(b) == 2 and pid in b for b in s.engine.batches), s.engine.batches


async def test_leaving_a_stream_early_ends_its_process_and_frees_the_sequence(served) -> None:
    async with served(engine=FakeEngine(step_delay=0.01)) as s:
        s.engine.responder = lambda seq: "word " * 200
        reply = _Reply("chatcmpl", "chat.completion", "fake")
        call = Generate(messages=tuple(USER), max_tokens=200, stream=True)
        chunks = _streamed(s.kernel, call, lambda st: reply.chat_chunks(st, buffer=False, usage=False))
        assert (await chunks.__anext__())["choices"][0]["delta"]["role"] == "assistant"
        await chunks.__anext__()
        (proc,) = [p for p in s.kernel.processes.values() if p.face == "openai"]
        (seq,) = proc.seqs
        await chunks.aclose()  # what Starlette does when the client disconnects
        assert proc.pid not in s.kernel.processes  # the request process ended and was reaped
        # The engine frees it on its model thread before its next step: wait for that, not longer.
        with anyio.fail_after(2):
            while s.kernel.llm.pending or seq.sid not in s.engine.aborted:
                await anyio.sleep(0.01)
        assert len(seq.output_ids) < 50


async def test_a_request_is_a_process_in_ps_and_strace_while_it_runs(served) -> None:
    async with served(engine=FakeEngine(step_delay=0.01)) as s:
        s.engine.responder = lambda seq: "w " * 30
        with s.kernel.tracer.subscribe(None) as events:
            async with anyio.create_task_group() as tg:
                done: list[httpx.Response] = []

                async def ask() -> None:
                    done.append(await s.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 30}))

                tg.start_soon(ask)
                with anyio.fail_after(5):
                    while not (rows := [p for p in (await s.http.get("/v1/procs")).json()["data"]
                                        if p["app"] == "openai"]):
                        await anyio.sleep(0.005)
            event = await events.receive()
        assert done[0].status_code == 200
        (row,) = rows
        assert row["state"] in ("running", "waiting") and row["waiting_on"] in (None, "llm")
        assert event.pid == row["pid"] and event.call.name == "generate" and event.error is None
        assert row["pid"] not in s.kernel.processes  # reaped once answered


async def test_requests_are_charged_to_the_request_budget(served) -> None:
    async with served(request_caps={"token_budget": 12}) as s:
        s.engine.responder = lambda seq: "w " * 50
        r = await s.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 100})
        assert r.status_code == 200
        usage = r.json()["usage"]
        assert usage["total_tokens"] <= 12 and r.json()["choices"][0]["finish_reason"] == "length"
        long = [{"role": "user", "content": "word " * 40}]  # the prompt alone is over the budget
        r = await s.http.post("/v1/chat/completions", json={"messages": long, "max_tokens": 5})
        assert r.status_code == 429 and "token budget" in r.json()["error"]["message"]


# -- the official client --------------------------------------------------------------------------------


async def test_the_openai_client(served) -> None:
    openai = pytest.importorskip("openai")
    async with served() as s:
        http = httpx.AsyncClient(transport=s.transport())
        client = openai.AsyncOpenAI(base_url="http://llmasos.test/v1", api_key=TOKEN, http_client=http, max_retries=0)
        async with client:
            assert [m.id for m in (await client.models.list()).data] == ["fake"]

            s.engine.enqueue("Paris is the capital.")
            r = await client.chat.completions.create(model="smollm2", messages=USER, max_tokens=20)
            assert r.choices[0].message.content == "Paris is the capital."
            assert r.choices[0].finish_reason == "stop" and r.usage.total_tokens == 2 + 4

            s.engine.enqueue("Streaming works fine.")
            stream = await client.chat.completions.create(model="smollm2", messages=USER, stream=True,
                                                          stream_options={"include_usage": True})
            parts, finish, usage = [], None, None
            async for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
                usage = chunk.usage or usage
            assert "".join(parts) == "Streaming works fine." and finish == "stop"
            assert usage.completion_tokens == 3

            s.engine.enqueue(CALL)
            r = await client.chat.completions.create(model="smollm2", messages=USER, tools=[WEATHER],
                                                     tool_choice="auto")
            (tc,) = r.choices[0].message.tool_calls
            assert tc.function.name == "get_weather" and json.loads(tc.function.arguments) == {"city": "Paris"}

            s.engine.enqueue("the end")
            r = await client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=5)
            assert r.choices[0].text == "the end"

            with pytest.raises(openai.BadRequestError, match="messages must hold at least one message"):
                await client.chat.completions.create(model="smollm2", messages=[])
        bad = openai.AsyncOpenAI(base_url="http://llmasos.test/v1", api_key="wrong",
                                 http_client=httpx.AsyncClient(transport=s.transport()), max_retries=0)
        async with bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
