"""Values that syscalls return to processes: completions, process info, exit statuses, messages.

Rule: plain frozen records, safe to hand to any process, to JSON (``as_dict``) and to the journal.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def as_dict(value: Any) -> Any:
    """A JSON-friendly copy of a syscall value (dataclasses become dicts, tuples lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [as_dict(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_dict(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: an id, a tool name and its arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """What generate returns. ``str(completion)`` is its text."""

    text: str
    finish_reason: str  # "stop", "length", "tool_calls", "budget" (cut by a budget: partial) or "abort"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: tuple[ToolCall, ...] = ()
    model: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Scores:
    """What score returns: the log-probability (natural log) of every token of the text but the first,
    each given up to ``window`` tokens before it."""

    tokens: int  # tokens in the text (logprobs has one fewer: the first token has no context)
    logprobs: tuple[float, ...] = ()
    window: int = 0
    stride: int = 0
    model: str = ""

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per scored token (transformers' causal-LM loss)."""
        return -sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    @property
    def perplexity(self) -> float:
        """exp(nll): the token-level perplexity."""
        return math.exp(self.nll)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model the kernel can serve, as the models syscall reports it.

    state: ``loaded`` (serving), ``loading`` (its first request is loading it), ``loadable`` (in the model
    library: the first generate that names it loads it) or ``broken`` (it failed to load, or its library
    entry is unusable: ``reason`` says why, and requests naming it fail with that reason, unretried until
    its library entry changes)."""

    name: str
    state: str
    reason: str = ""
    default: bool = False  # the kernel's default model
    lazy: bool = False  # not declared in the model table: loaded on first use (KernelConfig.lazy_models)
    kind: str = ""  # a loaded model's engine kind: local, remote, fake


class ReplyStream:
    """Base of streamed replies: ``async for text in stream``; ``completion`` is set once it ends."""

    completion: Completion | None = None

    async def collect(self) -> Completion:
        """Wait for the whole reply."""
        async for _ in self:  # type: ignore[attr-defined]
            pass
        assert self.completion is not None
        return self.completion


@dataclass(frozen=True, slots=True)
class Usage:
    """What a process has consumed so far."""

    syscalls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_time: float = 0.0  # seconds of engine steps, split among the sequences in each step
    syscall_time: float = 0.0  # seconds spent inside syscalls (waiting included)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One row of the process table, as ps shows it."""

    pid: int
    ppid: int
    app: str
    state: str
    waiting_on: str | None
    priority: int
    args: tuple[Any, ...]
    started: float  # wall-clock time.time()
    ended: float | None
    usage: Usage
    exit_value: Any = None
    error: str | None = None
    caps: dict[str, Any] = field(default_factory=dict)
    sandbox: str | None = None  # a sandboxed app's confinement ("rlimit+landlock+seccomp"); None: in the kernel
    node: str | None = None  # the cluster node that runs it (None: not a cluster)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: state is "exited", "killed", "crashed" or "lost"."""

    pid: int
    state: str
    value: Any = None  # what main returned (or passed to exit)
    error: str | None = None  # traceback for crashed, reason for killed or lost

    @property
    def ok(self) -> bool:
        return self.state == "exited"


@dataclass(frozen=True, slots=True)
class Message:
    """A message taken from a mailbox."""

    sender: int  # pid of the sender (0: the root user, e.g. the shell)
    body: Any


# -- memory (the memory manager's results) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """A long-term note, as ``sys.memory.search`` returns it (best first)."""

    id: int
    text: str
    tags: tuple[str, ...] = ()
    score: float = 0.0  # relevance to the query: higher is better
    created: float = 0.0
    namespace: str = ""
