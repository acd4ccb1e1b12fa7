"""sys.call_tool and sys.tools through the kernel: every failure is a ToolError in the process."""

from __future__ import annotations

import time

import anyio
import pytest

from llmasos import App
from llmasos.syscalls.errors import PermissionDenied, ToolError
from llmasos.tools import REGISTRY, ToolArgumentsInvalid, ToolFailed, ToolResultInvalid, ToolTimeout, UnknownTool, tool
from tests.conftest import make_kernel


@tool(name="t_boom")
def _boom(x: int = 0) -> int:
    """Always fails."""
    raise RuntimeError("kaput")


@tool(name="t_slow_sync", timeout=0.2)
def _slow_sync() -> str:
    time.sleep(1.0)
    return "late"


@tool(name="t_slow_async")
async def _slow_async(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "done"


@tool(name="t_weird")
def _weird() -> object:
    return {"a": {1, 2}}


def _runner(tools: list[str]) -> App:
    app = App("runner", tools=tools)

    @app.main
    async def main(sys, name: str, args: dict, timeout: float | None = None) -> object:
        try:
            return await sys.call_tool(name, args, timeout=timeout)
        except ToolError as exc:
            return exc
        except PermissionDenied as exc:
            return exc

    return app


ALL = ["calculator", "files", "t_boom", "t_slow_sync", "t_slow_async", "t_weird", "nope"]


async def _call(tmp_path, name: str, args: dict, timeout: float | None = None, tools=ALL) -> object:
    async with make_kernel(tmp_path) as k:
        status = await k.run(_runner(tools), name, args, timeout)
        assert status.ok, status.error  # the process (and kernel) survived
        return status.value


async def test_call_tool_returns_the_result(tmp_path) -> None:
    assert await _call(tmp_path, "calculator", {"expression": "17 * 23"}) == 391


async def test_unknown_tool(tmp_path) -> None:
    assert isinstance(await _call(tmp_path, "nope", {}), UnknownTool)


@pytest.mark.parametrize("args", [{"expression": 5}, {}, {"expression": "1", "extra": 1}])
async def test_wrong_missing_extra_arguments(tmp_path, args: dict) -> None:
    err = await _call(tmp_path, "calculator", args)
    assert isinstance(err, ToolArgumentsInvalid) and "expression" in str(err)


async def test_tool_raising_becomes_tool_error(tmp_path) -> None:
    err = await _call(tmp_path, "t_boom", {})
    assert isinstance(err, ToolFailed) and "kaput" in str(err)


async def test_sync_tool_timing_out(tmp_path) -> None:
    t0 = time.monotonic()
    assert isinstance(await _call(tmp_path, "t_slow_sync", {}), ToolTimeout)
    assert time.monotonic() - t0 < 0.9


async def test_async_tool_per_call_timeout(tmp_path) -> None:
    assert isinstance(await _call(tmp_path, "t_slow_async", {"seconds": 5}, timeout=0.1), ToolTimeout)
    assert await _call(tmp_path, "t_slow_async", {"seconds": 0}, timeout=1) == "done"


async def test_result_not_json_serialisable(tmp_path) -> None:
    assert isinstance(await _call(tmp_path, "t_weird", {}), ToolResultInvalid)


async def test_tool_not_held_is_denied(tmp_path) -> None:
    err = await _call(tmp_path, "t_boom", {}, tools=["calculator"])
    assert isinstance(err, PermissionDenied) and "t_boom" in str(err)


async def test_files_tool_is_jailed_per_process(tmp_path) -> None:
    out = await _call(tmp_path, "files", {"action": "write", "path": "a.txt", "content": "hi"})
    assert out["written"] == 2
    [written] = (tmp_path / "procs").glob("*-1/a.txt")  # procs/<run>-<pid>
    assert written.read_text() == "hi"
    err = await _call(tmp_path, "files", {"action": "read", "path": "../1/a.txt"})
    assert isinstance(err, ToolError) and "'..'" in str(err)


async def test_sys_tools_lists_only_held_tools(tmp_path) -> None:
    app = App("lister", tools=["calculator", "clock"])

    @app.main
    async def main(sys) -> list:
        return [t["function"]["name"] for t in await sys.tools()]

    async with make_kernel(tmp_path) as k:
        assert (await k.run(app)).value == ["calculator", "clock"]


def test_test_tools_are_registered() -> None:
    assert "t_boom" in REGISTRY.names()
