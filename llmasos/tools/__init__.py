"""Tools: the registry (``@tool``), the built-in tools, constrained tool calling and the agent loop.

Rule: a tool is a typed Python function; everything the model and the kernel need (name, description,
JSON Schema, timeout) is derived from it. Processes reach tools only through syscalls
(``sys.call_tool``, ``sys.tools``, ``sys.generate(tools=...)``, ``sys.agent``), so capabilities hold.
"""

from llmasos.tools.errors import (
    PathOutsideJail, ToolArgumentsInvalid, ToolError, ToolFailed, ToolResultInvalid, ToolTimeout, UnknownTool,
)
from llmasos.tools.limits import ToolLimits
from llmasos.tools.registry import REGISTRY, Tool, ToolContext, ToolRegistry, tool

__all__ = [
    "REGISTRY", "PathOutsideJail", "Tool", "ToolArgumentsInvalid", "ToolContext", "ToolError", "ToolFailed",
    "ToolLimits", "ToolRegistry", "ToolResultInvalid", "ToolTimeout", "UnknownTool", "tool",
]
