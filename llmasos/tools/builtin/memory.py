"""memory tools: the memory syscalls, offered to the model (key-value memory and long-term notes).

Rule: a memory tool uses the calling process's port (``ctx.memory``), nothing else: each read or write
is a syscall of that process made inside its call_tool, so the chokepoint checks the namespace against
its caps, traces it and journals it (a replay of the call_tool skips it; a call_tool re-issued after a
crash replays the writes it had already made).
"""

from __future__ import annotations

from typing import Any

from llmasos.tools.limits import TOOL_LIMITS
from llmasos.tools.registry import ToolContext, tool


@tool(timeout=10.0)
async def memory_get(key: str, namespace: str | None = None, ctx: ToolContext = None) -> Any:  # type: ignore[assignment]
    """Read the value saved under a key in memory.

    Args:
        key: the key to read
        namespace: a shared namespace; leave it out for your own
    """
    return await ctx.memory.get(key, None, namespace=namespace)


@tool(timeout=10.0)
async def memory_set(key: str, value: str, namespace: str | None = None,
                     ctx: ToolContext = None) -> dict[str, str]:  # type: ignore[assignment]
    """Save a value under a key in memory (it replaces what was there).

    Args:
        key: the key to write
        value: the text to save
        namespace: a shared namespace; leave it out for your own
    """
    await ctx.memory.set(key, value, namespace=namespace)
    return {"saved": key}


@tool(timeout=10.0)
async def remember(text: str, ctx: ToolContext = None) -> dict[str, int]:  # type: ignore[assignment]
    """Keep a note in long-term memory, to find later with recall.

    Args:
        text: the note
    """
    return {"note": await ctx.memory.remember(text)}


@tool(timeout=10.0)
async def recall(query: str, k: int = 3, ctx: ToolContext = None) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Search long-term memory for the notes that best match a query.

    Args:
        query: words to look for
        k: how many notes to return
    """
    notes = await ctx.memory.search(query, max(1, min(k, TOOL_LIMITS.recall_notes)))
    return [{"text": n.text, "tags": list(n.tags), "score": round(n.score, 3)} for n in notes]
