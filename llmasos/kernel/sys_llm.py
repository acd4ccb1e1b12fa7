"""Handlers for the model syscalls.

Rule: the handler prepares and queues the request; the LLM loop batches it with everyone else's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.syscalls import calls as c

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process


async def sys_generate(k: Kernel, p: Process, call: c.Generate) -> Any:
    stream = k.submit(p, call)
    if call.stream:
        return stream
    return await stream.collect()


HANDLERS = {c.Generate: sys_generate}
