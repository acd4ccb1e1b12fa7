"""The model table: every model a kernel serves, by name, each with its own LLM loop and scheduler.

Rule: a model entry is (name, engine or engine spec string, options), declared in
``KernelConfig.models`` (or, as before, one ``KernelConfig.engine``: then the table holds that one
model, named after its engine). Each model batches only its own sequences: its ``LLMLoop`` owns its
engine and its scheduler (its own policy and limits, by default the kernel's). Any ``Engine`` fits:
a spec string is loaded by ``engine.loader.open_engine`` (a model name, a path, or any spec the loader
knows, such as a remote server's), ``"fake"`` is the scripted test engine. A model that fails to load
fails the boot with an error naming it; the ones loaded before it are released.

A model the table does not declare but the model library names (kernel/lazy.py) is loaded by the first
request that names it (``ensure``), on the model thread, once: concurrent first requests wait for that
one load. At most ``KernelConfig.lazy_models`` such models are resident; at the limit the least recently
used idle one is unloaded first, and when none is idle the request is refused (NoSuchModel) and may try
again. A load that fails is a ModelUnavailable for that request and every later one, without a retry,
until the library entry changes; the kernel goes on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.engine import worker
from llmasos.engine.errors import EngineSetupError
from llmasos.engine.loader import is_engine, open_engine
from llmasos.kernel import lazy
from llmasos.kernel.config import ConfigError
from llmasos.kernel.llm import LLMLoop
from llmasos.kernel.sched import POLICIES, SchedLimits, make_scheduler
from llmasos.syscalls.errors import InvalidArguments, ModelUnavailable, NoSuchModel
from llmasos.syscalls.types import ModelInfo

if TYPE_CHECKING:
    from llmasos.engine.base import Engine, Sequence
    from llmasos.kernel.config import KernelConfig

LIMITS = tuple(f.name for f in fields(SchedLimits))  # per-model overrides of the kernel's scheduler limits
KEYS = ("engine", "policy", *LIMITS, "options", "default")  # what a model entry may say
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
SHOWN = 20  # names listed in an error message at most


class ModelSpecError(ConfigError):
    """A model entry of the kernel's configuration is malformed (its name, engine or options)."""


class ModelLoadError(EngineSetupError):
    """A model of the model table could not be loaded, so the kernel did not boot."""


def check_model_name(name: Any) -> str:
    """name, if it can name a model: 1 to 100 characters, a letter or digit first, then letters, digits
    and ``. _ : / @ + -`` (so a hub id such as ``org/model`` or ``qwen2.5:7b`` fits)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ModelSpecError(f"a model name is 1 to 100 characters: a letter or digit, then letters, digits or "
                             f"'. _ : / @ + -'; not {shorten(name)}")
    return name


def shorten(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def listed(names: Any) -> str:
    """Names for an error message: the first SHOWN, and how many more."""
    names = list(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(map(repr, names[:SHOWN])) + more if names else "none"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One entry of the model table, before it is loaded."""

    engine: Any = None  # an Engine, a spec string (model name, path, "fake", a loader's spec), None: the default
    policy: str | None = None  # scheduling policy of this model's queue; None: KernelConfig.policy
    limits: dict[str, int] = field(default_factory=dict)  # SchedLimits fields overridden for this model
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the engine's loader
    default: bool = False  # the kernel's default model (KernelConfig.default_model says the same)


def model_spec(name: str, value: Any) -> ModelSpec:
    """A ModelSpec from what ``KernelConfig.models[name]`` holds: a spec string, an Engine, a ModelSpec,
    or a dict with the keys of ``KEYS``. Raises ModelSpecError naming the model and the key."""
    check_model_name(name)
    if isinstance(value, ModelSpec):
        value = {"engine": value.engine, "policy": value.policy, **value.limits, "options": value.options,
                 "default": value.default}
    elif value is None or isinstance(value, str) or is_engine(value):
        value = {"engine": value}
    if not isinstance(value, dict):
        raise ModelSpecError(f"model {name!r}: give an engine spec string, an Engine or a dict of {list(KEYS)}; "
                             f"not {type(value).__name__}")
    unknown = sorted(str(k) for k in set(value) - set(KEYS))
    if unknown:
        raise ModelSpecError(f"model {name!r}: unknown keys {unknown}; a model entry may hold {list(KEYS)}")
    engine = value.get("engine")
    if not (engine is None or is_engine(engine) or (isinstance(engine, str) and engine.strip())):
        raise ModelSpecError(f"model {name!r}: engine is a spec string (a model name, a path, 'fake', or a "
                             f"remote server's spec) or an Engine object; not {shorten(engine)}")
    policy = value.get("policy")
    if policy is not None and policy not in POLICIES:
        raise ModelSpecError(f"model {name!r}: unknown scheduling policy {shorten(policy)}; choose one of: "
                             f"{', '.join(sorted(POLICIES))}")
    limits = {}
    for key in LIMITS:
        if value.get(key) is not None:
            limit = value[key]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ModelSpecError(f"model {name!r}: {key} must be a positive integer, not {shorten(limit)}")
            limits[key] = limit
    options = value.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ModelSpecError(f"model {name!r}: options is a table of the engine loader's keyword arguments, "
                             f"not {shorten(options)}")
    default = value.get("default", False)
    if not isinstance(default, bool):
        raise ModelSpecError(f"model {name!r}: default is true or false, not {shorten(default)}")
    return ModelSpec(engine, policy, limits, dict(options), default)


@dataclass(slots=True)
class Model:
    """A loaded model: its engine and the loop that batches its sequences."""

    name: str
    spec: ModelSpec
    engine: Engine
    llm: LLMLoop
    owned: bool  # the kernel built the engine (so it frees it)
    lazy: bool = False  # loaded on first use (not declared in the model table): may be unloaded when idle
    used: float = 0.0  # time.monotonic() of its latest request naming it (lazy ones: the least recent goes)
    scope: anyio.CancelScope | None = None  # a lazy model's loop runs in it (cancelled to unload it)
    stopped: anyio.Event | None = None  # set when a lazy model's loop has ended

    @property
    def kind(self) -> str:
        """How it runs: local (in this process), remote (a server), fake (scripted), or the engine's class."""
        kind = getattr(self.engine, "kind", None)
        if isinstance(kind, str) and kind:
            return kind
        cls = type(self.engine).__name__
        return {"HFEngine": "local", "FakeEngine": "fake", "OpenAIEngine": "remote"}.get(cls, cls)

    @property
    def policy(self) -> str:
        return self.llm.scheduler.policy


class ModelTable:
    """The loaded models by name, in the order they were declared; ``default`` names the default one."""

    def __init__(self) -> None:
        self._models: dict[str, Model] = {}
        self.default: str | None = None
        self.tg: anyio.abc.TaskGroup | None = None  # the kernel's task group: lazy models' loops run in it
        self._loading: dict[str, anyio.Event] = {}  # names being loaded on first use -> set when done
        self._broken: dict[str, tuple[lazy.Fingerprint, str]] = {}  # failed lazy loads: the entry, the error

    def __iter__(self) -> Iterator[Model]:
        return iter(list(self._models.values()))

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: Any = None) -> Model:
        """The model called name (None: the default). NoSuchModel lists the loaded ones."""
        if name is None:
            name = self.default
        elif not isinstance(name, str):
            raise InvalidArguments(f"a model is named by a string, not {type(name).__name__}; "
                                   f"the loaded ones are {listed(self._models)}")
        model = self._models.get(name) if name is not None else None
        if model is None:
            if not self._models:
                raise NoSuchModel("no model is loaded: boot the kernel first")
            raise NoSuchModel(f"no model {shorten(name, 60)} is loaded; the loaded ones are {listed(self._models)} "
                              "(see `models` in the shell, or GET /v1/models)")
        return model

    def cancel(self, seq: Sequence) -> None:
        """Abort seq in whichever model's loop holds it."""
        for model in self._models.values():
            model.llm.cancel(seq)

    async def load(self, config: KernelConfig) -> None:
        """Load every model config declares (one model from config.engine when it declares none); a
        model that config.request_caps names is a ConfigError unless it is loaded or (with
        config.lazy_models) the model library names it, to be loaded on its first request."""
        entries = declared(config)
        try:
            for name, spec in entries.items():
                self._models[name] = await _load(name, spec, config, implicit=config.models is None)
        except BaseException:
            self.close()
            raise
        if config.models is None:  # the one model of engine=: named after what was loaded
            (model,) = self._models.values()
            model.name = _engine_name(model.engine)
            self._models = {model.name: model}
            self.default = model.name
        else:
            self.default = default_model(config)
        asked = (config.request_caps or {}).get("models")
        asked = [asked] if isinstance(asked, str) else asked if isinstance(asked, (list, tuple)) else []
        unknown = sorted({str(name) for name in asked} - {"*", *self._models})
        if unknown and config.lazy_models:  # a model of the library is served on first use
            unknown = sorted(set(unknown) - set(lazy.entries()))
        if unknown:  # every request of the faces would be refused: say so now
            loaded = list(self._models)
            self.close()
            where = " nor in the model library (`llmasos models list`)" if config.lazy_models else ""
            raise ConfigError(f"KernelConfig.request_caps names models that are not loaded{where}: "
                              f"{listed(unknown)}; the loaded ones are {listed(loaded)}")

    async def ensure(self, name: Any, config: KernelConfig) -> None:
        """Make the model called name loaded, if the library names it and the table does not hold it
        (see the module's rule); a name neither holds is left for ``get`` to refuse."""
        if not isinstance(name, str):
            return
        model = self._models.get(name)
        while model is None and name in self._loading:  # another request's first use is loading it
            await self._loading[name].wait()
            model = self._models.get(name)
        if model is not None:
            model.used = time.monotonic()
            return
        if config.lazy_models == 0 or self.tg is None:
            return
        source = lazy.entries().get(name)
        if source is None:
            return
        key = lazy.fingerprint(source)
        why = lazy.problem(source)
        if why is None and self._broken.get(name, (None,))[0] == key:
            why = self._broken[name][1]
        if why is not None:
            raise ModelUnavailable(f"model {name!r} of the model library cannot be served: {why}")
        await self._make_room(name, config.lazy_models)
        if name in self._models or name in self._loading:  # loaded meanwhile (_make_room waited)
            await self.ensure(name, config)
            return
        done = self._loading[name] = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # a killed first caller does not abandon a half-made engine
                model = await _load(name, ModelSpec(engine=name), config, implicit=False)
        except ModelLoadError as exc:
            cause = exc.__cause__ or exc
            text = str(cause) if len(str(cause)) <= 400 else str(cause)[:397] + "..."
            reason = f"{type(cause).__name__}: {text}"
            self._broken[name] = (key, f"loading it failed: {reason}")
            lazy.log.warning("model %r of the model library could not be loaded on first use: %s", name, reason)
            raise ModelUnavailable(f"model {name!r} of the model library could not be loaded: {reason}; fix or "
                                   "rebuild its entry (`llmasos models list`): a changed entry is tried again") from None
        finally:
            del self._loading[name]
            done.set()
        self._broken.pop(name, None)
        if self.tg is None:  # the kernel stopped while it loaded
            model.engine.close()
            raise NoSuchModel(f"model {name!r} was loaded as the kernel stopped; it is not served")
        model.lazy, model.used = True, time.monotonic()
        model.scope, model.stopped = anyio.CancelScope(), anyio.Event()
        self._models[name] = model
        self.tg.start_soon(_serve, model, name=f"llmasos llm loop ({name}, loaded on first use)")

    async def _make_room(self, name: str, limit: int) -> None:
        """Unload the least recently used idle lazy model while limit of them are resident or loading;
        NoSuchModel when all of them are busy."""
        while sum(m.lazy for m in self._models.values()) + len(self._loading) >= limit:
            idle = sorted((m for m in self._models.values() if m.lazy and not m.llm.pending), key=lambda m: m.used)
            if not idle:
                busy = [m.name for m in self._models.values() if m.lazy] + list(self._loading)
                raise NoSuchModel(f"model {name!r} cannot be loaded now: KernelConfig.lazy_models ({limit}) models "
                                  f"loaded on first use are resident and busy ({listed(busy)}); try again when one "
                                  "is idle, or declare it in the model table")
            await self.unload(idle[0])

    async def unload(self, model: Model) -> None:
        """Stop a lazily loaded model's loop and free its engine (the loop aborts what it still holds)."""
        if self._models.get(model.name) is not model or not model.lazy:
            raise InvalidArguments(f"model {model.name!r} was not loaded on first use; it stays")
        del self._models[model.name]
        assert model.scope is not None and model.stopped is not None
        model.scope.cancel()
        await model.stopped.wait()
        if model.engine.threaded:  # after any engine call in flight on the model thread (a score)
            await worker.run(model.engine.close)
        else:
            model.engine.close()
        lazy.log.info("model %r, loaded on first use, was unloaded to make room", model.name)

    def servable(self, config: KernelConfig) -> list[str]:
        """The names of the loaded models, then of the library's that may be loaded on first use."""
        return [*self._models, *(sorted(set(lazy.entries()) - set(self._models)) if config.lazy_models else ())]

    def infos(self, config: KernelConfig, allowed: frozenset[str] | None = None) -> tuple[ModelInfo, ...]:
        """Every model this kernel can serve (of allowed, when given) and its state: the loaded ones
        first, in table order, then the library's (when lazy_models allows loading them), by name."""
        out = [ModelInfo(m.name, "loaded", default=m.name == self.default, lazy=m.lazy, kind=m.kind)
               for m in self._models.values()]
        if config.lazy_models:
            for name, source in sorted(lazy.entries().items()):
                if name in self._models:
                    continue
                why = lazy.problem(source)
                broken = self._broken.get(name)
                if why is None and broken is not None and broken[0] == lazy.fingerprint(source):
                    why = broken[1]
                state = "broken" if why else "loading" if name in self._loading else "loadable"
                out.append(ModelInfo(name, state, reason=why or "", lazy=True))
        return tuple(i for i in out if allowed is None or i.name in allowed)

    def close(self) -> None:
        """Release the engines the kernel built (an Engine it was given is its owner's to free)."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            if model.owned:
                model.engine.close()


async def _serve(model: Model) -> None:
    """A lazily loaded model's loop, until the kernel stops or ``unload`` cancels it."""
    assert model.scope is not None and model.stopped is not None
    try:
        with model.scope:
            await model.llm.run()
    finally:
        model.stopped.set()


def declared(config: KernelConfig) -> dict[str, ModelSpec]:
    """config's model entries: its ``models``, or its one ``engine`` (named once it is loaded)."""
    if config.models is None:
        return {"default": ModelSpec(engine=config.engine)}
    return dict(config.models)


def default_model(config: KernelConfig) -> str:
    """The default model's name: default_model, else the entry marked default, else the first one."""
    assert config.models
    if config.default_model is not None:
        return config.default_model
    marked = [name for name, spec in config.models.items() if spec.default]
    return marked[0] if marked else next(iter(config.models))


def _engine_name(engine: Any) -> str:
    name = getattr(engine, "name", None)
    return name if isinstance(name, str) and name else "default"


async def _load(name: str, spec: ModelSpec, config: KernelConfig, *, implicit: bool) -> Model:
    limits = replace(SchedLimits.from_config(config), **spec.limits)
    source = spec.engine
    try:
        if source == "fake":
            from llmasos.engine.fake import FakeEngine

            engine: Engine = FakeEngine(**spec.options)
        else:
            formats = {k: v for k, v in (("weights", config.weights), ("kv_dtype", config.kv_dtype))
                       if v is not None}  # (a model's own options win)
            shared = {"prefix_cache_tokens": config.prefix_cache_tokens, "prefix_block": config.prefix_block}
            engine = await open_engine(source, max_batch=limits.max_batch, max_resident_tokens=limits.max_resident_tokens,
                                       **{**formats, **shared, **spec.options})
    except Exception as exc:
        if implicit:  # engine= as before: its own error
            raise
        what = "the default model" if source is None else shorten(source, 120)
        raise ModelLoadError(f"model {name!r} ({what}) could not be loaded: {type(exc).__name__}: {exc}; fix or "
                             f"remove its entry (KernelConfig.models / [models.{name}] in llmasos.toml)") from exc
    return Model(name, spec, engine, LLMLoop(engine, make_scheduler(spec.policy or config.policy, limits)),
                 owned=not is_engine(source))
