"""The one thread that runs the model: loading, weight packing and every engine step.

Rule: PyTorch's CPU kernels parallelise with OpenMP, and every thread that starts a parallel region
gets an OpenMP team of its own. Once a process has two such teams on a machine with few cores,
libgomp manages more threads than there are CPUs and stops spinning between parallel regions: its
threads sleep and are woken hundreds of times per forward step. Measured here (2 cores), the same
32-sequence decode ran 25-40 % slower with ~700 extra context switches per step as soon as a second
thread had touched the model. So the model is only ever run on this thread, and the event loop only
waits for it (``await run(...)``); ``call`` does the same for synchronous callers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmasos-model")
_ident: int | None = None


def _mark() -> int:
    global _ident
    _ident = threading.get_ident()
    return _ident


def model_thread_id() -> int:
    """The model thread's identifier (the thread is started on first use)."""
    return _ident if _ident is not None else _pool.submit(_mark).result()


def on_model_thread() -> bool:
    return threading.get_ident() == model_thread_id()


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn on the model thread and return its result (inline when already there)."""
    if on_model_thread():
        return fn(*args, **kwargs)
    return _pool.submit(fn, *args, **kwargs).result()


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Await fn on the model thread; the event loop stays free while it runs."""
    if on_model_thread():  # an event loop running on the model thread itself
        return fn(*args, **kwargs)
    future = _pool.submit(fn, *args, **kwargs)
    # Invariant: a cancelled caller still waits for the step to end, so the engine is never left
    # mid-step with a caller that believes it stopped.
    with anyio.CancelScope(shield=True):
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): a worker thread waits for the result
            return await anyio.to_thread.run_sync(future.result)
        # asyncio: the model thread wakes the loop itself when it finishes, with no thread between
        # (a waiting worker thread cost ~0.3 ms a step here: two more wake-ups, on 2 busy cores)
        return await asyncio.wrap_future(future)


__all__ = ["call", "model_thread_id", "on_model_thread", "run"]
