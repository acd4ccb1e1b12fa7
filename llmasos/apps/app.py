"""App: an async main function plus its manifest (what it is and which rights it asks for).

Rule: everything the kernel needs to know about an app before running it is here; arguments are
checked against main's signature (and converted by its annotations) before the process starts.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from llmasos.syscalls.errors import InvalidArguments

Main = Callable[..., Awaitable[Any]]


class App:
    """A program the kernel can run as a process.

    ``app = App("qa", tools=["calculator"])`` then ``@app.main`` on ``async def main(sys, ...)``.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        *,
        version: str = "0",
        tools: Iterable[str] = (),
        memory: Iterable[str] = (),
        can_spawn: bool = False,
        max_children: int | None = None,
        priority: int = 0,
        restartable: bool = True,
        token_budget: int | None = None,
        syscall_budget: int | None = None,
        signal: bool = False,
        see_args: bool = False,
        secret: Iterable[str] = (),
        sandbox: bool = False,
        trusted: bool = False,
        time_budget: float | None = None,
        model_time_budget: float | None = None,
        model: str | None = None,
        models: Iterable[str] = ("*",),
    ) -> None:
        self.name = check_name(name)
        self.description = description
        self.version = version  # the app's own version (PEP 440), shown by `llmasos apps info`
        self.tools = tuple(tools)  # tools it asks to call
        self.memory = _namespaces(name, memory)  # memory namespaces beyond its own that it asks for
        self.can_spawn = can_spawn
        self.max_children = max_children
        self.priority = priority  # default nice value
        self.restartable = restartable  # may the kernel re-run it after a crash
        self.token_budget = token_budget
        self.syscall_budget = syscall_budget
        self.signal = signal  # may kill and wait for processes outside its own tree
        self.see_args = see_args  # sees other processes' arguments in ps
        # main's parameters whose values ps shows as "***", to everyone
        self.secret = (secret,) if isinstance(secret, str) else tuple(secret or ())
        self.sandbox = sandbox  # run in its own OS process, syscalls over a socket (kernel/sandbox.py)
        self.trusted = trusted  # an installed package's app that may run in the kernel's process
        self.time_budget = time_budget  # seconds of life (wall time)
        self.model_time_budget = model_time_budget  # seconds of model time
        self.model = _model(name, model)  # the loaded model its generates use when they name none
        self.models = _strings(name, "models", models)  # models it asks to use ("*": all its parent may)
        self.source: str | None = None  # how it was found: "builtin", "entry point", a path
        self._main: Main | None = None
        self._sig: inspect.Signature | None = None
        self._hints: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    def main(self, fn: Main) -> Main:
        """Decorator: the app's entry point, ``async def main(sys, *args, **kwargs)``."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{self.name}: main must be an `async def` function")
        sig = inspect.signature(fn)
        if not sig.parameters:
            raise TypeError(f"{self.name}: main must take the Sys handle as its first parameter")
        self._main, self._sig = fn, sig
        try:
            hints = typing.get_type_hints(fn, include_extras=True)  # Annotated[int, Field(ge=1)] checks too
        except Exception:  # unresolvable annotations: no conversion
            hints = {}
        first = next(iter(sig.parameters))
        unknown = [n for n in self.secret if n not in sig.parameters or n == first]
        if unknown:
            raise TypeError(f"{self.name}: secret={unknown} names no parameter of main; "
                            f"name some of {list(sig.parameters)[1:]}")
        self._hints = {k: v for k, v in hints.items() if k not in (first, "return")}
        if not self.description and fn.__doc__:
            self.description = inspect.cleandoc(fn.__doc__).splitlines()[0]
        return fn

    def shown(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """args (as ``bind`` returned them) with the values of secret parameters replaced by ``"***"``."""
        if not self.secret or self._sig is None:
            return args
        names: list[str] = []  # the parameter each positional argument binds to
        star = None
        for i, p in enumerate(self._sig.parameters.values()):
            if i == 0:
                continue
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
            elif p.kind is p.VAR_POSITIONAL:
                star = p.name
        return tuple(SECRET if (names[i] if i < len(names) else star) in self.secret else a
                     for i, a in enumerate(args))

    @property
    def entry(self) -> Main:
        """The main function (the kernel calls ``app.entry(sys, *args, **kwargs)``)."""
        if self._main is None:
            raise TypeError(f"app {self.name!r} has no main; decorate one with @app.main")
        return self._main

    @property
    def signature(self) -> inspect.Signature | None:
        """main's signature, the Sys parameter first (a sandboxed app's: its manifest's); None: no main yet."""
        return self._sig

    def usage(self) -> str:
        """A one-line synopsis: ``echo [WORDS...]``."""
        if self._sig is None:
            return self.name
        parts = [self.name]
        for i, p in enumerate(self._sig.parameters.values()):
            if i == 0:
                continue
            label = p.name.upper()
            if p.kind is p.VAR_POSITIONAL:
                parts.append(f"[{label}...]")
            elif p.kind is p.VAR_KEYWORD:
                parts.append("[--KEY=VALUE...]")
            elif p.kind is p.KEYWORD_ONLY:
                parts.append(f"[--{p.name}={label}]" if p.default is not p.empty else f"--{p.name}={label}")
            elif p.default is not p.empty:
                parts.append(f"[{label}]")
            else:
                parts.append(label)
        return " ".join(parts)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Check args against main's signature and convert them by its annotations.

        Raises InvalidArguments (with the usage line) before any process starts.
        """
        sig = self._sig
        if sig is None:
            raise InvalidArguments(f"app {self.name!r} has no main; decorate one with @app.main")
        try:
            bound = sig.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}: {exc}; usage: {self.usage()}") from None
        params = sig.parameters
        for name, value in list(bound.arguments.items())[1:]:
            hint = self._hints.get(name)
            if hint is None or hint is Any:
                continue
            kind = params[name].kind
            try:
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    value = tuple(_convert(hint, v) for v in value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    value = {k: _convert(hint, v) for k, v in value.items()}
                else:
                    value = _convert(hint, value)
            except ValidationError as exc:
                problem = exc.errors()[0]["msg"]
                raise InvalidArguments(
                    f"{self.name}: bad value {value!r} for {name}: {problem}; usage: {self.usage()}"
                ) from None
            bound.arguments[name] = value
        return tuple(bound.args[1:]), dict(bound.kwargs)


SECRET = "***"  # what ps shows for an argument it may not show
_FORBIDDEN = frozenset(":/\\*")


def check_name(name: Any) -> str:
    """name, if it can name an app; ValueError otherwise.

    Rule: an app name never looks like a namespace of another kind (``pid:3``) or a path, so naming an
    app cannot make it anything but itself.
    """
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValueError(f"an app name is a word of 1 to 100 characters, not {name!r}")
    bad = sorted({ch for ch in name if ch in _FORBIDDEN or ch.isspace() or not ch.isprintable()})
    if bad:
        raise ValueError(f"an app name is one word without {' '.join(sorted(_FORBIDDEN))} or spaces, "
                         f"not {name!r} (it has {bad}); use letters, digits, '-', '_' or '.'")
    return name


def _namespaces(app: str, asked: Iterable[str]) -> tuple[str, ...]:
    """The manifest's memory namespaces; another process's private one (pid:N) cannot be asked for."""
    names = (asked,) if isinstance(asked, str) else tuple(asked)
    for ns in names:
        if not isinstance(ns, str):
            raise ValueError(f"{app}: a memory namespace is a string, not {ns!r}")
        if ns.startswith("pid:"):
            raise ValueError(f"{app}: a manifest cannot ask for a process's private namespace {ns!r}; its own "
                             "is held without asking, and a spawner may share one with caps={'memory': [...]}")
    return names


def _model(app: str, model: Any) -> str | None:
    if model is not None and (not isinstance(model, str) or not model):
        raise ValueError(f"{app}: model names a loaded model (a string) or is None, not {model!r:.80}")
    return model


def _strings(app: str, what: str, asked: Any) -> tuple[str, ...]:
    names = (asked,) if isinstance(asked, str) else tuple(asked)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{app}: {what} is a list of names, not one holding {name!r:.80}")
    return names


_adapters: dict[Any, TypeAdapter] = {}


def _convert(hint: Any, value: Any) -> Any:
    adapter = _adapters.get(hint)
    if adapter is None:
        adapter = _adapters[hint] = TypeAdapter(hint)
    return adapter.validate_python(value)
