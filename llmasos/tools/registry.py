"""The tool registry: ``@tool`` turns a typed Python function into a Tool with a JSON schema.

Rule: a tool's name, description and argument schema come from the function itself (signature,
annotations, docstring) through pydantic, never from hand-written schema code; ``Tool.schema`` is the
OpenAI function-calling shape, so it passes as is to chat templates and the HTTP API. Tools are found
in this order: built-ins (``llmasos.tools.builtin``), ``@tool``-decorated functions, and installed
packages' entry points in the group ``llmasos.tools`` (each pointing at a Tool or a list of Tools).
A name names one function: the built-ins are registered before any other tool, so a clash with one
fails at ``@tool`` time; the same function registered again (its module imported under a second
name) is no clash; ``register(..., replace=True)`` replaces a tool on purpose.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
import threading
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from llmasos.syscalls import calls as c
from llmasos.syscalls.calls import Syscall
from llmasos.syscalls.errors import NotSupported, PermissionDenied
from llmasos.syscalls.sys import Memory
from llmasos.tools.errors import ToolArgumentsInvalid, UnknownTool
from llmasos.tools.limits import TOOL_LIMITS

ENTRY_POINT_GROUP = "llmasos.tools"
DEFAULT_TIMEOUT = TOOL_LIMITS.default_timeout  # seconds a tool call may take unless the tool or call says
MAX_EXAMPLES = 8  # few-shot examples one tool may carry
MAX_EXAMPLE_CHARS = 1000  # characters of JSON one example may take
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


Trap = Callable[[Syscall], Awaitable[Any]]

TOOL_SYSCALLS: frozenset[type] = frozenset({
    c.MemGet, c.MemSet, c.MemDelete, c.MemKeys, c.Remember, c.Search, c.Generate, c.ListTools, c.GetPid,
})
"""What a tool may ask of the kernel: its process's memory, the model, the tool list. Never process
control (spawn, kill, wait, signals), ipc, or other tools: a tool is a function its process called, not a
process of its own."""


@dataclass(slots=True)
class ToolContext:
    """What a tool may know and do; a parameter annotated ``ToolContext`` receives it (never in the schema).

    It is a narrow port bound to the calling process, never the kernel: the process's pid, its jail
    (``home``), the idempotency key of the call, and nested syscalls (``memory``, ``generate``,
    ``syscall``) limited to ``TOOL_SYSCALLS``. Each passes the kernel's chokepoint as a syscall of the
    calling process: checked against its caps (memory namespaces, token budget), traced and journaled.
    Nested syscalls are async: a sync tool (run in a worker thread) makes them with
    ``anyio.from_thread.run(ctx.syscall, call)``.
    """

    pid: int = 0  # the calling process (0: called outside any process)
    home: Path | None = None  # the process's own directory (its jail), $LLMASOS_HOME/procs/<run>-<pid>
    idempotency_key: str | None = None  # from the syscall journal, when one is attached
    extra: dict[str, Any] = field(default_factory=dict)
    _trap: Trap | None = field(default=None, repr=False)  # the calling process's chokepoint

    async def syscall(self, call: Syscall) -> Any:
        """Make call (one of ``TOOL_SYSCALLS``) as the calling process; PermissionDenied for others."""
        if type(call) not in TOOL_SYSCALLS:
            raise PermissionDenied(
                f"a tool may not make the {call.name} syscall; tools may use "
                f"{', '.join(sorted(t.__name__.lower() for t in TOOL_SYSCALLS))} (an app does the rest)")
        if self._trap is None:
            raise NotSupported("this tool was called outside a process (directly, not through call_tool); "
                               "it has no kernel to make syscalls to")
        return await self._trap(call)

    @property
    def memory(self) -> Memory:
        """The calling process's memory: ``await ctx.memory.get("k")`` and so on (nested syscalls)."""
        return Memory(self)

    async def generate(self, prompt: str, *, max_tokens: int | None = None, **options: Any) -> Any:
        """Run the model on prompt as the calling process (charged to its budget); a Completion."""
        return await self.syscall(c.Generate(prompt=prompt, max_tokens=max_tokens, **options))


class Tool:
    """A callable the model (through a process) may use. ``tool(**args)`` calls the function directly."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, examples: Iterable[dict[str, Any]] = ()) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be a word of letters, digits, '_', '.' or '-'")
        summary, arg_docs = _parse_docstring(fn.__doc__ or "")
        self.description = description if description is not None else summary
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.context_param: str | None = None  # the parameter that receives the ToolContext
        self.params: type[BaseModel] = self._params_model(arg_docs)
        self.source = getattr(fn, "__module__", "") or ""
        self.file = _defined_in(fn)  # with the qualname, what makes two Tools one function
        self.examples = self._check_examples(examples)

    def _check_examples(self, examples: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
        """Few-shot examples for the agent's prompt: ``{"question": str, "arguments": {...}}``, optionally
        ``"result"`` (what the tool returns) and ``"answer": str`` (shown after a result); each checked
        against the schema now, so a bad one fails at ``@tool``."""
        if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, Iterable):
            raise TypeError(f"tool {self.name}: examples is a list of dicts, not {type(examples).__name__}")
        out = []
        for i, ex in enumerate(examples):
            where = f"tool {self.name}: example {i}"
            if not isinstance(ex, dict) or set(ex) - {"question", "arguments", "result", "answer"}:
                raise TypeError(f'{where} must be a dict with "question", "arguments", and optionally '
                                '"result" and "answer"')
            if not isinstance(ex.get("question"), str) or not ex["question"].strip():
                raise TypeError(f'{where}: "question" must be a non-empty string')
            if "answer" in ex and not isinstance(ex["answer"], str):
                raise TypeError(f'{where}: "answer" must be a string')
            try:
                size = len(json.dumps(ex, allow_nan=False))
            except (TypeError, ValueError):
                raise TypeError(f"{where} must be plain JSON (str, numbers, bools, None, lists, dicts)") from None
            if size > MAX_EXAMPLE_CHARS:
                raise ValueError(f"{where} is over {MAX_EXAMPLE_CHARS} characters; examples go in every prompt")
            try:
                self.validate(ex.get("arguments"))
            except ToolArgumentsInvalid as exc:
                raise ValueError(f"{where} has arguments its own schema refuses: {exc}") from None
            out.append(dict(ex))
        if len(out) > MAX_EXAMPLES:
            raise ValueError(f"tool {self.name}: at most {MAX_EXAMPLES} examples, not {len(out)}")
        return tuple(out)

    def _params_model(self, arg_docs: dict[str, str]) -> type[BaseModel]:
        sig = inspect.signature(self.fn)
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception as exc:
            raise TypeError(f"tool {self.name}: cannot resolve its annotations ({exc})") from exc
        fields: dict[str, Any] = {}
        for pname, p in sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"tool {self.name}: *args and **kwargs cannot be described to a model; "
                                "name every parameter")
            hint = hints.get(pname, Any)
            if hint is ToolContext:
                self.context_param = pname
                continue
            default = ... if p.default is p.empty else p.default
            fields[pname] = (hint, Field(default, description=arg_docs.get(pname)))
        model_name = re.sub(r"\W", "_", self.name) + "_arguments"
        return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments (an object; extra keys are refused)."""
        return _strip_titles(self.params.model_json_schema())

    @property
    def schema(self) -> dict[str, Any]:
        """The OpenAI function-calling shape: ``{"type": "function", "function": {...}}``."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: dict[str, Any] | None) -> dict[str, Any]:
        """Check arguments against the schema; return them converted (ToolArgumentsInvalid if not)."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentsInvalid(f"tool {self.name} takes an object of named arguments, "
                                       f"not {type(arguments).__name__}")
        try:
            model = self.params.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {_message(e)}" for e in exc.errors())
            raise ToolArgumentsInvalid(
                f"tool {self.name}: {problems}. It takes {_signature_line(self.parameters)}") from None
        return {k: getattr(model, k) for k in type(model).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         timeout: float = DEFAULT_TIMEOUT, register: bool = True, examples: Iterable[dict[str, Any]] = ()) -> Any:
    """Decorator: make a typed function (sync or async) a Tool and register it.

    ``@tool`` or ``@tool(name="add", timeout=5)``. The first docstring paragraph is the description;
    an ``Args:`` section describes the parameters. ``examples`` are few-shot examples the agent loop
    shows the model when the tool is offered (``Tool._check_examples``).
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        t = Tool(f, name=name, description=description, timeout=timeout, examples=examples)
        if register:
            REGISTRY.register(t)
        return t

    return wrap(fn) if fn is not None else wrap


class ToolRegistry:
    """Tools by name. Built-ins are loaded before the first registration or lookup, entry points on
    the first lookup."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self.load_errors: dict[str, str] = {}  # entry point name -> why it failed to load

    def register(self, t: Tool, *, replace: bool = False) -> Tool:
        """Add a tool; a different function under a taken name is refused unless replace=True."""
        # Invariant: the built-ins are in before any other tool. The import lock makes another thread
        # wait until they are; their own @tool calls, made during the import, get the package as is.
        import llmasos.tools.builtin  # noqa: F401  (registers the built-ins)

        old = self._tools.get(t.name)
        if old is not None and not replace and not _same_function(old, t):
            raise ValueError(_clash(old, t))
        self._tools[t.name] = t
        return t

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool:
        """The tool called name; UnknownTool (with the closest name) if there is none."""
        self._load()
        t = self._tools.get(name)
        if t is None:
            close = difflib.get_close_matches(str(name), self._tools, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known tools: {', '.join(sorted(self._tools))}"
            raise UnknownTool(f"no tool named {name!r}{hint}")
        return t

    def names(self) -> list[str]:
        self._load()
        return sorted(self._tools)

    def all(self, allowed: Iterable[str] | None = None) -> list[Tool]:
        """Every tool, or those whose names are in allowed, sorted by name."""
        self._load()
        keep = None if allowed is None else set(allowed)
        return [self._tools[n] for n in sorted(self._tools) if keep is None or n in keep]

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            import llmasos.tools.builtin  # noqa: F401  (registers the built-ins)

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    obj = ep.load()
                    for t in obj if isinstance(obj, (list, tuple)) else [obj]:
                        if not isinstance(t, Tool):
                            raise TypeError(f"{ep.value} is a {type(t).__name__}, not an llmasos Tool")
                        self.register(t)
                except Exception as exc:  # one broken package must not hide the others
                    self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            self._loaded = True


REGISTRY = ToolRegistry()
"""The registry the kernel uses."""


# -- helpers -------------------------------------------------------------------------------------


def _same_function(a: Tool, b: Tool) -> bool:
    """One function, even when its module was imported twice (a script as ``__main__`` and by path)."""
    same_file = a.file is not None and a.file == b.file
    return a.fn.__qualname__ == b.fn.__qualname__ and (a.source == b.source or same_file)


def _defined_in(fn: Callable[..., Any]) -> str | None:
    """The resolved path of the file that defines fn (None for code typed in, ``<stdin>``)."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None or code.co_filename.startswith("<"):
        return None
    return os.path.realpath(code.co_filename)


def _clash(old: Tool, new: Tool) -> str:
    where = f"{new.fn.__qualname__} in {new.file or new.source}"
    if old.source.startswith("llmasos.tools.builtin"):
        return (f"{where}: {new.name!r} is the name of a built-in tool ({old.source}); rename the function "
                "or give the tool another name with @tool(name=...); to replace the built-in on purpose, "
                "use @tool(register=False) and REGISTRY.register(t, replace=True)")
    return (f"{where}: a tool named {new.name!r} is already registered ({old.fn.__qualname__} in "
            f"{old.file or old.source}); give one of them another name with @tool(name=...), or pass "
            "replace=True to register()")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {param: description}) from a Google-style docstring."""
    doc = inspect.cleandoc(doc)
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    match = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.MULTILINE)
    if match:
        current = None
        for line in match.group(1).splitlines():
            m = re.match(r"\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
            if m and (current is None or len(line) - len(line.lstrip()) <= 8):
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _strip_titles(schema: Any, parent: str | None = None) -> Any:
    """Drop pydantic's auto-generated "title" keys (noise in a small model's prompt)."""
    if isinstance(schema, dict):
        return {k: _strip_titles(v, k) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str) and parent != "properties")}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _message(error: Any) -> str:
    """pydantic's message, without the regex of a pattern (hundreds of characters nobody reads)."""
    if error.get("type") == "string_pattern_mismatch":
        return "does not have the form the schema's pattern asks for"
    return str(error.get("msg"))


def _signature_line(parameters: dict[str, Any]) -> str:
    props = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    if not props:
        return "no arguments"
    parts = [f"{k}: {v.get('type', 'any')}{'' if k in required else ' (optional)'}" for k, v in props.items()]
    return "(" + ", ".join(parts) + ")"
