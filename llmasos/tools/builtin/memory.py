"""memory tools: the memory syscalls, offered to the model (key-value memory and long-term notes).

Rule: a memory tool runs inside the call_tool syscall that invoked it, so it does not make syscalls of
its own (that would shift the journal's syscall positions on replay). It runs the memory handler
inline, after the same capability check the chokepoint would make: the namespace must be the
process's own or one it holds. The enclosing call_tool's idempotency key covers the write.
"""

from __future__ import annotations

from typing import Any

from llmasos.syscalls import calls as c
from llmasos.tools.registry import ToolContext, tool


async def _inline(ctx: ToolContext, call: c.Syscall) -> Any:
    if ctx.kernel is None or ctx.proc is None:
        raise RuntimeError("memory tools run only inside a process: call them through sys.call_tool")
    from llmasos.kernel import caps
    from llmasos.kernel.table import TABLE

    caps.check(ctx.proc, call)
    return await TABLE[type(call)](ctx.kernel, ctx.proc, call)


@tool(timeout=10.0)
async def memory_get(key: str, namespace: str | None = None, ctx: ToolContext = None) -> Any:  # type: ignore[assignment]
    """Read the value saved under a key in memory.

    Args:
        key: the key to read
        namespace: a shared namespace; leave it out for your own
    """
    return await _inline(ctx, c.MemGet(key, None, namespace))


@tool(timeout=10.0)
async def memory_set(key: str, value: str, namespace: str | None = None,
                     ctx: ToolContext = None) -> dict[str, str]:  # type: ignore[assignment]
    """Save a value under a key in memory (it replaces what was there).

    Args:
        key: the key to write
        value: the text to save
        namespace: a shared namespace; leave it out for your own
    """
    await _inline(ctx, c.MemSet(key, value, namespace))
    return {"saved": key}


@tool(timeout=10.0)
async def remember(text: str, ctx: ToolContext = None) -> dict[str, int]:  # type: ignore[assignment]
    """Keep a note in long-term memory, to find later with recall.

    Args:
        text: the note
    """
    return {"note": await _inline(ctx, c.Remember(text))}


@tool(timeout=10.0)
async def recall(query: str, k: int = 3, ctx: ToolContext = None) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Search long-term memory for the notes that best match a query.

    Args:
        query: words to look for
        k: how many notes to return
    """
    notes = await _inline(ctx, c.Search(query, max(1, min(k, 20))))
    return [{"text": n.text, "tags": list(n.tags), "score": round(n.score, 3)} for n in notes]
