"""The syscall values: one frozen dataclass per syscall.

Rule: a syscall is plain data. ``Sys`` builds one and hands it to the kernel's single chokepoint
(``Kernel.syscall``), which looks its handler up in an explicit table. Each class declares, as class
variables, what the kernel needs to know about it beyond its handler:

- ``waits``: what the process waits on while the call is in progress (ps, top); ``None``: it does not block.
- ``journaled``: whether the kernel's journal records it (False: pure, or it ends the process).
- ``replay``: how a process restored after a crash gets a journaled call back: ``"result"`` (the recorded
  result, the handler does not run) or ``"rerun"`` (the handler runs again: it rebuilds in-memory state).
- ``effect``: it acts outside the calling process; its intent is journaled before it runs, and a call in
  flight at a crash is re-issued with the same idempotency key.
- ``nests``: syscalls may be made inside it (a tool's, a chat's summary); the journal records how many
  positions they took, so that a replay of it skips them.
- ``added``: fields added after journals were first written; the journal's digest of a call leaves
  each one out while it holds None, so a journal written before the field existed still replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Syscall:
    """Base of all syscalls."""

    waits: ClassVar[str | None] = None
    journaled: ClassVar[bool] = True
    replay: ClassVar[str] = "result"
    effect: ClassVar[bool] = False
    nests: ClassVar[bool] = False
    added: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


# -- process ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spawn(Syscall):
    """Start a child process running app with args; returns its pid."""

    effect: ClassVar[bool] = True

    app: Any  # an app name, a path spec ("file.py:app") or an App
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    caps: dict[str, Any] | None = None  # asked-for capabilities (never more than the parent's)


@dataclass(frozen=True, slots=True)
class Kill(Syscall):
    """Kill a process and its descendants."""

    effect: ClassVar[bool] = True

    pid: int


@dataclass(frozen=True, slots=True)
class Renice(Syscall):
    """Change a live process's priority (a nice value: lower runs first under the priority policy); root only."""

    effect: ClassVar[bool] = True

    pid: int
    priority: int


@dataclass(frozen=True, slots=True)
class Wait(Syscall):
    """Wait for a process to end; returns its ExitStatus and reaps it."""

    waits: ClassVar[str | None] = "child"
    pid: int
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class GetPid(Syscall):
    """The calling process's pid."""

    journaled: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Ps(Syscall):
    """The process table: live processes, or all of them with all=True."""

    all: bool = False


@dataclass(frozen=True, slots=True)
class Sleep(Syscall):
    """Sleep for seconds."""

    waits: ClassVar[str | None] = "sleep"
    seconds: float


@dataclass(frozen=True, slots=True)
class Exit(Syscall):
    """End the calling process with value as its exit value."""

    journaled: ClassVar[bool] = False

    value: Any = None


# -- ipc and stdio ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send(Syscall):
    """Put a message in another process's mailbox."""

    effect: ClassVar[bool] = True

    pid: int
    body: Any


@dataclass(frozen=True, slots=True)
class Recv(Syscall):
    """Take the next message from the caller's mailbox, waiting up to timeout seconds."""

    waits: ClassVar[str | None] = "recv"
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ReadLine(Syscall):
    """Read one line from the caller's stdin; None at end of input."""

    waits: ClassVar[str | None] = "stdin"


@dataclass(frozen=True, slots=True)
class Write(Syscall):
    """Write text to the caller's stdout (or stderr)."""

    replay: ClassVar[str] = "rerun"  # it rebuilds the process's in-memory log

    text: str
    stream: str = "stdout"


@dataclass(frozen=True, slots=True)
class Stdin(Syscall):
    """Feed text to another process's stdin, a line per newline (close: then end its input)."""

    effect: ClassVar[bool] = True

    pid: int
    text: str = ""
    close: bool = False


# -- scheduling ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetPolicy(Syscall):
    """Switch a scheduling policy now (fifo, rr, priority, fair): of one model, or of every model
    (model=None); root only."""

    effect: ClassVar[bool] = True
    added: ClassVar[tuple[str, ...]] = ("model",)

    policy: str
    model: str | None = None


# -- llm -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generate(Syscall):
    """Run a model on a prompt or chat messages (model None: the app's default model, else the kernel's)."""

    waits: ClassVar[str | None] = "llm"
    added: ClassVar[tuple[str, ...]] = ("model",)
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    tools: tuple[Any, ...] | None = None  # tool names or schemas offered to the model
    tool_choice: Any = None  # "auto", "required", "none" or a tool name
    truncate: bool = False
    model: str | None = None  # a loaded model's name (see Kernel.models)


@dataclass(frozen=True, slots=True)
class Score(Syscall):
    """The model's log-probability of each token of text given the tokens before it (prompt logprobs),
    over strided windows of at most ``window`` tokens that advance by ``stride``; returns Scores."""

    waits: ClassVar[str | None] = "llm"
    added: ClassVar[tuple[str, ...]] = ("model",)
    text: str
    window: int | None = None  # tokens of context per window; None: the config's score_window
    stride: int | None = None  # tokens scored per window; None: half the window
    model: str | None = None  # a loaded model's name; None: the process's default model


@dataclass(frozen=True, slots=True)
class Models(Syscall):
    """The models the kernel can serve to this process and their state: loaded, loading, loadable (in the
    model library, loaded by the first generate that names it) or broken (with the reason); returns a
    tuple of ModelInfo, the loaded ones first. Journaled: a process restored after a crash sees the list
    it saw, so it makes the same choice again."""


# -- tools -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallTool(Syscall):
    """Run a tool with arguments (checked against its schema first); returns its JSON result."""

    effect: ClassVar[bool] = True
    nests: ClassVar[bool] = True  # (a tool's memory calls and generates are syscalls inside it)
    waits: ClassVar[str | None] = "tool"

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None  # seconds; None: the tool's own timeout


@dataclass(frozen=True, slots=True)
class ListTools(Syscall):
    """The tools the calling process may use, as OpenAI function-calling schemas."""


# -- memory ----------------------------------------------------------------------------------
# namespace None means the process's own ("pid:<pid>"); others need the memory capability.


@dataclass(frozen=True, slots=True)
class MemGet(Syscall):
    """The value stored under key in a memory namespace; default when there is none."""

    key: str
    default: Any = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class MemSet(Syscall):
    """Store a JSON-like value under key; durable once the call returns."""

    key: str
    value: Any
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class MemDelete(Syscall):
    """Delete key; True if it was there."""

    key: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class MemKeys(Syscall):
    """The keys in a namespace that start with prefix, sorted."""

    prefix: str = ""
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Remember(Syscall):
    """Store a long-term note (full-text searchable); returns its id."""

    text: str
    tags: tuple[str, ...] = ()
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Search(Syscall):
    """The k long-term notes that best match query, best first."""

    query: str
    k: int = 5
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Chat(Syscall):
    """Append text to the process's persistent context, generate over it, append the reply."""

    nests: ClassVar[bool] = True  # (a summary of paged-out turns is a generate syscall inside it)
    waits: ClassVar[str | None] = "llm"
    added: ClassVar[tuple[str, ...]] = ("model",)

    text: str
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None  # a system message, put first when the context has none
    model: str | None = None  # a loaded model's name; None: the app's default model, else the kernel's


@dataclass(frozen=True, slots=True)
class Context(Syscall):
    """The process's persistent context: a summary (if paged) then its turns, oldest first."""
