"""The wire between a sandboxed app's child process and the kernel: length-prefixed frames of codec JSON.

Rule: a frame is a 4-byte big-endian length and a JSON list ``[op, ...]`` encoded by
``llmasos.memory.codec`` (tuples and the records of ``syscalls.types`` survive the trip; nothing decodes
to code). A syscall crosses as its class name and its fields; the receiving end builds it only from the
syscall types it was given. Errors cross as the ``SyscallError`` class's name and message and are
raised again as that class (any other name as a plain ``SyscallError``).

Messages. Kernel to child: ``[start, pid, spec, args, kwargs, limits]`` first, then
``[ok, id, value]`` and ``[err, id, type, message]``. Child to kernel: ``[hello, confinement]`` once
the app is loaded, ``[call, id, type, fields]``, ``[next, id, stream]`` (``value``: [text or None,
completion or None]), ``[close, stream]``, ``[cancel, id]`` (the app stopped waiting), and last ``[exit, value]`` or ``[crash, traceback]``.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from llmasos.memory import codec
from llmasos.syscalls import errors
from llmasos.syscalls.errors import InvalidArguments, NotSupported, SyscallError

HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The other end sent something that is not a frame of this protocol."""


def frame(message: list[Any], lenient: bool = False) -> bytes:
    """message as one frame (InvalidArguments if a value in it cannot cross; lenient: its repr)."""
    body = codec.dumps(message, lenient).encode()
    return HEADER.pack(len(body)) + body


def parse(body: bytes) -> list[Any]:
    """The message in a frame's body; ProtocolError if it is not one."""
    try:
        message = codec.loads(body.decode())
    except Exception as exc:
        raise ProtocolError(f"a frame that is not codec JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ProtocolError(f"a frame that is not [op, ...]: {str(message)[:80]!r}")
    return message


def size(header: bytes, limit: int) -> int:
    """The body length a header announces; ProtocolError over limit."""
    (n,) = HEADER.unpack(header)
    if n > limit:
        raise ProtocolError(f"a frame of {n} bytes, over the {limit}-byte limit "
                            "(KernelConfig.sandbox_limits['message_bytes'])")
    return n


# -- syscalls ----------------------------------------------------------------------------------


def call_message(cid: int, call: Any) -> list[Any]:
    """[call, id, type, fields] for a syscall value."""
    fields = {f.name: getattr(call, f.name) for f in dataclasses.fields(call)}
    return ["call", cid, type(call).__name__, fields]


def build_call(name: Any, fields: Any, types: dict[str, type]) -> Any:
    """The syscall named name with fields, built only from types; NotSupported or InvalidArguments."""
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise NotSupported(f"{name!r} is not a syscall this kernel offers")
    if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
        raise InvalidArguments(f"the arguments of {name} are a dict of field names, not {type(fields).__name__}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InvalidArguments(f"{name}: {exc}") from None


# -- errors ------------------------------------------------------------------------------------


def error_message(cid: int, exc: SyscallError) -> list[Any]:
    cls = type(exc)
    return ["err", cid, f"{cls.__module__}:{cls.__qualname__}", str(exc)]


def revive(type_name: Any, message: Any) -> SyscallError:
    """The SyscallError the other end raised, as its own class when that is one of llmasos's."""
    found = _error_classes().get(type_name) if isinstance(type_name, str) else None
    return (found or SyscallError)(str(message))


def _error_classes() -> dict[str, type[SyscallError]]:
    seen: dict[str, type[SyscallError]] = {}
    todo: list[type[SyscallError]] = [errors.SyscallError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] == "llmasos":
            seen[f"{cls.__module__}:{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return seen
