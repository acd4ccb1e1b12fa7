"""A team's private app store: a JSON index of app packages, in a local file or at a URL.

Rule: the index only points at packages (``source``: what ``llmasos apps install`` gives pip); it never
grants anything, since the capabilities are read again from the package itself before installing. An index
is ``{"apps": [{"name", "version", "description", "source", "caps"}, ...]}`` (or the bare list); an
entry that does not fit is skipped and reported, never fatal. A local file works offline. The default
index is ``$LLMASOS_APP_INDEX``, else ``$LLMASOS_HOME/index.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmasos.apps.app import check_name
from llmasos.apps.manifest import MANIFEST_LIMITS, ManifestError, check_version
from llmasos.errors import LlmasosError
from llmasos.home import llmasos_home

INDEX_ENV = "LLMASOS_APP_INDEX"
MAX_INDEX_BYTES = 16 << 20  # an index larger than this is refused
FETCH_TIMEOUT = 15.0  # seconds to fetch an index from a URL


class AppIndexError(LlmasosError):
    """The index cannot be read: missing, unreachable, too large, or not JSON of the documented shape."""


class Entry(BaseModel):
    """One package in the index."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    version: str = "0"
    description: str = Field("", max_length=MANIFEST_LIMITS.description_chars)
    source: str = Field(min_length=1, max_length=2000)
    caps: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            return check_version(v)
        except ManifestError as exc:
            raise ValueError(str(exc)) from None


@dataclass(slots=True)
class Index:
    """The entries of an index that fit, and what was wrong with the others."""

    where: str
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def search(self, term: str) -> list[Entry]:
        """Entries whose name or description holds term (any case); every entry for an empty term."""
        t = term.lower()
        return [e for e in self.entries if t in e.name.lower() or t in e.description.lower()]

    def get(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)


def default_location() -> str:
    return os.environ.get(INDEX_ENV) or str(llmasos_home() / "index.json")


def load(where: str | None = None) -> Index:
    """The index at where (a path or an http(s) URL; default: ``default_location()``)."""
    where = where or default_location()
    if where.startswith(("http://", "https://")):
        import httpx

        try:
            with httpx.stream("GET", where, timeout=FETCH_TIMEOUT, follow_redirects=True) as resp:
                resp.raise_for_status()
                data = b""
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > MAX_INDEX_BYTES:
                        raise AppIndexError(f"the index at {where} is over {MAX_INDEX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise AppIndexError(f"cannot fetch the index at {where}: {exc}") from None
    else:
        path = Path(where).expanduser()
        try:
            if path.stat().st_size > MAX_INDEX_BYTES:
                raise AppIndexError(f"the index {path} is over {MAX_INDEX_BYTES} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise AppIndexError(f"no app index at {path}; give one with --index PATH_OR_URL or set "
                              f"${INDEX_ENV}") from None
        except OSError as exc:
            raise AppIndexError(f"cannot read the index {path}: {exc}") from None
    return parse(data, where)


def parse(data: bytes | str, where: str = "<index>") -> Index:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise AppIndexError(f"the index {where} is not JSON: {exc}") from None
    items = raw.get("apps") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise AppIndexError(f"the index {where} is {{\"apps\": [...]}} or a list of entries")
    index = Index(where)
    for i, item in enumerate(items):
        try:
            index.entries.append(Entry.model_validate(item))
        except (ValidationError, ValueError, TypeError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
            field_name = ".".join(map(str, first["loc"])) or "entry"
            index.problems.append(f"entry {i}: {field_name}: {first['msg']}"[:300])
    return index
