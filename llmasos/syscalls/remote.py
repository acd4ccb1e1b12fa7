"""The Sys of a sandboxed app: the same methods, each syscall sent to the kernel over a channel.

Rule: a sandboxed app runs in its own OS process (``llmasos/sandbox/child.py``) and holds no kernel
object at all: ``RemoteSys`` is a ``Sys`` whose ``_kernel`` and ``_proc`` are None and whose traps go
through a ``Channel`` (a socket to the kernel, which passes each call through ``Kernel.syscall`` as the
process the child belongs to). What the app can do is exactly what its syscalls can do.
"""

from __future__ import annotations

from typing import Any, Protocol

from llmasos.syscalls import calls as c
from llmasos.syscalls.sys import Sys
from llmasos.syscalls.types import Completion, ReplyStream


class Channel(Protocol):
    """The child's end of the connection to the kernel."""

    async def call(self, call: c.Syscall) -> Any:
        """The result of call (a stream id for a streamed generate); its SyscallError raised here."""

    async def next(self, sid: int) -> tuple[str | None, Completion | None]:
        """The next chunk of stream sid (None at its end) and its completion once known."""

    def close(self, sid: int) -> None:
        """Stop stream sid early (the message is queued: no await)."""


class RemoteSys(Sys):
    """``Sys`` over a channel: what a sandboxed app's main gets."""

    __slots__ = ("_channel", "_pid")

    def __init__(self, channel: Channel, pid: int) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]  # (no kernel, no process record here)
        self._channel, self._pid = channel, pid

    async def _trap(self, call: c.Syscall) -> Any:
        result = await self._channel.call(call)
        if isinstance(call, c.Generate) and call.stream:
            return RemoteStream(self._channel, result)
        return result

    async def syscall(self, call: c.Syscall) -> Any:
        """Make the syscall call as this process (through the kernel)."""
        return await self._trap(call)

    @property
    def pid(self) -> int:
        return self._pid


class RemoteStream(ReplyStream):
    """A streamed generate whose chunks come from the kernel as the app asks for them."""

    def __init__(self, channel: Channel, sid: int) -> None:
        self._channel, self._sid = channel, sid
        self._done = False
        self.completion: Completion | None = None

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        text, completion = await self._channel.next(self._sid)
        if completion is not None:
            self.completion = completion
        if text is None:
            self._done = True
            raise StopAsyncIteration
        return text

    def close(self) -> None:
        """Stop generating early (the kernel frees the sequence)."""
        if not self._done:
            self._done = True
            self._channel.close(self._sid)

    async def aclose(self) -> None:
        self.close()
