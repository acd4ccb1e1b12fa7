"""The config file, ``llmasos.toml``: a deployment's models, kernel settings and the apps it starts.

    [kernel]                        # any KernelConfig field but engine and models
    policy = "fair"
    database = "postgresql+psycopg://kernel@db/llmasos"

    [models.small]                  # or: [models] small = "smollm2-135m"
    engine = "smollm2-135m"
    default = true

    [[apps]]                        # started at boot, as children of the root process
    name = "chat"
    caps = { token_budget = 20000 }

Rule: the file is validated whole before anything boots (pydantic, strict: a number is not a string);
an unknown key or a bad value is a ``ConfigFileError`` naming the file, the key and what is allowed,
and KernelConfig's own checks run on the result with the file named too. Boot apps are spawned through
the chokepoint as the root process's syscalls (``start_apps``); one the kernel already runs after a
restart (recovery restored it) is not started twice.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from llmasos.kernel.caps import FIELDS as CAPS
from llmasos.kernel.config import ConfigError, KernelConfig
from llmasos.kernel.models import KEYS as MODEL_KEYS
from llmasos.syscalls.calls import Spawn

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel

FILENAME = "llmasos.toml"
SECTIONS = ("kernel", "models", "apps")
_NOT_IN_FILE = ("engine", "models")  # [models.NAME] declares the models


class ConfigFileError(ConfigError):
    """The config file is missing, is not TOML, or holds an unknown key or a bad value."""


_STRICT = ConfigDict(extra="forbid", strict=True)


def _kernel_section() -> type[BaseModel]:
    """A pydantic model of the [kernel] table: KernelConfig's fields and types (home as a string)."""
    hints = typing.get_type_hints(KernelConfig)
    spec: dict[str, Any] = {}
    for f in fields(KernelConfig):
        if f.name in _NOT_IN_FILE:
            continue
        kind = str | None if f.name == "home" else hints[f.name]
        spec[f.name] = (kind, None)  # absent: KernelConfig's default
    return create_model("KernelSection", __config__=_STRICT, **spec)


KernelSection = _kernel_section()


class ModelSection(BaseModel):
    """One [models.NAME] table (kernel/models.py: ModelSpec)."""

    model_config = _STRICT
    engine: str | None = Field(None, description="model name, path, 'fake', or a remote spec; none: the default")
    policy: str | None = None
    max_batch: int | None = None
    max_step_tokens: int | None = None
    max_resident_tokens: int | None = None
    quantum: int | None = None
    starvation_steps: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    default: bool = False


class AppSection(BaseModel):
    """One [[apps]] entry: an app started at boot."""

    model_config = _STRICT
    name: str = Field(min_length=1, description="an app name, file.py[:app] (relative to the file) or module:attr")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    caps: dict[str, Any] | None = None
    priority: int | None = None


class ConfigFile(BaseModel):
    model_config = _STRICT
    kernel: KernelSection = Field(default_factory=KernelSection)  # type: ignore[valid-type]
    models: dict[str, str | ModelSection] = Field(default_factory=dict)
    apps: list[AppSection] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BootApp:
    """An app the deployment starts at boot."""

    app: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, Any] | None = None
    priority: int | None = None


@dataclass(slots=True)
class Deployment:
    """What a config file declares: the kernel's config and the apps to start once it has booted."""

    config: KernelConfig
    apps: list[BootApp] = field(default_factory=list)
    path: Path | None = None  # the file it came from


def find_config(path: str | Path | None = None, cwd: Path | None = None) -> Path | None:
    """The config file to read: path (which must exist), else ./llmasos.toml if there is one."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise ConfigFileError(f"{found}: no such config file (--config names an llmasos.toml; docs/config.md)")
        return found
    here = (cwd or Path.cwd()) / FILENAME
    return here if here.is_file() else None


def load_config(path: str | Path, **overrides: Any) -> Deployment:
    """Read and validate the config file at path; overrides (KernelConfig fields) win over the file's."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        parsed = ConfigFile.model_validate(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not ("str" in e["loc"] and isinstance(e.get("input"), dict))]
        raise ConfigFileError(f"{path}: " + "; ".join(_explain(e) for e in errors[:5])) from None
    kernel = parsed.kernel.model_dump(exclude_none=True)
    models = {name: spec if isinstance(spec, str) else spec.model_dump(exclude_none=True)
              for name, spec in parsed.models.items()}
    try:
        config = KernelConfig(**{**kernel, **({"models": models} if models else {}), **overrides})
    except ConfigError as exc:
        message = str(exc).replace("KernelConfig.models: ", "[models] ").replace("KernelConfig.", "[kernel] ")
        if message.startswith("unknown scheduling policy"):
            message = "[kernel] policy: " + message
        raise ConfigFileError(f"{path}: {message}") from None
    apps = [_boot_app(path, i, a) for i, a in enumerate(parsed.apps)]
    return Deployment(config, apps, path)


def _explain(error: Any) -> str:
    """One pydantic error as the file's key and what it accepts."""
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "str", "ModelSection"))]
    section = loc[0] if loc else ""
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        allowed = {"kernel": [f.name for f in fields(KernelConfig) if f.name not in _NOT_IN_FILE],
                   "models": [k for k in MODEL_KEYS], "apps": list(AppSection.model_fields)}.get(section)
        if len(loc) == 1:
            return f"unknown section [{loc[0]}]; the sections are {', '.join(f'[{s}]' for s in SECTIONS)}"
        return f"unknown key {key}; allowed: {', '.join(allowed or [])}"
    if error["type"] == "missing":
        return f"{key} is missing: {error['msg'].lower()}"
    value = repr(error.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"{key} = {value}: {error['msg']}"


def _key(loc: list[str]) -> str:
    if not loc:
        return "the file"
    if loc[0] == "apps" and len(loc) > 1:
        return f"[[apps]] #{int(loc[1]) + 1}" + (f" {'.'.join(loc[2:])}" if len(loc) > 2 else "")
    if loc[0] == "models" and len(loc) > 1:
        return f"[models.{loc[1]}]" + (f" {'.'.join(loc[2:])}" if len(loc) > 2 else "")
    return f"[{loc[0]}]" + (f" {'.'.join(loc[1:])}" if len(loc) > 1 else "")


def _boot_app(path: Path, i: int, a: AppSection) -> BootApp:
    where = f"{path}: [[apps]] #{i + 1} ({a.name!r})"
    unknown = sorted(set(a.caps or ()) - set(CAPS))
    if unknown:
        raise ConfigFileError(f"{where}: unknown capabilities {unknown}; allowed: {', '.join(CAPS)}")
    name = a.name
    file, colon, attr = name.partition(":")
    if file.endswith(".py") and not Path(file).is_absolute():  # relative to the config file
        name = str((path.parent / file).resolve()) + colon + attr
    from llmasos.apps.registry import find_app

    try:
        find_app(name).bind(tuple(a.args), dict(a.kwargs))
    except Exception as exc:  # NoSuchApp, InvalidArguments: named with the entry
        raise ConfigFileError(f"{where}: {exc}") from None
    return BootApp(name, tuple(a.args), dict(a.kwargs), a.caps, a.priority)


async def start_apps(kernel: Kernel, apps: list[BootApp]) -> list[int]:
    """Spawn the boot apps as the root process; one already running (restored after a restart, same app
    and arguments) is not started again. Returns the pids, started or found."""
    from llmasos.apps.registry import find_app

    pids = []
    for boot in apps:
        app = find_app(boot.app)
        args, kwargs = app.bind(boot.args, dict(boot.kwargs))
        running = next((p.pid for p in kernel.processes.values() if p.alive and p.face is None and p.parent == 0
                        and p.app.name == app.name and p.args == args and p.kwargs == kwargs), None)
        if running is None:
            running = await kernel.root.syscall(Spawn(boot.app, boot.args, dict(boot.kwargs), boot.priority,
                                                      boot.caps))
        pids.append(running)
    return pids
