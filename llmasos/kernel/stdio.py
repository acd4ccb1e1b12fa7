"""The root user's ipc and stdio: messages and stdin lines into a process, its output out of it.

Rule: a mixin of ``Kernel`` (kernel.py), kept apart so the kernel file stays the process table and the
chokepoint. Writes are persisted by the kernel's durability interface before they are acknowledged
when the caller awaits the returned receipt (the root's send and stdin syscalls do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.syscalls.errors import MailboxFull, NoSuchProcess
from llmasos.syscalls.types import Message

if TYPE_CHECKING:
    from llmasos.kernel.config import KernelConfig
    from llmasos.kernel.journal import Durability
    from llmasos.kernel.proc import Process
    from llmasos.memory.receipt import Receipt


class Stdio:
    """Kernel methods for ipc and stdio from the root user (the process routes, the shell)."""

    config: KernelConfig
    durability: Durability

    if TYPE_CHECKING:  # (Kernel's)
        def get(self, pid: int) -> Process: ...

    def send(self, pid: int, body: Any, sender: int = 0) -> Receipt:
        """Put a message in pid's mailbox. ``await`` the result to return once it is committed (the send
        syscall does): a message the database cannot write fails there."""
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(f"process {pid} has ended; it cannot receive messages")
        box = proc.get_mailbox()
        if len(box.items) >= self.config.mailbox_size:
            raise MailboxFull(f"process {pid} has {len(box.items)} unread messages; try again later")
        message = Message(sender, body)
        receipt = self.durability.message_sent(pid, message)  # persisted until a recv takes it
        box.put(message)
        return receipt

    def write_stdin(self, pid: int, text: str) -> Receipt:
        """Feed text to pid's stdin (a line per newline). ``await`` the result to return once the lines
        are committed (the stdin syscall does)."""
        proc = self.get(pid)
        if not proc.alive:
            raise NoSuchProcess(f"process {pid} has ended; its stdin is closed")
        stdin = proc.get_stdin()
        lines = text.splitlines(keepends=True)
        receipt = self.durability.stdin_written(pid, lines)  # persisted until a readline takes each
        for line in lines:
            stdin.put(line)
        return receipt

    def close_stdin(self, pid: int) -> None:
        """End of input for pid: its next read returns None."""
        self.get(pid).get_stdin().close()

    def output(self, pid: int) -> list[tuple[str, str]]:
        """The stdout/stderr chunks pid wrote that are still kept, oldest first."""
        proc = self.get(pid)
        return list(proc.output.chunks) if proc.output is not None else []

    async def follow(self, pid: int, *, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        """Yield (stream, text) as pid writes, until it ends; with history, what it wrote before."""
        proc = self.get(pid)
        out = proc.get_output(self.config.stdout_lines)
        # Invariant: the history snapshot and the subscription are taken together, so no chunk written
        # while the history is being yielded is lost or repeated.
        before = list(out.chunks) if history else []
        send, recv = anyio.create_memory_object_stream[tuple[str, str]](self.config.stdout_lines)
        if proc.alive:
            out.followers.append(send)
        else:
            send.close()
        try:
            with recv:
                for chunk in before:
                    yield chunk
                async for chunk in recv:
                    yield chunk
        finally:  # the follower left (or was dropped): never leave our end open
            if send in out.followers:
                out.followers.remove(send)
            send.close()
