"""MCP both ways: a tiny MCP server (written with the official SDK) used from apps through the kernel,
our MCP server driven by the official SDK's client, and the round trip (our client against our server)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from llmasos import App, Sys
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.kernel.config import ConfigError
from llmasos.syscalls.errors import SyscallError, ToolError
from llmasos.tools import mcp
from llmasos.tools.errors import ToolArgumentsInvalid, ToolFailed
from llmasos.tools.grammar import call_schema
from llmasos.tools.registry import REGISTRY

TINY = str(Path(__file__).with_name("mcp_tiny.py"))
SERVERS = {"tiny": {"command": [sys.executable, TINY]}}

adder = App("adder", tools=["tiny.add", "tiny.fail", "tiny.crash"])


@adder.main
async def _adder(sys: Sys, op: str, arguments: dict) -> object:
    try:
        return await sys.call_tool(op, arguments)
    except SyscallError as exc:
        return f"{type(exc).__name__}: {exc}"


def kernel(tmp_path: Path, servers: dict | None = None) -> Kernel:
    return Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, mcp_servers=SERVERS if servers is None else servers))


async def test_an_mcp_servers_tools_are_llmasos_tools_gated_by_caps(tmp_path):
    async with kernel(tmp_path) as k:
        assert "tiny.add" in REGISTRY.names() and "tiny.shout" in REGISTRY.names()
        assert (await k.run(adder, "tiny.add", {"a": 2, "b": 3})).value == 5
        schema = REGISTRY.get("tiny.add").parameters
        assert schema["additionalProperties"] is False and schema["required"] == ["a", "b"]
        call_schema([REGISTRY.get("tiny.add").schema])  # constrained decoding takes it as ours
        denied = await k.run(adder, "tiny.shout", {"text": "hi"})
        assert denied.value.startswith("PermissionDenied") and "tiny.shout" in denied.value
        async with k.session("test", caps={"tools": ["tiny.shout"]}) as s:
            assert await s.call_tool("tiny.shout", {"text": "hi"}) == "HI"
            assert [t["function"]["name"] for t in await s.tools()] == ["tiny.shout"]
    assert "tiny.add" not in REGISTRY.names()  # closed with the kernel


async def test_bad_arguments_and_failing_tools_are_typed_tool_errors(tmp_path):
    async with kernel(tmp_path) as k:
        for args, error in [({"a": "x", "b": 1}, "ToolArgumentsInvalid"), ({"a": 1}, "ToolArgumentsInvalid"),
                            ({"a": 1, "b": 2, "evil": "; rm -rf /"}, "ToolArgumentsInvalid")]:
            status = await k.run(adder, "tiny.add", args)
            assert status.state == "exited" and status.value.startswith(error), status.value
        failed = await k.run(adder, "tiny.fail", {"why": "nope"})
        assert failed.value.startswith("ToolFailed") and "tiny.fail" in failed.value


async def test_a_crashed_server_is_a_tool_error_and_the_kernel_goes_on(tmp_path):
    async with kernel(tmp_path) as k:
        crashed = await k.run(adder, "tiny.crash", {})
        assert crashed.state == "exited" and crashed.value.startswith("ToolFailed"), crashed.value
        with anyio.fail_after(10):
            while "tiny.add" in REGISTRY.names():  # its tools go with it
                await anyio.sleep(0.05)
        again = await k.run(adder, "tiny.add", {"a": 1, "b": 2})
        assert again.value.startswith("UnknownTool")
        assert (await k.run("echo", "still", "here")).value is not None
        (server,) = k.mcp
        assert server.error is not None


async def test_a_server_that_cannot_start_leaves_the_kernel_booted(tmp_path):
    async with kernel(tmp_path, {"gone": {"command": ["/no/such/program"]}}) as k:
        (server,) = k.mcp
        assert server.error and not server.tools
        assert (await k.run("echo", "ok")).state == "exited"


@pytest.mark.parametrize("servers, error", [
    ({"a.b": {"command": ["x"]}}, "name"),
    ({"../x": {"command": ["x"]}}, "name"),
    ({"x": {"command": "python server.py"}}, "list of 1 to 256"),
    ({"x": {"command": []}}, "list of 1 to 256"),
    ({"x": {"command": ["py\0thon"]}}, "list of 1 to 256"),
    ({"x": {"url": "file:///etc/passwd"}}, "http"),
    ({"x": {"url": "http://a", "command": ["x"]}}, "command"),
    ({"x": {}}, "command"),
    ({"x": {"command": ["x"], "headers": {"a": "b"}}}, "command"),
    ({"x": {"url": "http://a", "headers": {"X-Evil": "a\r\nInjected: yes"}}}, "newlines"),
    ({"x": {"url": "http://a", "headers": ["Authorization: x"]}}, "headers"),
    (["x"], "mapping"),
])
def test_hostile_mcp_registrations_are_refused(servers, error):
    with pytest.raises(ConfigError, match=error):
        KernelConfig(mcp_servers=servers)


def test_registrations_file_add_list_remove(tmp_path):
    mcp.register(tmp_path, "tiny", {"command": [sys.executable, TINY]})
    assert mcp.registered(tmp_path) == {"tiny": {"command": [sys.executable, TINY]}}
    assert oct(mcp.servers_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    assert mcp.unregister(tmp_path, "tiny") and not mcp.unregister(tmp_path, "tiny")
    mcp.servers_path(tmp_path).write_text("{broken")
    with pytest.raises(mcp.McpConfigError, match="unreadable"):
        mcp.registered(tmp_path)


async def test_the_kernel_starts_the_registered_servers_and_a_broken_file_does_not_stop_its_boot(tmp_path):
    mcp.register(tmp_path, "tiny", {"command": [sys.executable, TINY]})  # as `llmasos tools add-mcp` does
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        async with k.session("test") as s:
            assert await s.call_tool("tiny.add", {"a": 20, "b": 22}) == 42
    assert (tmp_path / "logs" / "mcp" / "tiny.log").exists()  # its stderr
    mcp.servers_path(tmp_path).write_text("{broken")
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        (broken,) = k.mcp
        assert "unreadable" in broken.error


def test_tool_names_from_a_server_are_made_safe():
    assert mcp.tool_name("srv", "read file/../x") == "srv.read_file_.._x"
    assert len(mcp.tool_name("srv", "x" * 500)) == 64
    with pytest.raises(ToolArgumentsInvalid):
        ToolArgumentsInvalid.__mro__  # (the error a bad call raises is a ToolError and InvalidArguments)
        raise ToolArgumentsInvalid("x")
    assert issubclass(ToolFailed, ToolError)


# == our MCP server, driven by the official SDK's client ===========================================

from mcp import Client, StdioServerParameters  # noqa: E402

from llmasos.api.mcp import create_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _text(result) -> str:
    return "".join(getattr(b, "text", "") for b in result.content)


async def test_the_official_client_lists_and_calls_our_tools_runs_an_app_and_reads_ps(tmp_path):
    async with kernel(tmp_path, {}) as k, Client(create_server(k)) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert {"calculator", "llmasos_run_app", "llmasos_ps"} <= set(names)
        assert _text(await client.call_tool("calculator", {"expression": "6*7"})) == "42"
        ran = await client.call_tool("llmasos_run_app", {"app": "echo", "args": ["hi", "there"]})
        assert not ran.is_error and ran.structured_content["result"]["state"] == "exited"
        assert "hi there" in ran.structured_content["result"]["output"]
        pid = await k.spawn("chat")  # (it waits for its stdin: alive while ps looks)
        rows = (await client.call_tool("llmasos_ps", {})).structured_content["result"]
        assert [(r["pid"], r["app"]) for r in rows] == [(pid, "chat")]
        resource = await client.read_resource("llmasos://ps")
        assert [(r["pid"], r["app"]) for r in json.loads(resource.contents[0].text)] == [(pid, "chat")]
        k.kill(pid)


@pytest.mark.parametrize("name, arguments, error", [
    ("no_such_tool", {}, "UnknownTool"),
    ("calculator", {"expression": "2**99999999"}, "Tool"),
    ("calculator", {"nope": 1}, "ToolArgumentsInvalid"),
    ("llmasos_run_app", {"app": "../../etc/passwd"}, "NoSuchApp"),
    ("llmasos_run_app", {"app": "echo", "args": "not a list"}, "InvalidArguments"),
    ("llmasos_run_app", {"app": "echo", "timeout": 10**9}, "InvalidArguments"),
    ("llmasos_run_app", {"app": "echo", "kwargs": {"bogus": 1}}, "InvalidArguments"),
])
async def test_hostile_calls_to_our_server_are_tool_errors(tmp_path, name, arguments, error):
    async with kernel(tmp_path, {}) as k, Client(create_server(k)) as client:
        result = await client.call_tool(name, arguments)
        assert result.is_error and error in _text(result), _text(result)
        assert _text(await client.call_tool("calculator", {"expression": "1+1"})) == "2"  # it goes on


async def test_llmasos_mcp_over_stdio_and_the_round_trip_through_our_own_client(tmp_path):
    command = [sys.executable, "-m", "llmasos.cli", "mcp", "--model", "fake"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLMASOS_HOME": str(tmp_path / "server-home")}
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(ROOT))
    async with Client(params) as client:  # the official client against `llmasos mcp`
        assert _text(await client.call_tool("calculator", {"expression": "2+3"})) == "5"
    roundtrip = App("roundtrip", tools=["os.calculator", "os.llmasos_run_app"])

    @roundtrip.main
    async def main(sys: Sys) -> list:
        ran = await sys.call_tool("os.llmasos_run_app", {"app": "echo", "args": ["via", "mcp"]})
        return [await sys.call_tool("os.calculator", {"expression": "6*7"}), ran["state"], ran["output"]]

    servers = {"os": {"command": ["env", f"PYTHONPATH={ROOT}", f"LLMASOS_HOME={tmp_path / 'server-home'}", *command]}}
    async with kernel(tmp_path / "client-home", servers) as k:  # our client against our server
        status = await k.run(roundtrip)
    assert status.state == "exited", status.error
    value, state, output = status.value
    assert value == 42 and state == "exited" and "via mcp" in output


def test_llmasos_serve_serves_mcp_at_slash_mcp_behind_its_token(tmp_path):
    from tests.daemon import daemon_env, start_daemon, stop_daemon

    env = daemon_env(tmp_path)
    daemon, url = start_daemon(env)
    try:
        token = (tmp_path / "api_token").read_text().strip()
        import httpx

        assert httpx.post(f"{url}/mcp/", json={}).status_code == 401
        assert httpx.post(f"{url}/mcp/", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401

        async def use() -> str:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
            async with http, Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as client:
                return _text(await client.call_tool("calculator", {"expression": "3*3"}))

        assert anyio.run(use) == "9"

        remote = App("remote", tools=["os.calculator"])

        @remote.main
        async def main(sys: Sys) -> object:
            return await sys.call_tool("os.calculator", {"expression": "5*5"})

        async def roundtrip() -> object:  # our client, over streamable HTTP, against our server
            servers = {"os": {"url": f"{url}/mcp/", "headers": {"Authorization": f"Bearer {token}"}}}
            async with kernel(tmp_path / "client", servers) as k:
                return (await k.run(remote)).value

        assert anyio.run(roundtrip) == 25
    finally:
        rc, err = stop_daemon(daemon)
    assert rc == 0, err


def test_tools_add_mcp_list_and_remove_from_the_command_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmasos.cli import cli

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(cli, ["tools", "add-mcp", "tiny", "--", sys.executable, TINY])
    assert added.exit_code == 0 and "tiny.add, tiny.shout" in added.output, added.output
    listed = runner.invoke(cli, ["tools", "list"])
    assert "calculator" in listed.output and "tiny.add" in listed.output and "mcp: tiny" in listed.output
    assert runner.invoke(cli, ["tools", "remove-mcp", "tiny"]).exit_code == 0
    assert mcp.registered(tmp_path) == {}
    for args, error in [(("add-mcp", "dead", "--", "/no/such/program"), "not registered"),
                        (("add-mcp", "x.y", "--", "true"), "name"),
                        (("add-mcp", "both", "--url", "http://a", "--", "true"), "either"),
                        (("add-mcp", "nothing"), "either"),
                        (("add-mcp", "h", "--header", "X: y", "--", "true"), "--header goes with --url"),
                        (("remove-mcp", "never"), "no MCP server named")]:
        r = runner.invoke(cli, ["tools", *args])
        assert r.exit_code == 2 and error in r.output, (args, r.output)
    assert mcp.registered(tmp_path) == {}


async def test_an_mcp_tools_schema_is_constrained_decoded_like_ours(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoTokenizer

    from llmasos.tools.grammar import ToolCallProcessor, lark_grammar

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    async with kernel(tmp_path) as k:
        add = REGISTRY.get("tiny.add")
        processor_grammar = lark_grammar([add.schema], "required")
        for seed in range(3):  # random logits, masked by the grammar: always a call the server accepts
            processor, gen, out = ToolCallProcessor(tok, processor_grammar), torch.Generator().manual_seed(seed), []
            for _ in range(400):
                token = int(torch.argmax(processor(out, torch.randn(len(tok), generator=gen) * 5)))
                if token == tok.eos_token_id:
                    break
                out.append(token)
            text = tok.decode(out)
            assert text.endswith("</tool_call>"), text
            call = json.loads(text[len("<tool_call>"):-len("</tool_call>")])
            assert call["name"] == "tiny.add" and set(call["arguments"]) == {"a", "b"}
            async with k.session("test", caps={"tools": ["tiny.add"]}) as s:
                assert await s.call_tool("tiny.add", call["arguments"]) == call["arguments"]["a"] + call["arguments"]["b"]
