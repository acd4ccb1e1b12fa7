"""Finding apps by name: built-ins, installed packages' entry points, and file paths.

Rule: a spec is resolved in this order: a path (``file.py`` or ``file.py:attr``), a module spec
(``pkg.mod:attr``), a built-in app (a module in this package defining ``app``), an entry point in the
group ``llmasos.apps``. Failure names the closest known app.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from llmasos.apps.app import App
from llmasos.syscalls.errors import NoSuchApp

ENTRY_POINT_GROUP = "llmasos.apps"
_NOT_APPS = {"app", "registry"}
_cache: dict[str, App] = {}


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
        except NoSuchApp:
            continue
    return apps


def find_app(spec: str) -> App:
    """The App named by spec; raises NoSuchApp with a suggestion."""
    if spec in _cache:
        return _cache[spec]
    app = _resolve(spec)
    _cache[spec] = app
    return app


def app_spec(app: App) -> str | None:
    """How ``find_app`` finds app again after a restart (None when it cannot)."""
    for spec, cached in list(_cache.items()):
        if cached is app:
            target, sep, attr = spec.partition(":")
            if target.endswith(".py") or "/" in target or "\\" in target:
                return str(Path(target).expanduser().resolve()) + sep + attr
            return spec
    module = sys.modules.get(getattr(app.entry, "__module__", ""), None) if app._main else None
    if module is None:
        return None
    for attr, value in vars(module).items():
        if value is app:
            name = module.__name__
            if name == "__main__" or name.startswith("llmasos_user_app_"):
                path = getattr(module, "__file__", None)
                return f"{Path(path).resolve()}:{attr}" if path else None
            return f"{name}:{attr}"
    return None


def _resolve(spec: str) -> App:
    target, _, attr = spec.partition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        return _from_file(Path(target), attr or "app", spec)
    if attr:
        return _from_module(target, attr, spec, source=f"module {target}")
    if spec in builtin_names():
        return _from_module(f"llmasos.apps.{spec}", "app", spec, source="builtin")
    ep = _entry_points().get(spec)
    if ep is not None:
        try:
            obj = ep.load()
        except Exception as exc:
            raise NoSuchApp(f"app {spec!r} from an installed package failed to load: {exc}") from exc
        return _check(obj, spec, source=f"entry point {ep.value}")
    known = [*builtin_names(), *_entry_points()]
    close = difflib.get_close_matches(spec, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known apps: {', '.join(sorted(known))}"
    raise NoSuchApp(f"no app named {spec!r}{hint} (or give a path: file.py:app)")


def _from_module(module: str, attr: str, spec: str, *, source: str) -> App:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise NoSuchApp(f"cannot import {module!r} for app {spec!r}: {exc}") from exc
    return _check(getattr(mod, attr, None), spec, source=source)


def _from_file(path: Path, attr: str, spec: str) -> App:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise NoSuchApp(f"no app file at {path}")
    name = f"llmasos_user_app_{abs(hash(str(path)))}"
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
    return _check(getattr(mod, attr, None), spec, source=str(path))


def _check(obj: object, spec: str, *, source: str) -> App:
    if not isinstance(obj, App):
        raise NoSuchApp(f"{spec!r} ({source}) is not an llmasos App (got {type(obj).__name__})")
    if obj.source is None:
        obj.source = source
    return obj
