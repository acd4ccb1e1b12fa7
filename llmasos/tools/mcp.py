"""Tools from MCP servers: each tool of a connected server becomes the llmasos tool ``SERVER.tool``.

Rule: an MCP tool is a tool like any other: registered in ``REGISTRY`` under ``server.tool``, offered
with its server's input schema closed (``additionalProperties: false``) so constrained decoding holds
the model to it, checked against that schema before the call, gated by a process's ``tools`` caps at
the chokepoint, and run through ``tools/invoke.py``. Whatever the server does (an error result, a crash,
a hang), the caller gets a ``ToolError``; the kernel is never crashed by it. Each server is served by
one task (``serve``) in the kernel's task group, which owns the connection (the official ``mcp`` SDK's
``Client``: stdio or streamable HTTP) from start to close. Registrations (``llmasos tools add-mcp``)
live in ``$LLMASOS_HOME/mcp.json`` (0600): ``{name: {"command": [...]} | {"url": "...", "headers": {...}}}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from llmasos.errors import LlmasosError
from llmasos.home import private_dir, private_file
from llmasos.tools.errors import ToolArgumentsInvalid, ToolFailed
from llmasos.tools.grammar import closed
from llmasos.tools.limits import TOOL_LIMITS
from llmasos.tools.registry import REGISTRY, Tool, ToolRegistry

SERVERS_FILE = "mcp.json"
_SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


class McpConfigError(LlmasosError):
    """An MCP server registration is malformed (name, command or URL)."""


def check_servers(servers: Any) -> dict[str, dict[str, Any]]:
    """servers ({name: {"command": [str, ...]} or {"url": "http(s)://..."}}), checked; McpConfigError."""
    if not isinstance(servers, dict):
        raise McpConfigError(f"MCP servers are a mapping of name to {{'command': [...]}} or {{'url': ...}}, "
                             f"not {type(servers).__name__}")
    out = {}
    for name, entry in servers.items():
        if not isinstance(name, str) or not _SERVER_NAME.match(name):
            raise McpConfigError(f"an MCP server's name is a word of letters, digits, '-' or '_' (1 to 32, a "
                                 f"letter first), not {name!r}: its tools are named NAME.tool")
        if not isinstance(entry, dict) or len({"command", "url"} & set(entry)) != 1 or set(entry) - {
                "command", "url", "headers"} or ("headers" in entry and "url" not in entry):
            raise McpConfigError(f"MCP server {name!r} is {{'command': [program, args...]}} or {{'url': ..., "
                                 "'headers': {...}}}")
        headers = entry.get("headers", {})
        if not isinstance(headers, dict) or len(headers) > 32 or not all(
                isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 200 and len(v) <= 8000
                and not any(c in k + v for c in "\r\n\0") for k, v in headers.items()):
            raise McpConfigError(f"MCP server {name!r}: headers are up to 32 'Name': 'value' strings, no newlines")
        command, url = entry.get("command"), entry.get("url")
        if command is not None and (not isinstance(command, list) or not command or not all(
                isinstance(a, str) and a and "\0" not in a for a in command) or len(command) > 256):
            raise McpConfigError(f"MCP server {name!r}: command is a list of 1 to 256 non-empty strings")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))
                                or len(url) > 2000):
            raise McpConfigError(f"MCP server {name!r}: url is an http(s) URL, not {url!r}")
        out[name] = dict(entry)
    return out


def servers_path(home: Path) -> Path:
    return Path(home) / SERVERS_FILE


def registered(home: Path) -> dict[str, dict[str, Any]]:
    """The servers registered under home (``llmasos tools add-mcp``); {} when there is no file."""
    path = servers_path(home)
    try:
        return check_servers(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise McpConfigError(f"{path} is unreadable ({exc}); fix it, or remove it and add the servers again") \
            from None


def register(home: Path, name: str, entry: dict[str, Any]) -> None:
    servers = registered(home)
    servers.update(check_servers({name: entry}))
    _save(home, servers)


def unregister(home: Path, name: str) -> bool:
    servers = registered(home)
    if servers.pop(name, None) is None:
        return False
    _save(home, servers)
    return True


def _save(home: Path, servers: dict[str, Any]) -> None:
    path = servers_path(home)
    private_dir(path.parent)
    tmp = private_file(path.with_suffix(".tmp"))
    tmp.write_text(json.dumps(servers, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class McpTool(Tool):
    """One tool of an MCP server, called through that server's connection."""

    def __init__(self, server: Server, remote: Any) -> None:
        self.server, self.remote_name = server, remote.name
        self.name = tool_name(server.name, remote.name)
        self.description = (remote.description or "")[:2000]
        self.timeout = TOOL_LIMITS.default_timeout
        self.is_async, self.context_param = True, None
        schema = remote.input_schema if isinstance(remote.input_schema, dict) else {}
        self._schema = closed({**schema, "type": "object"} if schema else {"type": "object", "properties": {}})
        self.source, self.file = f"mcp:{server.name}", None
        self.wrapped = False  # its result is {"result": value}, the SDK's wrapping of a plain value
        self.fn = self._call

    @property
    def parameters(self) -> dict[str, Any]:
        return self._schema

    def validate(self, arguments: dict[str, Any] | None) -> dict[str, Any]:
        import jsonschema

        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise ToolArgumentsInvalid(f"tool {self.name} takes an object of named arguments, "
                                       f"not {type(arguments).__name__}")
        try:
            jsonschema.validate(arguments, self._schema)
        except jsonschema.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path)) or "arguments"
            raise ToolArgumentsInvalid(f"tool {self.name}: {where}: {exc.message[:300]}") from None
        except jsonschema.SchemaError as exc:
            raise ToolFailed(f"tool {self.name}: its server gave an invalid schema: {exc.message[:300]}") from None
        return arguments

    async def _call(self, **arguments: Any) -> Any:
        return await self.server.call(self.remote_name, arguments, wrapped=self.wrapped)


def tool_name(server: str, remote: str) -> str:
    """``server.tool``, with characters a tool name cannot hold made '_' (64 characters at most)."""
    return f"{server}.{re.sub(r'[^A-Za-z0-9_.-]', '_', remote)}"[:64]


class Server:
    """One MCP server's connection, owned by the task running ``serve``."""

    def __init__(self, name: str, entry: dict[str, Any], registry: ToolRegistry = REGISTRY,
                 log: Path | None = None) -> None:
        self.name, self.entry, self.registry = name, entry, registry
        self.log = log  # where a stdio server's stderr goes (None: this process's stderr)
        self.client: Any = None
        self.tools: list[McpTool] = []
        self.error: str | None = None  # why it is not connected (it failed to start, or it died)
        self.ready = anyio.Event()
        self._stop = anyio.Event()

    def _target(self, errlog: Any) -> Any:
        if "url" in self.entry:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers=self.entry.get("headers") or {}, timeout=TOOL_LIMITS.default_timeout)
            return _closing(streamable_http_client(self.entry["url"], http_client=http), http)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        command, *args = self.entry["command"]
        return stdio_client(StdioServerParameters(command=command, args=args), errlog=errlog)

    async def serve(self) -> None:
        """Connect, register the server's tools, hold the connection until ``close``; never raises."""
        import sys

        from mcp import Client

        errlog = sys.stderr
        try:
            if self.log is not None and "command" in self.entry:
                private_dir(self.log.parent)
                errlog = open(private_file(self.log), "a", encoding="utf-8")  # noqa: SIM115 (closed below)
            async with Client(self._target(errlog), read_timeout_seconds=TOOL_LIMITS.default_timeout) as client:
                with anyio.fail_after(TOOL_LIMITS.mcp_start_seconds):
                    listed = await client.list_tools()
                self.client = client
                for remote in listed.tools:
                    t = McpTool(self, remote)
                    out = getattr(remote, "output_schema", None) or {}
                    t.wrapped = set((out.get("properties") or {})) == {"result"}  # a value the SDK wrapped
                    self.registry.register(t, replace=True)
                    self.tools.append(t)
                self.ready.set()
                await self._stop.wait()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # a server that fails or dies is this server's failure, no more
            self.error = f"{type(exc).__name__}: {_first_line(exc)}"
        finally:
            if errlog is not sys.stderr:
                errlog.close()
            self.client = None
            for t in self.tools:
                if self.registry._tools.get(t.name) is t:
                    self.registry.unregister(t.name)
            self.ready.set()

    def close(self) -> None:
        self._stop.set()

    async def _alive(self) -> bool:
        client = self.client
        if client is None:
            return False
        try:
            with anyio.fail_after(TOOL_LIMITS.mcp_ping_seconds):
                await client.send_ping()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException:
            return False
        return True

    async def call(self, tool: str, arguments: dict[str, Any], *, wrapped: bool = False) -> Any:
        """Call the server's tool; its structured result, its text, or ToolFailed."""
        client = self.client
        if client is None:
            raise ToolFailed(f"MCP server {self.name!r} is not connected ({self.error or 'closed'}); check it "
                             f"with `llmasos tools list`")
        try:
            result = await client.call_tool(tool, arguments)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            why = f"{type(exc).__name__}: {_first_line(exc)}"
            if not await self._alive():
                self.error = f"it stopped answering ({why})"
                self.close()  # its tools go; the kernel goes on
            raise ToolFailed(f"MCP server {self.name!r} failed on {tool}: {why}") from None
        texts = [getattr(b, "text", None) for b in result.content]
        text = "\n".join(t for t in texts if t is not None)
        if result.is_error:
            raise ToolFailed(f"MCP tool {self.name}.{tool} failed: {text[:1000] or 'no message'}")
        if result.structured_content is not None:
            content = result.structured_content
            return content["result"] if wrapped and isinstance(content, dict) and "result" in content else content
        return text if all(t is not None for t in texts) else [b.model_dump(mode="json") for b in result.content]


async def start(tg: anyio.abc.TaskGroup, servers: dict[str, dict[str, Any]],
                registry: ToolRegistry = REGISTRY, logs: Path | None = None) -> list[Server]:
    """Start a task per server in tg and wait until each is connected or failed (at most
    ``mcp_start_seconds``); a server that fails is reported in its ``error``, the others go on."""
    started = [Server(name, entry, registry, logs / f"{name}.log" if logs is not None else None)
               for name, entry in check_servers(servers).items()]
    for s in started:
        tg.start_soon(s.serve, name=f"llmasos mcp {s.name}")
    with anyio.move_on_after(TOOL_LIMITS.mcp_start_seconds):
        for s in started:
            await s.ready.wait()
    for s in started:
        if not s.ready.is_set():
            s.error = f"did not answer within {TOOL_LIMITS.mcp_start_seconds}s (ToolLimits.mcp_start_seconds)"
            s.close()
    return started


async def boot(tg: anyio.abc.TaskGroup, servers: dict[str, dict[str, Any]] | None, home: Path) -> list[Server]:
    """The kernel's MCP servers started: servers, or (None) the ones registered under home. A broken
    registrations file is reported as a server that failed (``error``), never a failed boot."""
    if servers is None:  # (a stdio server's stderr: $home/logs/mcp/NAME.log)
        try:
            servers = registered(home)
        except McpConfigError as exc:
            broken = Server(SERVERS_FILE, {})
            broken.error = str(exc)
            return [broken]
    return await start(tg, servers, logs=Path(home) / "logs" / "mcp") if servers else []


@asynccontextmanager
async def _closing(transport: Any, http: Any) -> AsyncIterator[Any]:
    """transport, and the HTTP client it was given closed after it."""
    async with http, transport as streams:
        yield streams


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_first_line(e) for e in exc.exceptions)[:500]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
