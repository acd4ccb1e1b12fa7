"""The model library's operations behind `llmasos models`: list, info, add, convert, remove, pull.

Rule: every name goes through ``engine.library.check_name`` before it touches the disk, and every model
is found again through ``engine.models.resolve`` (the one function the kernel and ``LLM.from_pretrained``
use), so what `llmasos models add` accepts is what they load. Only ``pull`` uses the network, and only
after the hub's host answered within ``HUB_TIMEOUT`` seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmasos.engine import adapters, library, models
from llmasos.engine.errors import ModelNotFound
from llmasos.engine.library import BadModelName, Card, LibraryError

HUB_TIMEOUT = 2.0  # seconds to wait for the hub's host before `pull` says it is offline
Progress = Callable[[str, int, int], None]  # (what, done, total): units are bytes, or stages

__all__ = [
    "HUB_TIMEOUT",
    "BadModelName",
    "LibraryError",
    "ModelDetails",
    "add",
    "convert",
    "details",
    "pull",
    "remove",
    "rows",
]


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """A model's line in `llmasos models list`, and its card in `llmasos models info`."""

    name: str
    origin: str
    source: str
    cached: bool
    size: int | None
    description: str = ""
    params: str = ""
    context: int | None = None
    quant: str = ""
    license: str = ""
    url: str = ""
    kind: str = ""  # registry, dir, gguf, hub; "" until resolved (info)
    path: str = ""  # the transformers directory it loads from, once converted
    adapter: str = ""
    adapter_manifest: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cards() -> dict[str, Card]:
    cards = {name: Card(name, f"{e.package}:{e.filename}", "built in" if name in models.REGISTRY else "package",
                        e.description, e.params, e.context, e.quant, e.license, e.url)
             for name, e in models.registry().items()}
    return {**library.from_packages(), **cards, **library.registered()}


def rows() -> list[ModelDetails]:
    """Every model known here: the registry, packages' models, registered names, converted and hub-cached
    models, with whether each is on this machine and its size on disk."""
    cards = _cards()
    out = []
    for row in models.list_models():
        card = cards.get(row.name)
        extra = {k: getattr(card, k) for k in ("description", "params", "context", "quant", "license", "url")} \
            if card else {}
        out.append(ModelDetails(row.name, row.origin, row.source, row.cached, row.size, **extra))
    return out


def details(name: str) -> ModelDetails:
    """Everything the library knows of name (a library name, path or BASE+ADAPTER); ModelNotFound if none."""
    spec = models.resolve(name)
    row = next((r for r in rows() if r.name == name), None)
    manifest = None
    if spec.adapter is not None and (spec.adapter / adapters.ADAPTER_MANIFEST).is_file():
        manifest = json.loads((spec.adapter / adapters.ADAPTER_MANIFEST).read_text())
        manifest = {k: v for k, v in manifest.items() if k not in ("train_loss",)}
    base = row or ModelDetails(spec.name, spec.kind, spec.source, spec.ready, None)
    return ModelDetails(**{**base.as_dict(), "kind": spec.kind, "path": str(spec.path or ""),
                           "adapter": str(spec.adapter or ""), "adapter_manifest": manifest})


def add(name: str, path: str | os.PathLike[str]) -> Card:
    """Register a local transformers directory, .gguf file or adapter directory under name."""
    library.check_name(name)
    _not_taken(name)
    where = Path(path).expanduser()
    if not where.exists():
        raise ModelNotFound(f"no such file or directory: {where}")
    spec = models.resolve(where.resolve())  # refuses what the loader could not load
    return library.register(Card(name, str(where.resolve()), "registered",
                                 description=f"{spec.kind}{' + LoRA adapter' if spec.adapter else ''}"))


def remove(name: str, *, keep_files: bool = False) -> list[str]:
    """Forget name; delete its files when llmasos made them (under $LLMASOS_HOME/models), never a user's
    folder. For a built-in model, delete its converted cache (it converts again on next use).
    Returns what was done, line by line."""
    library.check_name(name)
    done = []
    if name in models.registry():
        cache = models.models_dir() / name
        if not cache.is_dir():
            raise LibraryError(f"{name} is built in and has no converted copy to remove")
        if not keep_files:
            shutil.rmtree(cache)
            done.append(f"deleted {cache} (it converts again on next use)")
        return done
    card = library.unregister(name)
    done.append(f"forgot {name} ({card.source})")
    src = Path(card.source)
    if not keep_files and _inside(src, models.models_dir()) and src.exists():
        shutil.rmtree(src) if src.is_dir() else src.unlink()
        done.append(f"deleted {src}")
    return done


def convert(src: str | os.PathLike[str], name: str | None = None, progress: Progress | None = None) -> Card:
    """Copy a transformers directory, or dequantise a .gguf file, into $LLMASOS_HOME/models/NAME and
    register it as NAME (default: the file's or folder's name, made into a valid name)."""
    source = Path(src).expanduser().resolve()
    if not source.exists():
        raise ModelNotFound(f"no such file or directory: {source}")
    name = library.check_name(name if name is not None else _name_from(source))
    _not_taken(name)
    dest = models.models_dir() / name
    if dest.exists():
        raise LibraryError(f"{dest} already exists; remove it first (`llmasos models remove {name}`) or pick "
                           "another --name")
    report = progress or (lambda _what, _done, _total: None)
    spec = models.resolve(source)
    if spec.adapter is not None:
        raise LibraryError(f"{source} is a LoRA adapter: register it with `llmasos models add NAME {source}`")
    if spec.kind == "gguf":
        report("dequantising", 0, 1)
        models.convert_gguf(source, dest)
        report("dequantising", 1, 1)
    else:
        _copy_tree(source, dest, report)
    return library.register(Card(name, str(dest), "registered", description=f"converted from {source}"))


def pull(hub_id: str, progress: Progress | None = None) -> Path:
    """Download a hub model into the local Hugging Face cache, only if the hub answers at once."""
    if not models._HUB_ID.match(hub_id) or ".." in hub_id:
        raise BadModelName(f"{hub_id!r} is not a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT).close()
    except OSError as exc:
        raise ModelNotFound(
            f"cannot pull {hub_id}: the hub ({host}) does not answer from here ({exc.__class__.__name__} within "
            f"{HUB_TIMEOUT:.0f} s). Offline, bring the weights yourself: `llmasos models convert FILE.gguf` or "
            "`llmasos models add NAME DIR`") from None
    from huggingface_hub import constants, snapshot_download

    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False  # the CLI switches the hub off by default; pull is the one exception
    try:
        (progress or (lambda *_: None))("downloading", 0, 1)
        folder = Path(snapshot_download(hub_id, etag_timeout=HUB_TIMEOUT * 5,
                                        allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # noqa: BLE001 - the hub's errors are many; each means "not pulled"
        raise ModelNotFound(f"could not pull {hub_id}: {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        constants.HF_HUB_OFFLINE = offline
    return folder


def _not_taken(name: str) -> None:
    if name in models.registry():
        raise LibraryError(f"{name} is a built-in model name; choose another name")


def _name_from(path: Path) -> str:
    raw = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem if c.isascii())
    return (raw.strip("-._")[: library.MAX_NAME] or "model").replace("..", ".")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _copy_tree(source: Path, dest: Path, report: Progress) -> None:
    """Copy source to dest through a temporary folder, reporting bytes copied."""
    files = [f for f in source.rglob("*") if f.is_file() and not f.name.startswith(".")]
    total = sum(f.stat().st_size for f in files)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    done = 0
    try:
        for f in files:
            target = tmp / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with f.open("rb") as r, target.open("wb") as w:
                while block := r.read(1 << 22):
                    w.write(block)
                    done += len(block)
                    report("copying", done, total)
        report("copying", done, total)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
