"""memory tools: the memory syscalls offered to the model, under the same namespace capability."""

from __future__ import annotations

from llmasos import App
from llmasos.syscalls.errors import PermissionDenied, ToolError
from tests.conftest import make_kernel

app = App("memo", tools=["memory_get", "memory_set", "remember", "recall"], memory=["team"])


@app.main
async def main(sys) -> dict:
    out = {}
    out["set"] = await sys.call_tool("memory_set", key="colour", value="blue")
    out["get"] = await sys.call_tool("memory_get", key="colour")
    out["mine"] = await sys.memory.get("colour")  # the same namespace as the syscalls use
    await sys.call_tool("memory_set", key="k", value="v", namespace="team")
    out["team"] = await sys.call_tool("memory_get", key="k", namespace="team")
    try:
        await sys.call_tool("memory_get", key="k", namespace="secret")
    except (PermissionDenied, ToolError) as exc:
        out["denied"] = type(exc).__name__
    await sys.call_tool("remember", text="the launch code is tulip")
    out["recall"] = await sys.call_tool("recall", query="launch code")
    return out


async def test_memory_tools(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        status = await k.run(app)
    assert status.ok, status.error
    out = status.value
    assert out["get"] == "blue" and out["mine"] == "blue" and out["team"] == "v"
    assert out["denied"] == "PermissionDenied"
    assert "tulip" in out["recall"][0]["text"]
