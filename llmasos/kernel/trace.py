"""Syscall trace events: what strace streams and top summarises.

Rule: tracing must cost almost nothing when nobody watches. An event keeps references to the call and
its result; they are formatted only when shown.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One completed syscall."""

    pid: int
    n: int  # the process's syscall number, from 1
    call: Any  # the Syscall value
    result: Any = None
    error: BaseException | None = None
    start: float = 0.0  # perf_counter
    duration: float = 0.0

    def format(self) -> str:
        """strace style: ``generate(prompt='hi', max_tokens=20) = 'Hello' <0.120s>``."""
        fields = dataclasses.fields(self.call) if dataclasses.is_dataclass(self.call) else ()
        args = ", ".join(f"{f.name}={_repr.repr(getattr(self.call, f.name))}" for f in fields)
        outcome = f"{type(self.error).__name__}: {self.error}" if self.error else _repr.repr(self.result)
        return f"[{self.pid}] {self.call.name}({args}) = {outcome} <{self.duration:.4f}s>"


class TraceBus:
    """Fan-out of trace events to live subscribers (strace of one pid, or of all)."""

    def __init__(self) -> None:
        self._subs: dict[int | None, list[MemoryObjectSendStream[TraceEvent]]] = {}

    def __bool__(self) -> bool:
        return bool(self._subs)

    def subscribe(self, pid: int | None = None) -> MemoryObjectReceiveStream[TraceEvent]:
        """A stream of events for pid (None: every process). Close it to unsubscribe."""
        send, recv = anyio.create_memory_object_stream[TraceEvent](math.inf)
        self._subs.setdefault(pid, []).append(send)
        return recv

    def emit(self, event: TraceEvent) -> None:
        for key in (event.pid, None):
            subs = self._subs.get(key)
            if not subs:
                continue
            for send in list(subs):
                try:
                    send.send_nowait(event)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    subs.remove(send)
                    send.close()  # the subscriber left; close our end too
            if not subs:
                del self._subs[key]

    def close(self) -> None:
        for subs in self._subs.values():
            for send in subs:
                send.close()
        self._subs.clear()
