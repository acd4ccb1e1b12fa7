"""Encoding syscall values for the database: JSON, with tags for tuples, odd dicts and records.

Rule: values are JSON, never pickle. A database may be shared (PostgreSQL between machines), so
whatever is read back is data, never code: ``decode`` builds only JSON values, tuples, and the record
classes registered here. ``decode(encode(v)) == v`` for plain JSON, tuples, dicts with any JSON-able
keys, the records in ``syscalls.types``, and any dataclass passed to ``register``. A value outside that
is refused at the call that gives it (``InvalidArguments``), except where ``lenient`` asks for its
``repr`` instead (an ended process's exit value, which no call can take back).
``digest`` is a stable hash of a syscall's arguments, used to detect non-deterministic replay.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from llmasos.memory.errors import JournalError
from llmasos.syscalls import types as t
from llmasos.syscalls.errors import InvalidArguments

_RECORDS: dict[str, type] = {}


def register(cls: type) -> type:
    """Let the journal store instances of a dataclass cls (usable as a class decorator)."""
    _RECORDS[cls.__name__] = cls
    return cls


for _cls in (t.Completion, t.ToolCall, t.Usage, t.ProcInfo, t.ExitStatus, t.Message, t.Note, t.Scores, t.ModelInfo):
    register(_cls)


def encode(value: Any, lenient: bool = False) -> Any:
    """A JSON-able form of value; InvalidArguments if it has none (lenient: its repr instead)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"__f": repr(value)}  # JSON has no NaN or infinities
        return value
    if isinstance(value, list):
        return [encode(v, lenient) for v in value]
    if isinstance(value, tuple):
        return {"__t": [encode(v, lenient) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, lenient) for k, v in value.items()}
        return {"__m": [[encode(k, lenient), encode(v, lenient)] for k, v in value.items()]}
    cls = type(value)
    if dataclasses.is_dataclass(value) and _RECORDS.get(cls.__name__) is cls:
        fields = {f.name: encode(getattr(value, f.name), lenient) for f in dataclasses.fields(value)}
        return {"__r": cls.__name__, "f": fields}
    if lenient:
        return {"__repr": repr(value)}
    raise InvalidArguments(
        f"a {cls.__module__}.{cls.__qualname__} cannot be stored: the kernel keeps values as JSON "
        "(str, numbers, bools, None, lists, tuples, dicts) and records registered with "
        "llmasos.memory.codec.register; pass plain data instead")


def decode(data: Any) -> Any:
    """The value encode() was given. Builds data only: an unknown tag is a JournalError, never code."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1 or (len(data) == 2 and "__r" in data):
        tag = next(iter(data)) if "__r" not in data else "__r"
        if tag == "__t":
            return tuple(decode(v) for v in data["__t"])
        if tag == "__m":
            return {decode(k): decode(v) for k, v in data["__m"]}
        if tag == "__r":
            cls = _RECORDS.get(data["__r"])
            if cls is None or not isinstance(data.get("f"), dict):
                raise JournalError(f"the database holds a record of unknown type {data['__r']!r}; "
                                   "register its class with llmasos.memory.codec.register first")
            return cls(**{k: decode(v) for k, v in data["f"].items()})
        if tag == "__f":
            return float(data["__f"]) if data["__f"] in ("nan", "inf", "-inf") else _refuse(tag)
        if tag == "__repr":
            return str(data["__repr"])
        if tag.startswith("__"):
            _refuse(tag)
    return {k: decode(v) for k, v in data.items()}


def _refuse(tag: str) -> Any:
    raise JournalError(
        f"the database holds a value tagged {tag!r}, which llmasos does not decode (values are plain "
        "JSON; older versions pickled some, and a pickle is code). Delete that row, or write it again")



_SCALARS = (str, int, float, bool, type(None))
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode  # made once: json.dumps builds one per call


def dumps(value: Any, lenient: bool = False) -> str:
    """value as codec JSON; InvalidArguments if it is not storable (lenient: its repr instead)."""
    if value is None:
        return "null"
    return _DUMPS(encode(value, lenient))


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
    added = getattr(cls, "added", ())
    args = {}  # Invariant: equal to t.as_dict(call), so digests never change (journals stay valid)
    for name in names:
        value = getattr(call, name)
        if value is None and name in added:  # a field newer than the journal: absent while unused
            continue
        args[name] = value if isinstance(value, _SCALARS) else t.as_dict(value)
    body = _DIGEST_JSON([cls.__name__, args])
    return hashlib.blake2b(body.encode(), digest_size=8).hexdigest()
