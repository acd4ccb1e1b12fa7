"""Finding apps by name: built-ins, installed packages' entry points, and file paths.

Rule: a spec is resolved in this order: a path (``file.py`` or ``file.py:attr``), a module spec
(``pkg.mod:attr``), a built-in app (a module in this package defining ``app``), an entry point in the
group ``llmasos.apps``. Failure names the closest known app. A file or module is executed at most once
per process: one already loaded (the running script ``__main__`` first, matched by resolved path or by
``python -m`` name) is used as it is, so its tools are not registered twice. ``app_spec`` is the
inverse: the spec that finds an app again in a restarted process (and in a sandboxed app's child).
An app from an entry point is never imported here: its manifest is read from its source
(``manifest.read_entry``), it must be enabled (``llmasos apps install``, recorded by ``store``) with the
capabilities it asks for today, and it runs sandboxed, its module imported only in the child
(``child_loader``), unless its manifest says ``trusted=True`` and the user accepted that; built-ins
and apps given by path or module run as they declare.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from llmasos.apps import store
from llmasos.apps.app import App
from llmasos.apps.manifest import ManifestError, read_entry
from llmasos.syscalls.errors import NoSuchApp, SyscallError

ENTRY_POINT_GROUP = "llmasos.apps"
_NOT_APPS = {"app", "errors", "registry", "manifest", "store", "index", "scaffold"}
_FILE_MODULE = "llmasos_user_app_"  # the module name prefix of an app file loaded by path
_cache: dict[str, App] = {}  # canonical spec -> app
_seen: dict[str, App] = {}  # spec as given -> app (a memo in front of _cache)


def builtin_names() -> list[str]:
    """Names of the apps that ship with llmasos."""
    import llmasos.apps as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in _NOT_APPS)


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_apps() -> list[App]:
    """Every app found by name (built-ins first, then installed packages')."""
    apps, seen = [], set()
    for name in [*builtin_names(), *sorted(_entry_points())]:
        if name in seen:
            continue
        seen.add(name)
        try:
            apps.append(find_app(name))
        except SyscallError:  # (an installed app that is not enabled, or unreadable: `store.installed`)
            continue
    return apps


def find_app(spec: str) -> App:
    """The App named by spec; raises NoSuchApp with a suggestion."""
    app = _seen.get(spec)
    if app is not None:  # (spawns by the same spec skip resolving its path again)
        return app
    key = _canonical(spec)
    app = _cache.get(key)
    if app is None:
        app = _cache[key] = _resolve(key)
    _seen[spec] = app
    return app


def forget(spec: str | None = None) -> None:
    """Drop what find_app remembers (of spec, or everything): the next find_app resolves it again."""
    if spec is None:
        _cache.clear()
        _seen.clear()
        return
    gone = {id(a) for a in (_cache.pop(_canonical(spec), None), _seen.pop(spec, None)) if a is not None}
    for memo in (_cache, _seen):
        for key in [k for k, a in memo.items() if id(a) in gone]:
            del memo[key]


def app_spec(app: App) -> str | None:
    """The spec by which ``find_app`` finds app again after a restart (None when there is none).

    An app found by ``find_app`` keeps its spec (a path made absolute). An App object is named by the
    module attribute that holds it: ``pkg.mod:attr`` (also for a script started as ``python -m
    pkg.mod``), or ``/resolved/file.py:attr`` for ``python file.py`` and a file loaded by path.
    """
    for spec, cached in list(_cache.items()):
        if cached is app:
            return spec
    module = sys.modules.get(getattr(app._main, "__module__", None) or "")
    attr = next((k for k, v in vars(module).items() if v is app), None) if module is not None else None
    if attr is None:
        return None
    name = module.__name__
    if name == "__main__" and getattr(module, "__spec__", None) is not None:
        name = module.__spec__.name  # started as `python -m name`
    elif name == "__main__" or name.startswith(_FILE_MODULE):
        path = getattr(module, "__file__", None)
        return f"{Path(path).resolve()}:{attr}" if path else None
    return f"{name}:{attr}"


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _canonical(spec: str) -> str:
    """A path spec as ``/resolved/file.py:attr``; any other spec as it is."""
    target, _, attr = spec.partition(":")
    if not _is_path(target):
        return spec
    return f"{Path(target).expanduser().resolve()}:{attr or 'app'}"


def _resolve(spec: str) -> App:
    target, _, attr = spec.partition(":")
    if _is_path(target):
        return _from_file(Path(target), attr, spec)
    if attr:
        return _from_module(target, attr, spec, source=f"module {target}")
    if spec in builtin_names():
        return _from_module(f"llmasos.apps.{spec}", "app", spec, source="builtin")
    ep = _entry_points().get(spec)
    if ep is not None:
        return _installed(spec, ep)
    known = [*builtin_names(), *_entry_points()]
    close = difflib.get_close_matches(spec, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known apps: {', '.join(sorted(known))}"
    raise NoSuchApp(f"no app named {spec!r}{hint} (or give a path: file.py:app)")


def _installed(name: str, ep: object) -> App:
    """The app of an installed package's entry point, from its static manifest; imported here only
    when it is trusted and enabled as trusted."""
    try:
        manifest = read_entry(ep.value)
    except ManifestError as exc:
        raise NoSuchApp(f"app {name!r} from an installed package has no readable manifest: {exc}") from None
    if manifest.name != name:
        raise NoSuchApp(f"entry point {name!r} ({ep.value}) declares an app named {manifest.name!r}; the "
                        "entry point's name and App(...)'s name must be the same")
    store.check_enabled(manifest)  # PermissionDenied: not enabled, or it asks for more than was accepted
    if manifest.trusted:
        try:
            obj = ep.load()
        except Exception as exc:
            raise NoSuchApp(f"app {name!r} from an installed package failed to load: {exc}") from exc
        app = _check(obj, name, source=f"entry point {ep.value} (trusted)")
        app = copy.copy(app)  # (the App found otherwise is unchanged)
        app.sandbox = False
        return app
    return manifest.app(source=f"entry point {ep.value}")


def child_loader(spec: str) -> Callable[[], App]:
    """How the sandbox's child loads the app spec names: resolved now (an installed app's entry point is
    found before the child is confined, when its metadata is still readable), imported when called."""
    ep = _entry_points().get(spec) if ":" not in spec and not _is_path(spec) and spec not in builtin_names() \
        else None
    if ep is None:
        return lambda: find_app(spec)
    return lambda: _check(ep.load(), spec, source=f"entry point {ep.value}")


def module_of(spec: str) -> str | None:
    """The top-level module name an app spec lives in, without importing it (None: a path or built-in)."""
    target = spec.partition(":")[0]
    if _is_path(target) or spec in builtin_names():
        return None
    if ":" not in spec:
        ep = _entry_points().get(spec)
        if ep is None:
            return None
        target = ep.value.partition(":")[0]
    return target.split(".")[0]


def _from_module(module: str, attr: str, spec: str, *, source: str) -> App:
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == module:
        return _check(getattr(main, attr, None), spec, source=source)  # the running `python -m module`
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise NoSuchApp(f"cannot import {module!r} for app {spec!r}: {exc}") from exc
    return _check(getattr(mod, attr, None), spec, source=source)


def _from_file(path: Path, attr: str, spec: str) -> App:
    if not path.is_file():
        raise NoSuchApp(f"no app file at {path}")
    mod = _loaded_from(path) or _exec_file(path)
    return _check(getattr(mod, attr, None), spec, source=str(path))


def _loaded_from(path: Path) -> ModuleType | None:
    """The module already loaded from the file at path (resolved), the running script first."""
    main = sys.modules.get("__main__")
    candidates = [main, *(m for m in list(sys.modules.values()) if m is not main)]
    for mod in candidates:
        file = getattr(mod, "__file__", None)
        # A file symlinked under another name is recognised only as the running script.
        if file and (mod is main or Path(file).name == path.name) and Path(file).resolve() == path:
            return mod
    return None


def _exec_file(path: Path) -> ModuleType:
    name = f"{_FILE_MODULE}{abs(hash(str(path)))}"
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise NoSuchApp(f"{path} is not a Python file")
    mod = importlib.util.module_from_spec(loader)
    sys.modules[name] = mod
    try:
        loader.loader.exec_module(mod)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise NoSuchApp(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    return mod


def _check(obj: object, spec: str, *, source: str) -> App:
    if not isinstance(obj, App):
        raise NoSuchApp(f"{spec!r} ({source}) is not an llmasos App (got {type(obj).__name__})")
    if obj.source is None:
        obj.source = source
    return obj
