"""What every face needs from a kernel: one small async interface, ``KernelClient``, and its records.

Rule: faces (the shell, the CLI, the HTTP API) talk to a kernel only through ``KernelClient``, so the
same code drives a kernel in this process (``client.local.LocalClient``) or a daemon over the HTTP
syscall API (``client.remote.RemoteClient``). Every method is async and returns plain records
(``ProcInfo``, ``ExitStatus``, the rows below), never kernel internals; failures are ``LlmasosError``
with a message meant for the user. This module imports nothing of the kernel.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmasos.errors import LlmasosError
from llmasos.syscalls.types import ExitStatus, ProcInfo


class NotAvailable(LlmasosError):
    """This kernel (or this build of llmasos) does not offer what the command needs yet."""


@dataclass(frozen=True, slots=True)
class AppRow:
    """One line of `apps`."""

    name: str
    usage: str
    description: str
    source: str


@dataclass(frozen=True, slots=True)
class Row:
    """A generic (name, description, extra) line: tools, models."""

    name: str
    description: str = ""
    extra: str = ""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The model side of `top`: counters are totals since boot; rates are computed by the caller."""

    engine: str
    policy: str
    max_batch: int
    last_batch: int  # sequences in the latest forward step
    running: int  # admitted sequences (hold a KV cache)
    waiting: int  # queued, not yet admitted
    steps: int
    tokens: int
    busy_time: float  # seconds spent in forward steps
    resident_tokens: int
    max_resident_tokens: int
    uptime: float
    # The engine's prefix cache (prompt prefixes prefilled once and shared; engine/prefix.py), all 0
    # when it has none: blocks and tokens held now (the tokens are part of resident_tokens), blocks
    # two or more live sequences share now, and the share of prompt tokens it served since boot.
    prefix_blocks: int = 0
    prefix_tokens: int = 0
    prefix_shared: int = 0
    prefix_hit_rate: float = 0.0
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One loaded model, for the shell's `models` and `top`: counters are totals since boot."""

    name: str  # its name in the model table (generate's model=, the OpenAI endpoint's "model")
    engine: str  # the engine's own name for it
    kind: str  # local, remote, fake, or the engine's class
    policy: str
    default: bool  # a generate naming no model uses it
    context_window: int
    max_batch: int
    last_batch: int
    running: int
    waiting: int
    steps: int
    tokens: int
    busy_time: float
    uptime: float
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class MemView:
    """What `mem PID` shows: the process's context messages and its memory keys."""

    context: list[dict[str, Any]]
    keys: dict[str, list[str]]  # namespace -> keys
    note: str = ""  # why a part is missing, when it is


@runtime_checkable
class KernelClient(Protocol):
    """A face's view of a kernel."""

    remote: bool  # True when the kernel is a daemon the face only connects to
    where: str  # "in-process" or the daemon's URL

    async def apps(self) -> list[AppRow]: ...
    async def spawn(self, app: str, args: list[Any], kwargs: dict[str, Any], *, priority: int | None = None,
                    caps: dict[str, Any] | None = None) -> int: ...
    async def kill(self, pid: int) -> bool: ...
    async def renice(self, pid: int, priority: int) -> None: ...
    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus: ...
    async def ended(self, pid: int) -> ProcInfo: ...
    async def ps(self, all: bool = False) -> list[ProcInfo]: ...
    async def info(self, pid: int) -> ProcInfo: ...
    async def write_stdin(self, pid: int, text: str) -> None: ...
    async def close_stdin(self, pid: int) -> None: ...
    async def send(self, pid: int, body: Any) -> None: ...
    async def output(self, pid: int) -> list[tuple[str, str]]: ...
    def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]: ...
    async def trace(self, pid: int | None) -> list[str]: ...
    def strace(self, pid: int | None) -> AsyncIterator[str]: ...
    async def stats(self) -> EngineStats: ...
    async def model_stats(self) -> list[ModelStats]: ...
    async def policies(self) -> list[str]: ...
    async def set_policy(self, name: str, model: str | None = None) -> None: ...
    async def models(self) -> list[Row]: ...
    async def tools(self) -> list[Row]: ...
    async def mem(self, pid: int) -> MemView: ...
