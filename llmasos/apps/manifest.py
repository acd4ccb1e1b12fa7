"""An installed app's manifest, read without running its code: an AST read of its ``App(...)`` call.

Rule: the kernel never imports an untrusted package to learn what it is. The manifest of an app from an
entry point is the literal ``name = App("name", "description", version=..., tools=[...], ...)``
assignment at the top level of the module the entry point names, plus the signature of the function
decorated with ``@name.main``; both are read with ``ast`` from the module's source file, found on
``sys.path`` by ``PathFinder`` (which executes nothing, not even a parent package's ``__init__``) or
inside a wheel before it is installed. A value that is not a literal (a variable, a call) makes the
manifest unreadable: ``ManifestError`` says which field. Every field is bounded (``MANIFEST_LIMITS``),
so a hostile manifest cannot ask for an unbounded table, prompt or file.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import asdict, dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from llmasos.apps.app import App, check_name
from llmasos.errors import LlmasosError


class ManifestError(LlmasosError):
    """An app's manifest cannot be read without running its code, or asks for something malformed."""


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """Bounds of what a manifest may hold (documented in docs/apps.md)."""

    source_bytes: int = 1 << 20  # size of the module file read for the manifest
    description_chars: int = 1000  # the description
    list_items: int = 64  # tools, memory namespaces, secret parameters
    item_chars: int = 100  # one tool name, namespace or parameter name
    version_chars: int = 64  # the version string


MANIFEST_LIMITS = ManifestLimits()

CAPS = ("tools", "memory", "can_spawn", "max_children", "signal", "see_args", "token_budget",
        "syscall_budget", "time_budget", "model_time_budget")
"""The manifest fields that ask for capabilities (what the installer shows and the user accepts)."""

_LISTS = ("tools", "memory", "secret")
_BOOLS = ("can_spawn", "restartable", "signal", "see_args", "sandbox", "trusted")
_INTS = ("max_children", "token_budget", "syscall_budget")
_FLOATS = ("time_budget", "model_time_budget")
_KNOWN = {"name", "description", "version", *_LISTS, *_BOOLS, *_INTS, *_FLOATS}


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of the app's main, as its source declares it (no annotation is evaluated)."""

    name: str
    kind: str  # inspect.Parameter kind name: POSITIONAL_OR_KEYWORD, VAR_POSITIONAL, ...
    has_default: bool


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an app declares: identity, the capabilities it asks for, and the shape of its main."""

    name: str
    version: str = "0"
    description: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # every other App(...) keyword, checked
    params: tuple[Param, ...] = ()
    entry: str = ""  # the entry point's value, module:attr

    @property
    def trusted(self) -> bool:
        return bool(self.fields.get("trusted", False))

    def caps(self) -> dict[str, Any]:
        """The capabilities it asks for, every CAPS key present (unasked ones at their App default)."""
        defaults = {"tools": [], "memory": [], "can_spawn": False, "max_children": None, "signal": False,
                    "see_args": False, "token_budget": None, "syscall_budget": None, "time_budget": None,
                    "model_time_budget": None}
        return {k: self.fields.get(k, defaults[k]) for k in CAPS}

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = [p.name for p in self.params]
        return out

    def app(self, *, source: str) -> App:
        """An App standing for this manifest in the kernel: its caps, and a main it must never run here.

        Its signature is main's, without annotations (the sandbox's child converts the arguments).
        """
        kwargs = {k: v for k, v in self.fields.items() if k != "sandbox"}
        try:
            app = App(self.name, self.description, version=self.version, sandbox=True, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{self.name}: {exc}") from None
        names = {p.name for p in self.params}
        unknown = [n for n in app.secret if n not in names]
        if unknown:
            raise ManifestError(f"{self.name}: secret={unknown} names no parameter of main")

        async def main(sys: Any, *args: Any, **kw: Any) -> Any:
            raise RuntimeError(f"app {self.name!r} runs only in its sandbox")

        app._main = main
        app._sig = inspect.Signature([inspect.Parameter("sys", inspect.Parameter.POSITIONAL_ONLY), *(
            inspect.Parameter(p.name, getattr(inspect.Parameter, p.kind),
                              default=None if p.has_default else inspect.Parameter.empty)
            for p in self.params)])
        app.source = source
        return app


def check_version(version: Any) -> str:
    """version, if it is a PEP 440 version of at most version_chars characters; ManifestError otherwise."""
    if not isinstance(version, str) or len(version) > MANIFEST_LIMITS.version_chars:
        raise ManifestError(f"a version is a string such as '1.0.2' of at most "
                            f"{MANIFEST_LIMITS.version_chars} characters, not {_short(version)}")
    try:
        Version(version)
    except InvalidVersion:
        raise ManifestError(f"version {_short(version)} is not a PEP 440 version; write it as '1.0' or "
                            "'0.3.1'") from None
    return version


def read_source(source: str, attr: str, *, entry: str = "") -> Manifest:
    """The manifest of the App assigned to attr in the module whose source text is source."""
    where = entry or attr
    if len(source.encode(errors="replace")) > MANIFEST_LIMITS.source_bytes:
        raise ManifestError(f"{where}: the module is over {MANIFEST_LIMITS.source_bytes} bytes; keep the "
                            "App(...) in a small module")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ManifestError(f"{where}: the module does not parse: {type(exc).__name__}: {exc}") from None
    call = next((node.value for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                 and _is_app(node.value.func) and any(isinstance(t, ast.Name) and t.id == attr
                                                      for t in node.targets)), None)
    if call is None:
        raise ManifestError(f"{where}: no top-level `{attr} = App(...)` in the module; the installer reads the "
                            "manifest from that line without running the package")
    values: dict[str, Any] = {}
    for key, node in zip(("name", "description"), call.args, strict=False):
        values[key] = _literal(node, key, where)
    if len(call.args) > 2:
        raise ManifestError(f"{where}: App(...) takes at most two positional values (name, description)")
    for kw in call.keywords:
        if kw.arg is None:
            raise ManifestError(f"{where}: App(**...) cannot be read without running it; write each field")
        values[kw.arg] = _literal(kw.value, kw.arg, where)
    main = next((node for node in tree.body if isinstance(node, ast.AsyncFunctionDef) and any(
        isinstance(d, ast.Attribute) and d.attr == "main" and isinstance(d.value, ast.Name) and d.value.id == attr
        for d in node.decorator_list)), None)
    if main is None:
        raise ManifestError(f"{where}: no top-level `@{attr}.main async def main(sys, ...)` in the module")
    if not values.get("description"):
        values["description"] = (ast.get_docstring(main) or "").strip().split("\n")[0]
    return check(values, _params(main.args), entry=entry)


def check(values: dict[str, Any], params: tuple[Param, ...] = (), *, entry: str = "") -> Manifest:
    """A Manifest from raw field values, each checked (ManifestError names the first bad one)."""
    lim = MANIFEST_LIMITS
    unknown = sorted(set(values) - _KNOWN)
    if unknown:
        raise ManifestError(f"unknown manifest fields {unknown}; App(...) takes {sorted(_KNOWN)}")
    try:
        name = check_name(values.get("name"))
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    description = values.get("description") or ""
    if not isinstance(description, str) or len(description) > lim.description_chars:
        raise ManifestError(f"{name}: the description is a string of at most {lim.description_chars} characters")
    version = check_version(values.get("version", "0"))
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("name", "description", "version"):
            continue
        if key in _LISTS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or len(items) > lim.list_items or not all(
                    isinstance(i, str) and 0 < len(i) <= lim.item_chars for i in items):
                raise ManifestError(f"{name}: {key} is a list of at most {lim.list_items} names of 1 to "
                                    f"{lim.item_chars} characters, not {_short(value)}")
            if key == "memory" and any(i.startswith("pid:") for i in items):
                raise ManifestError(f"{name}: a manifest cannot ask for a process's private namespace")
            value = list(items)
        elif key in _BOOLS and not isinstance(value, bool):
            raise ManifestError(f"{name}: {key} is True or False, not {_short(value)}")
        elif key in _INTS and value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                                     or not 0 <= value <= 1 << 62):
            raise ManifestError(f"{name}: {key} is a whole number of at least 0, not {_short(value)}")
        elif key == "priority" and (isinstance(value, bool) or not isinstance(value, int)
                                    or abs(value) > 1_000_000):
            raise ManifestError(f"{name}: priority is a whole number from -1,000,000 to 1,000,000 (a nice value), "
                                f"not {_short(value)}")
        elif key in _FLOATS and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                       or not 0 < value < 1e12):
            raise ManifestError(f"{name}: {key} is a positive number of seconds, not {_short(value)}")
        fields[key] = value
    return Manifest(name=name, version=version, description=description, fields=fields, params=params,
                    entry=entry)


def locate(entry: str) -> Path:
    """The source file of the module an entry point value (``pkg.mod:attr``) names, found without
    importing anything; ManifestError when there is none."""
    module, _, attr = entry.partition(":")
    if not module or not attr.isidentifier():
        raise ManifestError(f"entry point {entry!r} must name a module attribute: 'package.module:app'")
    parts = module.split(".")
    path: list[str] | None = None
    spec = None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[:i + 1]), path)
        if spec is None:
            raise ManifestError(f"module {module!r} of entry point {entry!r} is not installed on this path")
        path = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    if not origin or not origin.endswith(".py"):
        raise ManifestError(f"module {module!r} of {entry!r} is not a Python source file ({origin}); the "
                            "manifest is read from source")
    return Path(origin)


def read_entry(entry: str) -> Manifest:
    """The manifest of an installed entry point (``pkg.mod:attr``), read from its source file."""
    path = locate(entry)
    try:
        if path.stat().st_size > MANIFEST_LIMITS.source_bytes:
            raise ManifestError(f"{entry}: {path} is over {MANIFEST_LIMITS.source_bytes} bytes")
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{entry}: cannot read {path}: {exc}") from None
    return read_source(source, entry.partition(":")[2], entry=entry)


def _is_app(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "App") or (isinstance(func, ast.Attribute) and func.attr == "App")


def _literal(node: ast.expr, key: str, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ManifestError(f"{where}: App(..., {key}=...) is not a literal value; the installer reads the "
                            "manifest without running the package, so write the value itself") from None


def _params(args: ast.arguments) -> tuple[Param, ...]:
    out: list[Param] = []
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for i, a in enumerate(positional):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append(Param(a.arg, kind, i >= first_default))
    if args.vararg is not None:
        out.append(Param(args.vararg.arg, "VAR_POSITIONAL", False))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(Param(a.arg, "KEYWORD_ONLY", d is not None))
    if args.kwarg is not None:
        out.append(Param(args.kwarg.arg, "VAR_KEYWORD", False))
    if not out:
        raise ManifestError("main must take the Sys handle as its first parameter")
    return tuple(out[1:])  # (the first is the Sys handle)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
