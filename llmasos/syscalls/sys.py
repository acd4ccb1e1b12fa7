"""Sys: the handle a process holds, and its only way to the model, tools, memory and other processes.

Rule (after curio's traps): each method is a docstring plus one line that builds a syscall value and
passes it to the kernel's single chokepoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from llmasos.syscalls import calls as c
from llmasos.syscalls.types import Completion, ExitStatus, Message, ModelInfo, Note, ProcInfo, Scores

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.llm import TokenStream
    from llmasos.kernel.proc import Process
    from llmasos.tools.registry import ToolContext


class Sys:
    """The syscall interface of one process (passed to its main function)."""

    __slots__ = ("_kernel", "_proc")

    def __init__(self, kernel: Kernel, proc: Process) -> None:
        self._kernel = kernel
        self._proc = proc

    async def _trap(self, call: c.Syscall) -> Any:
        return await self._kernel.syscall(self._proc, call)

    async def syscall(self, call: c.Syscall) -> Any:
        """Make the syscall call (a value from ``llmasos.syscalls.calls``) as this process."""
        return await self._kernel.syscall(self._proc, call)

    @property
    def pid(self) -> int:
        """This process's pid (no syscall needed: it never changes)."""
        return self._proc.pid

    # -- process -----------------------------------------------------------------------------

    async def spawn(self, app: Any, *args: Any, priority: int | None = None,
                    caps: dict[str, Any] | None = None, **kwargs: Any) -> int:
        """Start a child process running app(*args, **kwargs); returns its pid at once."""
        return await self._trap(c.Spawn(app, args, kwargs, priority, caps))

    async def kill(self, pid: int) -> bool:
        """Kill pid and its descendants; False if it had already ended."""
        return await self._trap(c.Kill(pid))

    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus:
        """Wait for pid to end and reap it."""
        return await self._trap(c.Wait(pid, timeout))

    async def getpid(self) -> int:
        """This process's pid, as a syscall (traced and counted)."""
        return await self._trap(c.GetPid())

    async def ps(self, all: bool = False) -> list[ProcInfo]:
        """The process table."""
        return await self._trap(c.Ps(all))

    async def sleep(self, seconds: float) -> None:
        """Sleep; other processes run meanwhile."""
        return await self._trap(c.Sleep(seconds))

    async def exit(self, value: Any = None) -> NoReturn:
        """End this process now with value as its exit value."""
        await self._trap(c.Exit(value))
        raise AssertionError("unreachable: exit returned")

    # -- ipc and stdio -----------------------------------------------------------------------

    async def send(self, pid: int, body: Any) -> None:
        """Put body in pid's mailbox."""
        return await self._trap(c.Send(pid, body))

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message in this process's mailbox; RecvTimeout after timeout seconds."""
        return await self._trap(c.Recv(timeout))

    async def read(self) -> str | None:
        """One line from stdin (with its newline), or None at end of input."""
        return await self._trap(c.ReadLine())

    async def write(self, text: str, stream: str = "stdout") -> None:
        """Write text to stdout (or stderr)."""
        return await self._trap(c.Write(text, stream))

    async def print(self, *values: Any, sep: str = " ", end: str = "\n") -> None:
        """print() to this process's stdout."""
        return await self._trap(c.Write(sep.join(map(str, values)) + end))

    # -- llm ---------------------------------------------------------------------------------

    def generate(self, prompt: str | None = None, *, messages: Iterable[dict[str, Any]] | None = None,
                 max_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: str | Iterable[str] | None = None, stream: bool = False,
                 tools: Iterable[Any] | None = None, tool_choice: Any = None, truncate: bool = False,
                 model: str | None = None) -> Any:
        """Run a model on prompt (or chat messages): model names a loaded one (None: the app's default
        model, else the kernel's).

        ``await sys.generate(...)`` gives a Completion; with ``stream=True``, ``async for text in
        sys.generate(...)`` yields the text as it is produced.
        """
        if isinstance(stop, str):
            stop = (stop,)
        call = c.Generate(
            prompt=prompt, messages=tuple(messages) if messages is not None else None,
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
            stop=tuple(stop or ()), stream=stream, tools=tuple(tools) if tools is not None else None,
            tool_choice=tool_choice, truncate=truncate, model=model,
        )
        return _Streamed(self, call) if stream else self._trap(call)

    async def score(self, text: str, *, window: int | None = None, stride: int | None = None,
                    model: str | None = None) -> Scores:
        """The model's log-probability of each token of text given the tokens before it (strided windows
        of ``window`` tokens that advance by ``stride``); ``.perplexity`` of the result is the text's.
        ``model`` names a loaded model (default: the process's)."""
        return await self._trap(c.Score(text, window, stride, model))

    async def models(self) -> tuple[ModelInfo, ...]:
        """The models this process may use and their state (``ModelInfo``: loaded, loading, loadable,
        broken with its reason), the loaded ones first; a loadable one is loaded by the first generate
        that names it."""
        return await self._trap(c.Models())

    # -- tools -------------------------------------------------------------------------------

    async def call_tool(self, name: str, /, arguments: dict[str, Any] | None = None, *,
                        timeout: float | None = None, **kwargs: Any) -> Any:
        """Run tool name with keyword arguments (or an ``arguments`` dict); ToolError if it fails."""
        return await self._trap(c.CallTool(name, {**(arguments or {}), **kwargs}, timeout))

    async def tools(self) -> list[dict[str, Any]]:
        """The tools this process may use, as OpenAI function-calling schemas."""
        return await self._trap(c.ListTools())

    async def agent(self, task: str, *, tools: Iterable[Any] | None = None, max_steps: int = 5,
                    **options: Any) -> Any:
        """Loop generate -> tool call -> tool result until the model answers (tools/agent.py)."""
        from llmasos.tools.agent import run_agent

        return await run_agent(self, task, tools=tools, max_steps=max_steps, **options)

    # -- memory ------------------------------------------------------------------------------

    @property
    def memory(self) -> Memory:
        """Key-value memory and long-term notes: ``await sys.memory.set("k", v)`` and so on."""
        return Memory(self)

    async def chat(self, text: str, *, max_tokens: int | None = None, temperature: float = 0.0,
                   top_p: float = 1.0, seed: int | None = None, stop: str | Iterable[str] | None = None,
                   system: str | None = None, model: str | None = None) -> Completion:
        """Say text in this process's persistent context; returns the model's reply (also kept)."""
        stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return await self._trap(c.Chat(text, max_tokens, temperature, top_p, seed, stop, system, model))

    async def context(self) -> list[dict[str, Any]]:
        """This process's persistent context: [{role, content, tokens, kind}], oldest first."""
        return await self._trap(c.Context())


class _Streamed:
    """``sys.generate(..., stream=True)``: async-iterable text; the syscall is made on first use."""

    __slots__ = ("_sys", "_call", "_stream")

    def __init__(self, sys: Sys, call: c.Generate) -> None:
        self._sys, self._call = sys, call
        self._stream: TokenStream | None = None

    def __aiter__(self) -> _Streamed:
        return self

    async def __anext__(self) -> str:
        if self._stream is None:
            self._stream = await self._sys._trap(self._call)
        return await self._stream.__anext__()

    @property
    def completion(self) -> Completion | None:
        """The whole Completion, once the stream has ended."""
        return self._stream.completion if self._stream is not None else None

    def close(self) -> None:
        """Stop generating early (the engine frees the sequence before its next step)."""
        if self._stream is not None:
            self._stream.close()

    async def aclose(self) -> None:
        """Stop generating early."""
        self.close()


class Memory:
    """``sys.memory`` (and a tool's ``ctx.memory``): each method makes one memory syscall through its
    owner's ``syscall`` (namespace None: the process's own)."""

    __slots__ = ("_sys",)

    def __init__(self, sys: Sys | ToolContext) -> None:
        self._sys = sys

    async def get(self, key: str, default: Any = None, *, namespace: str | None = None) -> Any:
        """The value stored under key, or default."""
        return await self._sys.syscall(c.MemGet(key, default, namespace))

    async def set(self, key: str, value: Any, *, namespace: str | None = None) -> None:
        """Store value under key (durable when this returns)."""
        return await self._sys.syscall(c.MemSet(key, value, namespace))

    async def delete(self, key: str, *, namespace: str | None = None) -> bool:
        """Delete key; True if it was there."""
        return await self._sys.syscall(c.MemDelete(key, namespace))

    async def keys(self, prefix: str = "", *, namespace: str | None = None) -> list[str]:
        """The keys starting with prefix, sorted."""
        return await self._sys.syscall(c.MemKeys(prefix, namespace))

    async def remember(self, text: str, tags: Iterable[str] = (), *, namespace: str | None = None) -> int:
        """Keep text as a long-term note (searchable); returns its id."""
        return await self._sys.syscall(c.Remember(text, tuple(tags), namespace))

    async def search(self, query: str, k: int = 5, *, namespace: str | None = None) -> list[Note]:
        """The k notes that best match query, best first."""
        return await self._sys.syscall(c.Search(query, k, namespace))
