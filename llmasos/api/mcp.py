"""The kernel as an MCP server: its tools, its apps as "run and wait" tools, and read-only process info,
so MCP clients (desktop assistants, IDEs) can drive llmasos.

    server = create_server(kernel)           # the official SDK's low-level Server
    await run_stdio(kernel)                  # `llmasos mcp`: the protocol on stdin/stdout
    mount(api, kernel, token)                # `llmasos serve`: streamable HTTP at /mcp, same token

Rule: one door. A tool call is a ``call_tool`` syscall of its own request process
(``kernel.session("mcp")``, holding ``KernelConfig.request_caps``), so caps, budgets, the journal and the
trace apply; the tool list is that process's ``list_tools``. ``llmasos_run_app`` spawns an app as the
root process does for the CLI (``LocalClient.spawn``, the app's manifest caps) and waits for it;
``llmasos_ps`` and the ``llmasos://ps`` resource read the process table through ``LocalClient.ps``. Any
error is an MCP tool error with the kernel's message, never a crash of the server.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server

from llmasos.client.local import LocalClient
from llmasos.errors import LlmasosError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from llmasos.client.kernel import Kernel

FACE = "mcp"
RUN_APP = "llmasos_run_app"
PS = "llmasos_ps"
PS_URI = "llmasos://ps"
OUTPUT_CHARS = 20_000  # characters of a run app's output returned with its exit value (the tail)

_RUN_APP_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["app"],
    "properties": {
        "app": {"type": "string", "maxLength": 200, "description": "The app's name (see llmasos_ps or `llmasos apps`)"},
        "args": {"type": "array", "maxItems": 64, "description": "Positional arguments of its main"},
        "kwargs": {"type": "object", "description": "Keyword arguments of its main"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "Seconds to wait before it is killed (default 600)"},
    },
}
_RESULT = {"type": "object", "properties": {"result": {}}, "required": ["result"]}
"""Every tool's structured result is {"result": value}: any JSON value keeps its type across (a number
stays a number), the way the SDK's own servers wrap a plain value."""
_PS_SCHEMA = {"type": "object", "additionalProperties": False,
              "properties": {"all": {"type": "boolean", "description": "Include ended processes"}}}


def create_server(kernel: Kernel) -> Server:
    """An MCP server over a booted kernel."""
    local = LocalClient(kernel)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        async with kernel.session(FACE) as sys:
            schemas = await sys.tools()
        tools = [types.Tool(name=s["function"]["name"], description=s["function"].get("description") or "",
                            input_schema=s["function"]["parameters"], output_schema=_RESULT) for s in schemas]
        apps = ", ".join(a.name for a in await local.apps())
        tools.append(types.Tool(name=RUN_APP, input_schema=_RUN_APP_SCHEMA, output_schema=_RESULT,
                                description=f"Run an llmasos app as a process, wait for it to end, and return its "
                                            f"exit value and output. Apps: {apps}"))
        tools.append(types.Tool(name=PS, input_schema=_PS_SCHEMA, output_schema=_RESULT,
                                description="List the kernel's processes (read-only): pid, app, state, usage"))
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        arguments = params.arguments or {}
        try:
            if params.name == RUN_APP:
                value = await _run_app(local, arguments)
            elif params.name == PS:
                value = await _ps(local, bool(arguments.get("all", False)))
            else:
                async with kernel.session(FACE) as sys:
                    value = await sys.call_tool(params.name, arguments)
        except LlmasosError as exc:
            return types.CallToolResult(content=[types.TextContent(type="text", text=f"{type(exc).__name__}: {exc}")],
                                        is_error=True)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content={"result": value})

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(
            uri=PS_URI, name="ps", description="The kernel's processes, live and ended (JSON)",
            mime_type="application/json")])

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        if str(params.uri) != PS_URI:
            from mcp.shared.exceptions import MCPError

            raise MCPError(code=types.INVALID_PARAMS, message=f"no resource {params.uri}; there is {PS_URI}")
        rows = await _ps(local, True)
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=PS_URI, mime_type="application/json", text=json.dumps(rows, default=str))])

    return Server("llmasos", instructions="The llmasos kernel: its tools, its apps (llmasos_run_app) and its "
                                          "processes (llmasos_ps, llmasos://ps).",
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_read_resource=read_resource)


async def _run_app(local: LocalClient, arguments: dict[str, Any]) -> dict[str, Any]:
    from llmasos.syscalls.errors import InvalidArguments

    app, args, kwargs = arguments.get("app"), arguments.get("args", []), arguments.get("kwargs", {})
    timeout = arguments.get("timeout", 600)
    if not isinstance(app, str) or not isinstance(args, list) or not isinstance(kwargs, dict) or isinstance(
            timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise InvalidArguments(f"{RUN_APP} takes app (a name), args (a list), kwargs (an object) and timeout "
                               "(seconds, up to 3600)")
    pid = await local.spawn(app, args, kwargs)
    with anyio.move_on_after(timeout) as waited:
        await local.ended(pid)
    if waited.cancelled_caught:
        await local.kill(pid)
    output = "".join(text for _stream, text in await local.output(pid))
    status = await local.wait(pid)
    return {"pid": pid, "state": status.state, "value": status.value, "error": status.error,
            "output": output[-OUTPUT_CHARS:]}


async def _ps(local: LocalClient, all: bool) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(dataclasses.asdict(p), default=str)) for p in await local.ps(all)]


async def run_stdio(kernel: Kernel) -> None:
    """Serve the MCP protocol on this process's stdin and stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = create_server(kernel)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def mount(api: FastAPI, kernel: Kernel, token: str) -> Any:
    """Serve MCP over streamable HTTP at /mcp on api, behind the same bearer token; the session manager
    whose ``run()`` must be entered while the API serves."""
    server = create_server(kernel)
    app = server.streamable_http_app(streamable_http_path="/")
    api.mount("/mcp", _Bearer(app, token))
    return server.session_manager


class _Bearer:
    """ASGI: a request without ``Authorization: Bearer <token>`` gets 401 before it reaches MCP."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                body = json.dumps({"error": {"message": "this endpoint needs `Authorization: Bearer <token>` "
                                                        "(the daemon's $LLMASOS_HOME/api_token)",
                                             "type": "unauthorized"}}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
