"""The model table: every model a kernel serves, by name, each with its own LLM loop and scheduler.

Rule: a model entry is (name, engine or engine spec string, options), declared in
``KernelConfig.models`` (or, as before, one ``KernelConfig.engine``: then the table holds that one
model, named after its engine). Each model batches only its own sequences: its ``LLMLoop`` owns its
engine and its scheduler (its own policy and limits, by default the kernel's). Any ``Engine`` fits:
a spec string is loaded by ``engine.loader.open_engine`` (a model name, a path, or any spec the loader
knows, such as a remote server's), ``"fake"`` is the scripted test engine. A model that fails to load
fails the boot with an error naming it; the ones loaded before it are released.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from llmasos.engine.errors import EngineSetupError
from llmasos.engine.loader import is_engine, open_engine
from llmasos.kernel.config import ConfigError
from llmasos.kernel.llm import LLMLoop
from llmasos.kernel.sched import POLICIES, SchedLimits, make_scheduler
from llmasos.syscalls.errors import InvalidArguments, NoSuchModel

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
        model that config.request_caps names but that is not loaded is a ConfigError."""
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
        if unknown:  # every request of the faces would be refused: say so now
            loaded = list(self._models)
            self.close()
            raise ConfigError(f"KernelConfig.request_caps names models that are not loaded: {listed(unknown)}; "
                              f"the loaded ones are {listed(loaded)}")

    def close(self) -> None:
        """Release the engines the kernel built (an Engine it was given is its owner's to free)."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            if model.owned:
                model.engine.close()


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
            formats = {} if config.weights is None else {"weights": config.weights}  # (a model's own wins)
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
