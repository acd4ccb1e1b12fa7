"""A tiny MCP server written with the official SDK, for tests/tools/test_mcp.py (run over stdio)."""

from __future__ import annotations

import os
from mcp.server.mcpserver import MCPServer
server = MCPServer("tiny")

@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

@server.tool()
def shout(text: str) -> str:
    """Upper-case text."""
    return text.upper()

@server.tool()
def fail(why: str) -> str:
    """Always fails."""
    raise ValueError(why)

@server.tool()
def crash() -> str:
    """Kills the server."""
    os._exit(3)

if __name__ == "__main__":
    server.run("stdio")
