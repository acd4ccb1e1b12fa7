"""OpenAIEngine, for real: a second llmasos daemon on loopback (`llmasos serve --model fake`, and once
the embedded model) serves the OpenAI API; a loopback proxy in front of it injects faults."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from llmasos import App, Sys
from llmasos.engine.errors import EngineSetupError
from llmasos.engine.openai import OpenAIEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.errors import ContextOverflow, EngineError
from llmasos.tools.errors import NoToolCall
from tests.daemon import LLMASOS, ROOT, daemon_env, readline, share_model_caches, start_daemon, stop, stop_daemon
from tests.engine.proxy import Proxy

TOKEN = "remote-test-token"
KEY_ENV = "LLMASOS_TEST_REMOTE_KEY"
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
CALL_TEXT = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A llmasos daemon on the fake engine (it echoes the prompt word by word), with a known token."""
    env = daemon_env(tmp_path_factory.mktemp("remote-home"))
    env["LLMASOS_API_TOKEN"] = TOKEN
    process, url = start_daemon(env)
    os.environ[KEY_ENV] = TOKEN
    yield url + "/v1"
    os.environ.pop(KEY_ENV, None)
    stop_daemon(process)


@pytest.fixture(scope="module")
def proxy_server(daemon: str) -> Any:
    with Proxy(daemon) as p:
        yield p


@pytest.fixture
def proxy(proxy_server: Proxy) -> Proxy:
    proxy_server.reset()
    return proxy_server


@asynccontextmanager
async def remote(tmp_path: Path, url: str, *, policy: str = "fifo", max_batch: int = 32,
                 **engine: Any) -> AsyncIterator[tuple[Kernel, OpenAIEngine]]:
    """A kernel (no database) whose engine is an OpenAIEngine on url; the engine is closed after."""
    engine.setdefault("api_key_env", KEY_ENV)
    engine.setdefault("backoff", 0.01)
    eng = OpenAIEngine(url, "fake", **engine)
    try:
        async with Kernel(KernelConfig(engine=eng, home=tmp_path, memory=False, policy=policy,
                                       max_batch=max_batch)) as kernel:
            yield kernel, eng
    finally:
        eng.close()


async def generate(kernel: Kernel, *args: Any, **kw: Any) -> Any:
    async with kernel.session("test") as sys:
        return await sys.generate(*args, **kw)


# -- generate and stream --------------------------------------------------------------------------------


async def test_generate_maps_sampling_arguments_and_counts_from_usage(tmp_path: Path, proxy: Proxy) -> None:
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        c = await generate(kernel, "one two three four five six", max_tokens=5, temperature=0.7, top_p=0.9,
                           seed=42, stop=["four", "x1", "x2", "x3", "x4"])
        assert c.text == "echo: one two three " and c.finish_reason == "stop"
        body = proxy.bodies[-1]
        assert body["prompt"] == "one two three four five six" and body["model"] == "fake"
        assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (5, 0.7, 0.9, 42)
        assert body["stop"] == ["four", "x1", "x2", "x3"]  # OpenAI takes 4; the engine applies the rest
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert (c.prompt_tokens, c.completion_tokens) == (6, 5)  # the server's counts (its stop token too)
        cut = await generate(kernel, messages=[{"role": "user", "content": "a b c d e f g"}], max_tokens=3)
        assert cut.text == "echo: user: a " and cut.finish_reason == "length" and cut.completion_tokens == 3
        assert proxy.bodies[-1]["messages"] == [{"role": "user", "content": "a b c d e f g"}]


async def test_stream_yields_text_as_it_arrives(tmp_path: Path, proxy: Proxy) -> None:
    proxy.delay = 0.05
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        async with kernel.session("test") as sys:
            stream = sys.generate("alpha beta gamma delta", stream=True, max_tokens=20)
            t0, seen = time.monotonic(), []
            async for text in stream:
                seen.append((text, time.monotonic() - t0))
        pieces = [t for t, _ in seen if t]
        assert "".join(pieces) == stream.completion.text == "echo: alpha beta gamma delta"
        assert len(pieces) == 5 and seen[0][1] < seen[-1][1] - 0.1  # not all at the end
        assert kernel.llm.tokens >= 5


async def test_server_ignoring_max_tokens_and_stop_is_held_to_them(tmp_path: Path, proxy: Proxy) -> None:
    proxy.override = {"max_tokens": 100, "stop": None}
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        c = await generate(kernel, "a b c d e f g h", max_tokens=3)
        assert c.text == "echo: a b " and c.finish_reason == "length" and c.completion_tokens == 3
        c = await generate(kernel, "a b c d e f g h", max_tokens=50, stop=["d"])
        assert c.text == "echo: a b c " and c.finish_reason == "stop"


# -- tools ------------------------------------------------------------------------------------------------


async def test_native_tools_round_trip(tmp_path: Path, proxy: Proxy) -> None:
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        c = await generate(kernel, messages=[{"role": "user", "content": CALL_TEXT}], tools=[ADD],
                           tool_choice="add", max_tokens=200)
        body = proxy.bodies[-1]
        assert body["tools"][0]["function"]["name"] == "add"
        assert body["tool_choice"] == {"type": "function", "function": {"name": "add"}}
        assert body["messages"] == [{"role": "user", "content": CALL_TEXT}]  # not rewritten: native
        assert c.finish_reason == "tool_calls" and [(t.name, t.arguments) for t in c.tool_calls] == [
            ("add", {"a": 2, "b": 3})]
        assert eng.server_tools is True and eng.fallbacks == 0
        # a conversation with a call and its result goes to the server in OpenAI's shape
        history = [{"role": "user", "content": "2+3?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": {"sum": 5}}]
        await generate(kernel, messages=history, tools=[ADD], max_tokens=5)
        sent = proxy.bodies[-1]["messages"]
        assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"a": 2, "b": 3}'
        assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": '{"sum": 5}'}


async def test_tools_fall_back_to_prompting_when_the_server_rejects_them(tmp_path: Path, proxy: Proxy) -> None:
    proxy.reject_tools = True
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        c = await generate(kernel, messages=[{"role": "user", "content": CALL_TEXT}], tools=[ADD], max_tokens=300)
        assert [(t.name, t.arguments) for t in c.tool_calls] == [("add", {"a": 2, "b": 3})]
        assert eng.server_tools is False and eng.fallbacks == 1
        rejected, prompted = proxy.bodies[-2:]
        assert "tools" in rejected and "tools" not in prompted
        assert "<tools>" in prompted["messages"][0]["content"]  # the schema, in the system prompt
        await generate(kernel, messages=[{"role": "user", "content": CALL_TEXT}], tools=[ADD], max_tokens=300)
        assert "tools" not in proxy.bodies[-1] and eng.fallbacks == 1  # remembered: no second refusal


async def test_required_tool_call_the_server_cannot_make_is_a_clear_error(tmp_path: Path, proxy: Proxy) -> None:
    proxy.reject_tools = True
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        with pytest.raises(NoToolCall, match="no valid call.*native tool calls"):
            await generate(kernel, messages=[{"role": "user", "content": "add 2 and 3"}], tools=[ADD],
                           tool_choice="required", max_tokens=300)
        bad = '<tool_call>{"name": "add", "arguments": {"a": "two"}}</tool_call>'
        with pytest.raises(NoToolCall):  # a call that does not fit the schema is no call
            await generate(kernel, messages=[{"role": "user", "content": bad}], tools=[ADD],
                           tool_choice="required", max_tokens=300)
    async with remote(tmp_path, proxy.url, tools="native") as (kernel, eng):
        with pytest.raises(EngineError, match="400.*does not support tools"):
            await generate(kernel, messages=[{"role": "user", "content": CALL_TEXT}], tools=[ADD], max_tokens=50)


# -- failures ---------------------------------------------------------------------------------------------


async def test_429_and_500_are_retried_honouring_retry_after(tmp_path: Path, proxy: Proxy) -> None:
    proxy.fail.extend([(429, "0.3"), (500, None), (503, None)])
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        t0 = time.monotonic()
        c = await generate(kernel, "still here", max_tokens=10)
        assert c.text == "echo: still here" and eng.retried == 3
        assert time.monotonic() - t0 >= 0.3
        assert len(proxy.bodies) == 4


async def test_errors_that_persist_reach_the_process_as_engine_errors(tmp_path: Path, proxy: Proxy) -> None:
    proxy.fail.extend([(500, None)] * 3)
    async with remote(tmp_path, proxy.url, retries=2) as (kernel, eng):
        with pytest.raises(EngineError, match=r"answered 500 after 3 attempts.*overloaded"):
            await generate(kernel, "x", max_tokens=5)
        proxy.fail.append((400, None))  # not worth retrying
        with pytest.raises(EngineError, match=r"refused the request \(400"):
            await generate(kernel, "x", max_tokens=5)
        assert eng.retried == 2
        assert (await generate(kernel, "after", max_tokens=5)).text == "echo: after"  # the kernel goes on


async def test_a_server_that_stalls_times_out(tmp_path: Path, proxy: Proxy) -> None:
    proxy.stall = True
    async with remote(tmp_path, proxy.url, timeout=0.5) as (kernel, eng):
        t0 = time.monotonic()
        with pytest.raises(EngineError, match=r"sent nothing for 0.5 s"):
            await generate(kernel, "x", max_tokens=5)
        assert time.monotonic() - t0 < 5


async def test_a_waiting_remote_step_leaves_the_model_thread_free(tmp_path: Path, proxy: Proxy) -> None:
    from llmasos.engine import worker

    proxy.stall = True
    async with remote(tmp_path, proxy.url, timeout=3, poll=2.0) as (kernel, eng):
        async with anyio.create_task_group() as tg:
            async def stalled() -> None:
                with pytest.raises(EngineError):
                    await generate(kernel, "x", max_tokens=5)

            tg.start_soon(stalled)
            await anyio.sleep(0.3)  # its step is waiting on the server now
            t0 = time.monotonic()
            await worker.run(time.monotonic)  # a local model's step would run at once
            assert time.monotonic() - t0 < 0.5


async def test_killing_a_process_cancels_its_remote_request(tmp_path: Path, proxy: Proxy) -> None:
    talker = App("talker")

    @talker.main
    async def _talk(sys: Sys, words: int) -> str:
        return (await sys.generate(" ".join(["w"] * words), max_tokens=words + 5)).text

    proxy.delay = 0.05
    async with remote(tmp_path, proxy.url) as (kernel, eng):
        pid = await kernel.spawn(talker, 200)
        with anyio.fail_after(10):
            while not kernel.get(pid).usage.completion_tokens:
                await anyio.sleep(0.02)
            kernel.kill(pid)
            while proxy.disconnects < 1:
                await anyio.sleep(0.02)
        assert (await kernel.wait(pid)).state == "killed" and proxy.completed == 0 and proxy.open == 0


async def test_bad_url_and_bad_key_say_what_to_fix(tmp_path: Path, daemon: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    async with remote(tmp_path, dead, retries=1) as (kernel, eng):
        with pytest.raises(EngineError, match=r"cannot reach http://127.0.0.1:\d+/v1 .*after 2 attempt"):
            await generate(kernel, "x", max_tokens=5)
    monkeypatch.setenv("WRONG_KEY", "not-the-token")
    async with remote(tmp_path, daemon, api_key_env="WRONG_KEY") as (kernel, eng):
        with pytest.raises(EngineError, match=r"refused the API key \(401.*\$WRONG_KEY") as info:
            await generate(kernel, "x", max_tokens=5)
        assert "not-the-token" not in str(info.value) and "not-the-token" not in repr(eng)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(EngineSetupError, match=r"\$NO_SUCH_KEY_VAR, which is not set"):
        OpenAIEngine(daemon, "fake", api_key_env="NO_SUCH_KEY_VAR")


@pytest.mark.parametrize("garbage, why", [
    (b"data: {not json\n\n", "not JSON"),
    (b"data: [1, 2]\n\n", "not a JSON object"),
    (b'data: {"choices": [{"delta": {"content": 7}}]}\n\n', "not a string"),
    (b'data: {"choices": [{"delta": {"tool_calls": [{"index": 99999}]}}]}\n\n', "index out of range"),
    (b'data: {"error": {"message": "model melted"}}\n\n', "model melted"),
    (b"data: " + b"x" * 20000 + b"\n\n", "more than 4096 bytes"),
    (b"x" * 20000, "more than 4096 bytes"),  # never a newline
    (b'data: {"choices": [{"delta": {"content": "half"}}]}\n\n', "closed the stream before the reply ended"),
    ((b'data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "'
      + b"x" * 3000 + b'"}}]}}]}\n\n') * 2, "tool calls of more than 4096"),
])
async def test_garbage_streams_fail_that_request_alone(tmp_path: Path, proxy: Proxy, garbage: bytes,
                                                       why: str) -> None:
    async with remote(tmp_path, proxy.url, max_event_bytes=4096) as (kernel, eng):
        proxy.garbage = garbage
        with pytest.raises(EngineError, match=why):
            await generate(kernel, "x", max_tokens=5)
        proxy.garbage = None
        assert (await generate(kernel, "fine", max_tokens=5)).text == "echo: fine"


async def test_absurd_usage_counts_are_held_to_what_was_asked(tmp_path: Path, proxy: Proxy) -> None:
    huge = 2**31 - 2
    proxy.garbage = (b'data: {"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]}\n\n'
                     b'data: {"choices": [], "usage": {"prompt_tokens": %d, "completion_tokens": %d}}\n\n'
                     b"data: [DONE]\n\n" % (huge, huge))
    async with remote(tmp_path, proxy.url, context_window=1000) as (kernel, eng):
        c = await generate(kernel, "x", max_tokens=7)
        assert c.text == "hi" and (c.prompt_tokens, c.completion_tokens) == (1000, 7)


# -- the scheduler in front of a remote server ----------------------------------------------------------


async def test_fair_policy_and_the_in_flight_limit(tmp_path: Path, proxy: Proxy) -> None:
    """One process with four requests and four processes with one each, two in flight at a time: fair
    admission lets the single ones in before the greedy process's last requests; fifo does not."""
    proxy.delay = 0.01
    starts = {}
    for policy in ("fifo", "fair"):
        proxy.bodies.clear()
        async with remote(tmp_path, proxy.url, policy=policy, max_inflight=2) as (kernel, eng):
            async def greedy() -> None:
                async with kernel.session("greedy") as sys, anyio.create_task_group() as tg:
                    for i in range(4):
                        tg.start_soon(lambda i=i: sys.generate(f"greedy{i} a b c d e f g h", max_tokens=12))

            async def single(i: int) -> None:
                await anyio.sleep(0.05)
                await generate(kernel, f"single{i} a b c d e f g h", max_tokens=12)

            async with anyio.create_task_group() as tg:
                tg.start_soon(greedy)
                for i in range(4):
                    tg.start_soon(single, i)
        assert proxy.max_open <= 2 and len(proxy.bodies) == 8
        starts[policy] = [b["prompt"].split()[0] for b in proxy.bodies]
    assert sorted(starts["fifo"][:4]) == ["greedy0", "greedy1", "greedy2", "greedy3"]  # (in any order among them)
    assert sum(s.startswith("single") for s in starts["fair"][:4]) >= 2, starts["fair"]


# -- specs and arguments ----------------------------------------------------------------------------------


async def test_kernel_config_takes_an_openai_spec(tmp_path: Path, daemon: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    async with Kernel(KernelConfig(engine=f"openai:{daemon}#fake", home=tmp_path, memory=False,
                                   max_batch=3)) as kernel:
        assert kernel.engine.max_inflight == 3 and kernel.engine.base_url == daemon
        assert (await generate(kernel, "by spec", max_tokens=5)).text == "echo: by spec"
    toml = tmp_path / "remote.toml"
    toml.write_text(f'[engine]\nkind = "openai"\nbase_url = "{daemon}"\nmodel = "fake"\n'
                    f'api_key_env = "{KEY_ENV}"\nmax_inflight = 2\ntimeout = 5\n')
    async with Kernel(KernelConfig(engine=str(toml), home=tmp_path, memory=False)) as kernel:
        assert kernel.engine.max_inflight == 2 and kernel.engine.timeout == 5
        assert (await generate(kernel, "by file", max_tokens=5)).text == "echo: by file"


@pytest.mark.parametrize("spec, why", [
    ("openai:http://127.0.0.1:1/v1", "openai:URL#MODEL"),
    ("openai:#model", "openai:URL#MODEL"),
    ("openai:ftp://host/v1#m", "http"),
    ("openai:http://user:pw@host/v1#m", "credentials"),
    ("openai:javascript:alert(1)#m", "http"),
])
async def test_bad_specs_are_refused_before_anything_starts(tmp_path: Path, spec: str, why: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with pytest.raises(EngineSetupError, match=why):
        async with Kernel(KernelConfig(engine=spec, home=tmp_path, memory=False)):
            pass


@pytest.mark.parametrize("body, why", [
    ('[engine]\nkind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\napi_key = "sk-123"\n', "never read from files"),
    ('[engine]\nkind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\nbogus = 1\n', "bogus"),
    ('[engine]\nkind = "vllm"\n', 'kind = "openai"'),
    ("not toml ][", "not valid TOML"),
    ('[engine]\nkind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\nmax_inflight = "many"\n', "whole number"),
])
def test_bad_engine_files_are_refused(tmp_path: Path, body: str, why: str) -> None:
    from llmasos.engine.openai import OpenAIEngine as E

    path = tmp_path / "e.toml"
    path.write_text(body)
    with pytest.raises(EngineSetupError, match=why) as info:
        E.from_spec(str(path), api_key_env=None)
    assert "sk-123" not in str(info.value)
    with pytest.raises(EngineSetupError, match="cannot read"):
        E.from_spec(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize("kw, why", [
    ({"max_inflight": 0}, "max_inflight"), ({"max_inflight": 10**12}, "max_inflight"),
    ({"max_inflight": True}, "max_inflight"), ({"timeout": float("nan")}, "timeout"),
    ({"timeout": -1}, "timeout"), ({"retries": -1}, "retries"), ({"tools": "always"}, "tools"),
    ({"model": ""}, "model"), ({"model": None}, "model"), ({"base_url": "127.0.0.1:8000"}, "http"),
    ({"context_window": "big"}, "context_window"),
])
def test_hostile_engine_arguments_are_refused(kw: dict[str, Any], why: str) -> None:
    args = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None, **kw}
    with pytest.raises(EngineSetupError, match=why):
        OpenAIEngine(**args)


async def test_prompt_over_the_context_window_is_refused_locally(tmp_path: Path, proxy: Proxy) -> None:
    async with remote(tmp_path, proxy.url, context_window=64) as (kernel, eng):
        with pytest.raises(ContextOverflow, match="context window of 64"):
            await generate(kernel, "word " * 200, max_tokens=5)
        assert proxy.bodies == []
        c = await generate(kernel, "word " * 200 + "END", max_tokens=5, truncate=True)
        assert c.completion_tokens <= 5
        assert proxy.bodies[-1]["prompt"].endswith("word END") and len(proxy.bodies[-1]["prompt"]) <= 3 * 59
        history = [{"role": "system", "content": "be brief"}] + [
            {"role": "user", "content": f"message {i} " + "x" * 60} for i in range(5)]
        await generate(kernel, messages=history, max_tokens=5, truncate=True)
        sent = proxy.bodies[-1]["messages"]
        assert sent[0]["content"] == "be brief" and sent[-1]["content"].startswith("message 4") and len(sent) < 6


def test_serve_runs_on_a_remote_model(tmp_path: Path, daemon: str) -> None:
    """`llmasos serve --model openai:URL#MODEL`: a daemon whose model is another daemon."""
    import httpx

    env = daemon_env(tmp_path)
    env.update(LLMASOS_API_TOKEN="front-token", OPENAI_API_KEY=TOKEN)
    front = subprocess.Popen([*LLMASOS, "serve", "--model", f"openai:{daemon}#fake", "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = readline(front.stdout, 30)
        assert "(model fake, policy fifo)" in line, line
        url = line.split("serving ")[1].split()[0]
        reply = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer front-token"},
                           json={"messages": [{"role": "user", "content": "through two daemons"}]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "echo: user: through two daemons"
        rc, err = stop_daemon(front)
        assert rc == 0 and TOKEN not in err  # the key is never logged
    finally:
        stop(front)


@pytest.mark.parametrize("spec, why", [
    ("openai:nope", "openai:URL#MODEL"),
    ("openai:http://127.0.0.1:1/v1#m", r"\$OPENAI_API_KEY, which is not set"),
    ("openai:http://127.0.0.1:1/v1#m;rm -rf ~", None),  # only ever a model name sent to that server
])
def test_cli_model_option_with_a_bad_remote_spec(spec: str, why: str | None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from llmasos.cli import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if why is None:
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        eng = OpenAIEngine.from_spec(spec)
        assert eng.model == "m;rm -rf ~" and eng.base_url == "http://127.0.0.1:1/v1"
        eng.close()
        return
    result = CliRunner().invoke(cli, ["run", "echo", "hi", "--model", spec], env={"LLMASOS_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert re.search(why, result.output), result.output


# -- the real model ---------------------------------------------------------------------------------------


async def test_a_local_and_a_remote_model_side_by_side(tmp_path: Path, proxy: Proxy, tiny_engine_factory) -> None:
    local = tiny_engine_factory()
    eng = OpenAIEngine(proxy.url, "fake", api_key_env=KEY_ENV, backoff=0.01)
    try:
        config = KernelConfig(models={"local": local, "remote": eng}, home=tmp_path, memory=False)
        async with Kernel(config) as kernel:
            assert [kernel.models.get(n).kind for n in ("local", "remote")] == ["local", "remote"]
            async with kernel.session("test") as sys:
                async with anyio.create_task_group() as tg:  # both at once: each model's own loop
                    got: dict[str, Any] = {}

                    async def ask(model: str) -> None:
                        got[model] = await sys.generate("one two three", model=model, max_tokens=4)

                    tg.start_soon(ask, "local")
                    tg.start_soon(ask, "remote")
            assert got["remote"].text.startswith("echo: one")  # the fake daemon echoes
            assert got["local"].model == "tiny" and got["remote"].model != "tiny"
            assert got["local"].completion_tokens == 4 and len(proxy.bodies) == 1  # the remote one went over HTTP
    finally:
        eng.close()


@pytest.mark.slow
async def test_real_model_through_a_remote_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = daemon_env(share_model_caches(tmp_path / "home"))
    env["LLMASOS_API_TOKEN"] = TOKEN
    process = subprocess.Popen([*LLMASOS, "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = readline(process.stdout, 300)
        assert "serving" in line, line + process.stderr.read()
        url = line.split("serving ")[1].split()[0] + "/v1"
        monkeypatch.setenv(KEY_ENV, TOKEN)
        eng = OpenAIEngine(url, "smollm2-135m", api_key_env=KEY_ENV)
        try:
            async with Kernel(KernelConfig(engine=eng, home=tmp_path, memory=False)) as kernel:
                ask = [{"role": "user", "content": "What is the capital of France?"}]
                c = await generate(kernel, messages=ask, max_tokens=16, seed=1)
                assert "Paris" in c.text and c.prompt_tokens > 20 and 0 < c.completion_tokens <= 16
                async with kernel.session("test") as sys:
                    stream = sys.generate(messages=ask, max_tokens=16, seed=1, stream=True)
                    pieces = [t async for t in stream]
                assert "".join(pieces) == stream.completion.text == c.text  # greedy: the same reply
            # the embedded model and the remote one, side by side in one kernel
            config = KernelConfig(models={"local": "smollm2-135m", "remote": eng}, home=tmp_path, memory=False)
            async with Kernel(config) as kernel:
                assert [kernel.models.get(n).kind for n in ("local", "remote")] == ["local", "remote"]
                local = await generate(kernel, messages=ask, max_tokens=16, seed=1, model="local")
                far = await generate(kernel, messages=ask, max_tokens=16, seed=1, model="remote")
                assert "Paris" in local.text and "Paris" in far.text and far.text == c.text
        finally:
            eng.close()
    finally:
        stop(process)
