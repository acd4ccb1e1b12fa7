"""Encoding syscall values for the database: JSON with tags for tuples, records and odd objects.

Rule: ``decode(encode(v)) == v`` for everything a syscall may return (plain JSON, tuples, the records
in ``syscalls.types``, and any record class passed to ``register``); anything else is pickled, which is
the best we can do for an app's private objects (the database is the user's own, so pickle is safe).
``digest`` is a stable hash of a syscall's arguments, used to detect non-deterministic replay.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import pickle
from typing import Any

from llmasos.syscalls import types as t

_RECORDS: dict[str, type] = {}


def register(cls: type) -> type:
    """Let the journal store instances of a dataclass cls (usable as a class decorator)."""
    _RECORDS[cls.__name__] = cls
    return cls


for _cls in (t.Completion, t.ToolCall, t.Usage, t.ProcInfo, t.ExitStatus, t.Message):
    register(_cls)


def encode(value: Any) -> Any:
    """A JSON-able form of value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"__t": [encode(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__m": [[encode(k), encode(v)] for k, v in value.items()]}
    cls = type(value)
    if dataclasses.is_dataclass(value) and _RECORDS.get(cls.__name__) is cls:
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__r": cls.__name__, "f": fields}
    try:
        return {"__p": base64.b64encode(pickle.dumps(value)).decode("ascii")}
    except Exception:
        return {"__repr": repr(value)}


def decode(data: Any) -> Any:
    """The value encode() was given."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__t" in data:
        return tuple(decode(v) for v in data["__t"])
    if "__m" in data:
        return {decode(k): decode(v) for k, v in data["__m"]}
    if "__r" in data:
        cls = _RECORDS[data["__r"]]
        return cls(**{k: decode(v) for k, v in data["f"].items()})
    if "__p" in data:
        return pickle.loads(base64.b64decode(data["__p"]))
    if "__repr" in data:
        return data["__repr"]
    return {k: decode(v) for k, v in data.items()}


_SCALARS = (str, int, float, bool, type(None))
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode  # made once: json.dumps builds one per call


def dumps(value: Any) -> str:
    if value is None:
        return "null"
    return _DUMPS(encode(value))


def loads(text: str | None) -> Any:
    return None if text is None else decode(json.loads(text))


def _stable(obj: Any) -> Any:
    name = getattr(obj, "name", None)
    return f"<{type(obj).__name__} {name}>" if isinstance(name, str) else f"<{type(obj).__name__}>"


_DIGEST_JSON = json.JSONEncoder(sort_keys=True, default=_stable).encode
_FIELDS: dict[type, tuple[str, ...]] = {}


def digest(call: Any) -> str:
    """A short stable hash of a syscall's type and arguments (object identities left out)."""
    cls = type(call)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    args = {}  # Invariant: equal to t.as_dict(call), so digests never change (journals stay valid)
    for name in names:
        value = getattr(call, name)
        args[name] = value if isinstance(value, _SCALARS) else t.as_dict(value)
    body = _DIGEST_JSON([cls.__name__, args])
    return hashlib.blake2b(body.encode(), digest_size=8).hexdigest()
