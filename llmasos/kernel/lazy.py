"""The model library, as the kernel sees it: which models it may load on first use, and what is wrong
with the ones it must not.

Rule: a model the library names (``llmasos models list``: the built-in registry, installed packages'
``llmasos.models`` entry points, the user's registrations in ``$LLMASOS_HOME/models.json``) but that the
model table does not declare is *loadable*: the first generate that names it loads it (kernel/models.py,
``ModelTable.ensure``). A library entry is judged here from its files, without loading anything: a LoRA
adapter whose folder is gone, or whose training did not finish, is broken with that reason. A failed load
is remembered with the entry's ``fingerprint`` (its source and the times its files changed), so the kernel
does not retry it on every call, and tries again once the entry is rebuilt or replaced.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from llmasos.engine import library
from llmasos.engine.adapters import ADAPTER_CONFIG, ADAPTER_MANIFEST
from llmasos.engine.models import registry

log = logging.getLogger("llmasos.kernel")

Fingerprint = tuple[str, tuple[int, ...]]


def entries() -> dict[str, str]:
    """Every model the library names -> its source (a package file, a path, ``BASE+ADAPTER_DIR``);
    an unreadable library is logged and adds nothing (the declared models go on being served)."""
    out = {name: f"{entry.package}:{entry.filename}" for name, entry in registry().items()}
    try:
        for name, card in {**library.from_packages(), **library.registered()}.items():
            out.setdefault(name, card.source)
    except library.LibraryError as exc:
        log.warning("the model library is unreadable, so its registered models cannot be loaded: %s", exc)
    return out


def _folder(source: str) -> Path | None:
    """The local folder or file a source names (for ``BASE+ADAPTER_DIR``, the adapter's); None for a
    package file or a hub id."""
    path = source.rpartition("+")[2] if "+" in source else source
    return Path(path).expanduser() if path.startswith(("/", "~", ".")) else None


def fingerprint(source: str) -> Fingerprint:
    """What identifies a library entry's current files: its source and the modification times of its
    folder and of the adapter files in it (rebuilding an adapter changes them)."""
    folder = _folder(source)
    times = []
    for path in (folder, *((folder / ADAPTER_MANIFEST, folder / ADAPTER_CONFIG) if folder else ())):
        try:
            times.append(path.stat().st_mtime_ns if path is not None else 0)
        except OSError:
            times.append(0)
    return source, tuple(times)


def problem(source: str) -> str | None:
    """Why a library entry cannot be served, read from its files (None: it may be loaded): its folder is
    missing, or it is an adapter whose training was interrupted or did not reach its last step."""
    folder = _folder(source)
    if folder is None:
        return None
    if not folder.exists():
        return f"its files are missing ({folder})"
    manifest = folder / ADAPTER_MANIFEST
    if not folder.is_dir() or not manifest.exists():
        return None
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        return f"{manifest} is unreadable ({type(exc).__name__})"
    if not isinstance(record, dict):
        return f"{manifest} does not hold a JSON object"
    if not (folder / ADAPTER_CONFIG).is_file():
        return f"{folder} holds no {ADAPTER_CONFIG}: the adapter's training never saved it"
    if record.get("interrupted") or record.get("steps") != record.get("total_steps"):
        return f"its training is unfinished ({record.get('steps')}/{record.get('total_steps')} steps)"
    return None
