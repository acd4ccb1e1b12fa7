"""Capabilities: what a process may do, checked at the syscall chokepoint.

Rule: a child never holds more than its parent; the root (shell, CLI, HTTP user) holds everything.
``grant`` runs once at spawn: the app's manifest asks, the spawner's ``caps=`` overrides the manifest,
and asking for anything the parent does not hold is refused (``PermissionDenied``, naming it) rather
than silently trimmed. ``check`` runs on every syscall, before the handler, and is pure: it reads the
process and the call and raises ``PermissionDenied`` or ``QuotaExceeded``; the chokepoint records the
refusal in the process's trace and the kernel goes on.

Memory syscalls need the namespace they name: a process holds its own, ``pid:<pid>`` (``None`` means
it), and the ones granted to it (the manifest's ``memory=[...]``); ``""`` and its app's name are
namespaces like any other. ``kill`` and ``wait`` reach the caller and its descendants, or any process
with the ``signal`` capability (``may_signal``, called by their handlers: it reads the process table).
Generate and chat need the model they name, or the process's default one, among its ``models`` (the
kernel checks at spawn that the names are of loaded models, or of the model library's: loaded on first
use).

Budgets (``kernel/budget.py`` keeps their accounts): a child's token and model-time budgets are carved
out of what its parent has left (asking for more than that is refused); its wall-time budget
(``time_budget``, seconds of life) is a deadline that never passes its parent's (an ask beyond it is
cut to it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.kernel import budget
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, PermissionDenied, QuotaExceeded

if TYPE_CHECKING:
    from llmasos.apps.app import App
    from llmasos.kernel.proc import Process
    from llmasos.syscalls.calls import Syscall


@dataclass(frozen=True, slots=True)
class Caps:
    """The rights one process holds. None means unlimited."""

    tools: frozenset[str] | None = None  # tool names it may call
    memory: frozenset[str] | None = None  # memory namespaces beyond its own
    models: frozenset[str] | None = None  # loaded models it may generate with (by name)
    can_spawn: bool = True
    max_children: int | None = None
    token_budget: int | None = None  # prompt + completion tokens over its life (its children's included)
    syscall_budget: int | None = None
    time_budget: float | None = None  # seconds of life (wall time); then it is killed
    model_time_budget: float | None = None  # seconds of model time (its share of the steps it ran in)
    signal: bool = True  # may kill and wait for any process, not only its own descendants
    see_args: bool = True  # sees other processes' arguments in ps (secret ones are "***" for all)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tools": sorted(self.tools) if self.tools is not None else "*",
            "memory": sorted(self.memory) if self.memory is not None else "*",
            "models": sorted(self.models) if self.models is not None else "*",
            "can_spawn": self.can_spawn,
            "max_children": self.max_children,
            "token_budget": self.token_budget,
            "syscall_budget": self.syscall_budget,
            "time_budget": self.time_budget,
            "model_time_budget": self.model_time_budget,
            "signal": self.signal, "see_args": self.see_args,
        }

    def may_use_tool(self, name: str) -> bool:
        return self.tools is None or name in self.tools


ROOT = Caps()
FIELDS = ("tools", "memory", "models", "can_spawn", "max_children", "token_budget", "syscall_budget", "time_budget",
          "model_time_budget", "signal", "see_args")
ALL = "*"  # in a manifest or caps=: everything the parent holds


# -- grant: at spawn ---------------------------------------------------------------------------


def grant(parent: Caps, app: App, asked: dict[str, Any] | None = None) -> Caps:
    """The caps a new process running app gets from a parent holding parent (its budgets: what the
    parent has left, ``budget.available``).

    Raises PermissionDenied when the manifest or the spawner asks for more than parent holds.
    """
    want = {
        "tools": app.tools, "memory": app.memory, "models": app.models, "can_spawn": app.can_spawn,
        "max_children": app.max_children, "token_budget": app.token_budget,
        "syscall_budget": app.syscall_budget, "time_budget": app.time_budget,
        "model_time_budget": app.model_time_budget, "signal": app.signal, "see_args": app.see_args,
    }
    if asked:
        unknown = set(asked) - set(FIELDS)
        if unknown:
            raise InvalidArguments(f"unknown capabilities {sorted(unknown)}; the known ones are {list(FIELDS)}")
        want.update(asked)
    who = f"app {app.name!r}"
    return Caps(
        tools=_names(who, "tools", want["tools"], parent.tools),
        memory=_names(who, "memory namespaces", want["memory"], parent.memory),
        models=_names(who, "models", want["models"], parent.models),
        can_spawn=_flag(who, "can_spawn", want["can_spawn"], parent.can_spawn),
        max_children=_limit(who, "max_children", want["max_children"], parent.max_children),
        token_budget=_limit(who, "token_budget", want["token_budget"], parent.token_budget),
        syscall_budget=_limit(who, "syscall_budget", want["syscall_budget"], parent.syscall_budget),
        time_budget=_seconds(who, "time_budget", want["time_budget"], parent.time_budget, cut=True),
        model_time_budget=_seconds(who, "model_time_budget", want["model_time_budget"], parent.model_time_budget),
        signal=_flag(who, "signal", want["signal"], parent.signal),
        see_args=_flag(who, "see_args", want["see_args"], parent.see_args),
    )


def _names(who: str, what: str, asked: Any, held: frozenset[str] | None) -> frozenset[str] | None:
    if isinstance(asked, str):
        asked = [asked]
    if not isinstance(asked, (list, tuple, set, frozenset, type(None))):
        raise InvalidArguments(f"{what} is a list of names or \"*\", not {type(asked).__name__}")
    asked = list(asked or ())
    if not all(isinstance(name, str) for name in asked):
        raise InvalidArguments(f"{what} is a list of names (strings) or \"*\"")
    if ALL in asked:
        return held
    extra = sorted(set(asked) - held) if held is not None else []
    if extra:
        more = f" and {len(extra) - 20} more" if len(extra) > 20 else ""
        raise PermissionDenied(
            f"{who} asks for {what} {extra[:20]}{more}, which its parent does not hold (it holds "
            f"{sorted(held or ())[:20]}); spawn it with caps={{{what.split()[0]!r}: [...]}} naming only what "
            "the parent holds")
    return frozenset(asked)


def _flag(who: str, what: str, asked: Any, held: bool) -> bool:
    if not isinstance(asked, bool):
        raise InvalidArguments(f"{what} is True or False, not {asked!r}")
    if asked and not held:
        raise PermissionDenied(f"{who} asks for {what}, which its parent does not hold; "
                               f"spawn it with caps={{{what!r}: False}}")
    return asked


def _limit(who: str, what: str, asked: int | None, held: int | None) -> int | None:
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool) or asked < 0):
        raise InvalidArguments(f"{what} is a non-negative integer or None, not {asked!r}")
    if held is None:
        return asked
    if asked is None:
        return held  # an unlimited ask under a limited parent inherits what the parent has (left)
    if asked > held:
        raise PermissionDenied(f"{who} asks for {what}={asked}, more than its parent has ({held}); "
                               f"ask for at most {held}")
    return asked


def _seconds(who: str, what: str, asked: float | None, held: float | None, cut: bool = False) -> float | None:
    """A budget in seconds; cut=True: an ask beyond what the parent has is cut to it (a deadline)."""
    if asked is not None and (not isinstance(asked, (int, float)) or isinstance(asked, bool)
                              or not math.isfinite(asked) or asked < 0):
        raise InvalidArguments(f"{what} is a non-negative number of seconds or None, not {asked!r}")
    if held is None or asked is None:
        return held if asked is None else float(asked)
    if asked > held and not cut:
        raise PermissionDenied(f"{who} asks for {what}={asked:g}s, more than its parent has left "
                               f"({held:g}s); ask for at most that")
    return float(min(asked, held))


# -- check: at every syscall -------------------------------------------------------------------


def check(proc: Process, call: Syscall) -> None:
    """Raise PermissionDenied or QuotaExceeded when proc may not make call."""
    caps: Caps = proc.caps
    if caps is ROOT:
        return
    if caps.syscall_budget is not None and proc.usage.syscalls > caps.syscall_budget \
            and not isinstance(call, c.Exit):
        raise QuotaExceeded(f"process {proc.pid} has used its budget of {caps.syscall_budget} syscalls; "
                            "it can only exit now (spawn it with a larger syscall_budget)")
    if proc.deadline is not None and anyio.current_time() >= proc.deadline and not isinstance(call, c.Exit):
        raise QuotaExceeded(f"process {proc.pid} has used its time_budget of {caps.time_budget:g}s; "
                            "it can only exit now (spawn it with a larger time_budget)")
    rule = _RULES.get(type(call))
    if rule is not None:
        rule(proc, caps, call)


def may_use_namespace(proc: Process, caps: Caps, namespace: str) -> bool:
    if caps.memory is None or namespace in caps.memory:
        return True
    return namespace in own_namespaces(proc)


def own_namespaces(proc: Process) -> set[str]:
    """The memory namespaces a process holds without asking: its private one, bound to its pid."""
    return {f"pid:{proc.pid}"}


def _namespace(proc: Process, caps: Caps, call: Any) -> None:
    namespace = call.namespace
    if namespace is not None and not may_use_namespace(proc, caps, namespace):
        raise PermissionDenied(f"process {proc.pid} ({proc.app.name}) may not use memory namespace "
                               f"{namespace!r}; it holds {sorted(caps.memory or ())} and its own "
                               f"(pid:{proc.pid}); list it in the app's memory=[...] manifest")


def may_signal(procs: Mapping[int, Process], proc: Process, pid: int) -> None:
    """Raise PermissionDenied unless proc may kill or wait for pid: itself, one of its descendants, or
    any process when it holds ``signal``. An unknown pid passes (the handler says NoSuchProcess)."""
    if proc.caps.signal:
        return
    target = procs.get(pid)
    if target is None:
        return
    # Invariant: a parent's pid is lower than its children's (pids only grow), so the walk ends.
    while target is not None and target.pid >= proc.pid:
        if target.pid == proc.pid:
            return
        parent = target.parent
        target = procs.get(parent) if 0 < parent < target.pid else None
    raise PermissionDenied(f"process {proc.pid} ({proc.app.name}) may not signal or wait for process {pid}, "
                           "which is not one of its descendants; only a process holding the signal "
                           "capability may (App(..., signal=True), granted by a parent that holds it)")


def _spawn(proc: Process, caps: Caps, call: c.Spawn) -> None:
    if not caps.can_spawn:
        raise PermissionDenied(f"process {proc.pid} ({proc.app.name}) may not spawn processes; "
                               "declare App(..., can_spawn=True) in its manifest")
    if caps.max_children is not None and len(proc.children) >= caps.max_children:
        raise PermissionDenied(f"process {proc.pid} already has {len(proc.children)} live children, its "
                               f"limit (max_children={caps.max_children}); wait for one first")


def _token_budget(proc: Process, caps: Caps, call: c.Generate | c.Chat | c.Score) -> None:
    """Model calls: tokens and model time left (reserved and carved tokens count as used)."""
    left = budget.tokens_left(proc)
    if left is not None and left < 1:
        raise QuotaExceeded(f"process {proc.pid} has no tokens left of its {caps.token_budget}-token budget "
                            f"({budget.tokens_held(proc)} used, reserved by its running generates or "
                            "given to its children); spawn it with a larger token_budget")
    seconds = budget.model_time_left(proc)
    if seconds is not None and seconds <= 0:
        raise QuotaExceeded(f"process {proc.pid} has used its model_time_budget of {caps.model_time_budget:g}s; "
                            "spawn it with a larger model_time_budget")


def _model(proc: Process, caps: Caps, call: c.Generate | c.Chat | c.Score) -> None:
    """Model calls: the model they name (or the process's default one) must be one it may use."""
    if caps.models is None:
        return
    name = call.model if call.model is not None else proc.model
    if not isinstance(name, str):
        raise InvalidArguments(f"a model is named by a string, not {type(name).__name__}")
    if name not in caps.models:
        shown = sorted(caps.models)
        raise PermissionDenied(
            f"process {proc.pid} ({proc.app.name}) may not use model {name[:80]!r}; it may use "
            f"{shown[:20]}{' and more' if len(shown) > 20 else ''}. Ask for it in the manifest "
            "(App(..., models=[...])) or spawn it with caps={'models': [...]}")


def _chat(proc: Process, caps: Caps, call: c.Chat) -> None:
    _model(proc, caps, call)
    _token_budget(proc, caps, call)


def _score(proc: Process, caps: Caps, call: c.Score) -> None:
    _model(proc, caps, call)
    _token_budget(proc, caps, call)


def _generate(proc: Process, caps: Caps, call: c.Generate) -> None:
    _model(proc, caps, call)
    _token_budget(proc, caps, call)
    _tools(proc, caps, [t for t in call.tools or () if isinstance(t, str)])


def _call_tool(proc: Process, caps: Caps, call: c.CallTool) -> None:
    _tools(proc, caps, [call.tool])


def _tools(proc: Process, caps: Caps, names: Iterable[str]) -> None:
    denied = [n for n in names if not caps.may_use_tool(n)]
    if denied:
        raise PermissionDenied(
            f"process {proc.pid} ({proc.app.name}) may not use the tools {denied}; it holds "
            f"{sorted(caps.tools or ())}. Ask for them in the manifest: App(..., tools=[...])")


def _stdin(proc: Process, caps: Caps, call: c.Stdin) -> None:
    if caps != ROOT:
        raise PermissionDenied(f"process {proc.pid} ({proc.app.name}) may not write to another process's "
                               "stdin; only the root user's faces (shell, HTTP API) may")


def _root_only(proc: Process, caps: Caps, call: Syscall) -> None:
    if caps != ROOT:
        raise PermissionDenied(f"process {proc.pid} ({proc.app.name}) may not make the {call.name} syscall; "
                               "only the root user's faces (shell, HTTP API) may")


_RULES: dict[type, Callable[[Any, Caps, Any], None]] = {
    c.Spawn: _spawn,
    c.Generate: _generate,
    c.Chat: _chat,  # chat generates: the same model and token budget checks, no tools
    c.CallTool: _call_tool,
    c.Stdin: _stdin,
    c.SetPolicy: _root_only,
    c.Score: _score,  # scoring reads the model: the same model, token and model-time checks
    c.Renice: _root_only,
    # Every call with a namespace field needs a rule here (tests/kernel/test_isolation.py checks it).
    c.MemGet: _namespace,
    c.MemSet: _namespace,
    c.MemDelete: _namespace,
    c.MemKeys: _namespace,
    c.Remember: _namespace,
    c.Search: _namespace,
}


def intersect(a: Caps, b: Caps) -> Caps:
    """What both a and b allow (None: unlimited): a resumed process's caps, and a child under a parent."""
    return Caps(
        tools=_meet(a.tools, b.tools), memory=_meet(a.memory, b.memory), models=_meet(a.models, b.models),
        can_spawn=a.can_spawn and b.can_spawn,
        signal=a.signal and b.signal, see_args=a.see_args and b.see_args,
        max_children=_least(a.max_children, b.max_children), token_budget=_least(a.token_budget, b.token_budget),
        syscall_budget=_least(a.syscall_budget, b.syscall_budget), time_budget=_least(a.time_budget, b.time_budget),
        model_time_budget=_least(a.model_time_budget, b.model_time_budget),
    )


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return b if a is None else a if b is None else a & b


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)
