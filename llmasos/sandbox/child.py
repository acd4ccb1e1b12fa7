"""The child OS process of a sandboxed app: confine itself, load the app by its spec, run its main.

Rule: this process holds no kernel object. The kernel (``llmasos/kernel/sandbox.py``) starts it with
one end of a socket pair as file descriptor ``argv[1]`` and sends ``[start, ...]``; the child confines
itself (``confine.apply``, once its event loop runs) *before* importing the app, says ``[hello, confinement]``, runs ``main`` with a
``RemoteSys`` whose every syscall is a request on the socket, and ends with ``[exit, value]`` or
``[crash, traceback]``. If the kernel goes away, the child exits.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import socket
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from llmasos.apps.app import App
from llmasos.apps.registry import app_spec, child_loader, module_of
from llmasos.sandbox import confine, wire
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments
from llmasos.syscalls.remote import RemoteSys
from llmasos.syscalls.types import Completion

SYSTEM_READ = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom")


class SocketChannel:
    """The child's end of the socket: requests out, replies matched to their waiters by id."""

    def __init__(self, stream: anyio.abc.ByteStream, tg: anyio.abc.TaskGroup, limit: int) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._tg, self._limit = tg, limit
        self._lock = anyio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, list[Any]] = {}  # id -> [event, kind, value]

    async def send(self, message: list[Any], lenient: bool = False) -> None:
        data = wire.frame(message, lenient)
        async with self._lock:
            await self._stream.send(data)

    async def read_replies(self) -> None:
        """Hand each reply to its waiter; exit the process when the kernel hangs up."""
        try:
            while True:
                n = wire.size(await self._reader.receive_exactly(wire.HEADER.size), self._limit)
                kind, cid, *rest = wire.parse(await self._reader.receive_exactly(n))
                slot = self._waiting.get(cid)
                if slot is not None:
                    slot[1], slot[2] = kind, rest
                    slot[0].set()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, wire.ProtocolError):
            os._exit(3)  # the kernel is gone (or mad): nothing to run for

    async def _request(self, message: list[Any]) -> Any:
        cid = message[1]
        slot: list[Any] = [anyio.Event(), None, None]
        self._waiting[cid] = slot
        try:
            await self.send(message)
            await slot[0].wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # the kernel stops the call too, before the next one
                await self.send(["cancel", cid])
            raise
        finally:
            del self._waiting[cid]
        if slot[1] == "err":
            raise wire.revive(*slot[2])
        return slot[2][0]

    async def call(self, call: c.Syscall) -> Any:
        if isinstance(call, c.Spawn) and isinstance(call.app, App):
            spec = app_spec(call.app)
            if spec is None:
                raise InvalidArguments(f"a sandboxed app spawns apps by name or spec (module:attr, file.py:attr); "
                                       f"{call.app!r} has none")
            call = dataclasses.replace(call, app=spec)
        return await self._request(wire.call_message(next(self._ids), call))

    async def next(self, sid: int) -> tuple[str | None, Completion | None]:
        text, completion = await self._request(["next", next(self._ids), sid])
        return text, completion

    def close(self, sid: int) -> None:
        self._tg.start_soon(self.send, ["close", sid])


def read_paths(spec: str) -> list[str]:
    """Where this process may read files once confined: Python, its packages, llmasos and the app."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *SYSTEM_READ}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_path(key))
    paths.update(p for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages"))
    paths.update(p for p in sys.path if p and os.path.isfile(p))  # zip archives
    paths.add(str(Path(__file__).resolve().parent.parent))  # the llmasos package
    target, _, _ = spec.partition(":")
    if target.endswith(".py") or os.sep in target:
        paths.add(str(Path(target).resolve()))  # an app file (not its folder)
    elif (module := module_of(spec)) is not None:  # a module spec, or an installed app's entry point
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None:
            locations = list(found.submodule_search_locations or ())
            paths.update(locations or ([found.origin] if found.origin else []))
    return sorted(p for p in paths if p)


def list_paths() -> list[str]:
    """The folders import searches, which a confined process may list (names, not contents)."""
    return [p for p in sys.path if p and os.path.isdir(p)]


async def serve(sock: socket.socket, pid: int, spec: str, args: tuple, kwargs: dict, limits: dict) -> None:
    """Confine this process, load the app, run its main; the event loop is up before confinement."""
    stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
    async with anyio.create_task_group() as tg:
        channel = SocketChannel(stream, tg, limits.get("message_bytes") or 1 << 26)
        try:
            load = child_loader(spec)
            applied = confine.apply(limits, read_paths(spec), list_paths())
            app = load()
            args, kwargs = app.bind(args, kwargs)  # (converted by main's annotations, here where it runs)
        except BaseException:
            await channel.send(["crash", f"the sandboxed app {spec!r} could not be loaded:\n"
                                         f"{traceback.format_exc()}"], lenient=True)
            os._exit(1)
        tg.start_soon(channel.read_replies)
        await channel.send(["hello", "+".join(applied) or "none"])
        try:
            message = ["exit", await app.entry(RemoteSys(channel, pid), *args, **kwargs)]
        except SystemExit as exc:
            message = ["exit", exc.code]
        except Exception:
            message = ["crash", traceback.format_exc()]
        await channel.send(message, lenient=True)
        tg.cancel_scope.cancel()


def _read_start(sock: socket.socket) -> list[Any]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                os._exit(3)
            data += chunk
        return data

    (n,) = wire.HEADER.unpack(exactly(wire.HEADER.size))
    return wire.parse(exactly(n))


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    _, pid, spec, args, kwargs, limits = _read_start(sock)
    anyio.run(serve, sock, pid, spec, tuple(args), dict(kwargs), limits)
    os._exit(0)


if __name__ == "__main__":
    main()
