"""The bounds the built-in tools enforce, in one validated record.

Rule: a built-in tool reads its bounds from ``TOOL_LIMITS``, never from a constant of its own, so what
one call may read, write or compute is bounded and each bound is documented once: here and in
docs/tools.md's table (a test keeps the two equal). The values are read when a tool runs, except
``expression_chars``, which the calculator's schema takes when its module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """Bounds of the built-in tools."""

    read_chars: int = 256 * 1024  # files: characters one read returns (the rest is cut, "truncated": true)
    write_chars: int = 1024 * 1024  # files: characters one write may write
    list_entries: int = 500  # files: entries one list returns (the first, by name)
    expression_chars: int = 300  # calculator: characters in an expression
    max_exponent: int = 10_000  # calculator: |b| in a ** b
    max_magnitude: float = 1e300  # calculator: a larger result (or intermediate value) is refused
    max_depth: int = 50  # calculator: nesting of the expression tree
    result_chars: int = 100_000  # any tool: characters of JSON one result may take (the model reads it)
    default_timeout: float = 30.0  # any tool: seconds a call may take unless the tool or the call says
    recall_notes: int = 20  # recall: notes one search may return
    mcp_start_seconds: float = 20.0  # MCP: seconds a server may take to start and list its tools
    mcp_ping_seconds: float = 2.0  # MCP: after a failed call, seconds the server has to answer a ping, or
    # it counts as dead (its tools are removed)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
                raise ValueError(f"ToolLimits.{f.name} must be a number of at least 1, not {value!r}")


TOOL_LIMITS = ToolLimits()
"""The limits the built-in tools enforce."""
