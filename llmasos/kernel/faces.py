"""Faces as processes: the root process (pid 0) and a face's request processes (``Kernel.session``).

Rule: a mixin of ``Kernel`` (kernel.py). Every request from a face crosses the chokepoint as a syscall
of a process: the root user's faces (shell, CLI, HTTP process routes) as the root process, which is
not in the table and is never journaled; the OpenAI endpoint, ``LLM`` and ``Application`` as a request
process each, in the face's own task, listed while it runs and never restarted after a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.apps.app import App
from llmasos.kernel.proc import ProcState, Process
from llmasos.kernel.recovery import FACE_SPEC
from llmasos.kernel.table import ExitProcess
from llmasos.syscalls.errors import ProcessKilled
from llmasos.syscalls.sys import Sys

if TYPE_CHECKING:
    from llmasos.kernel.config import KernelConfig


class Faces:
    """Kernel methods for faces: ``root``, ``root_process``, ``session``."""

    config: KernelConfig
    _root: Process
    _faces: dict[str, App]

    if TYPE_CHECKING:  # (Kernel's)
        def start_process(self, *args: Any, **kwargs: Any) -> Process: ...
        def _end(self, proc: Process, state: ProcState, *, value: Any = None, error: str | None = None) -> None: ...
        def _reap(self, proc: Process) -> None: ...

    @property
    def root(self) -> Sys:
        """The Sys of the root process (pid 0): how the root user's faces make syscalls."""
        return Sys(self, self._root)

    @property
    def root_process(self) -> Process:
        """The root process's record (read-only use: its trace and usage, for strace and top)."""
        return self._root

    @contextlib.asynccontextmanager
    async def session(self, face: str, *, caps: dict[str, Any] | None = None, parent: int = 0,
                      args: tuple[Any, ...] = ()) -> AsyncIterator[Sys]:
        """A process for one request from a face (HTTP, the OpenAI endpoint, ``LLM``, the shell).

        ``async with kernel.session("openai") as sys: await sys.generate(...)``. The process is in the
        table (``ps``, ``top``, ``strace``, ``kill``) while the block runs, in the caller's own task; every
        call it makes crosses the chokepoint (checked, budgeted, journaled, accounted, traced). Its caps
        are everything its parent holds narrowed by caps (default: ``KernelConfig.request_caps``). It is
        never restarted after a crash (its client is gone) and is reaped when the block ends. A kill
        ends it at once (its generations stop) and raises ``ProcessKilled`` in the caller.
        """
        app = self._faces.get(face)
        if app is None:
            app = self._faces[face] = App(face, f"requests from {face}", tools=["*"], memory=["*"],
                                          can_spawn=True, restartable=False)
            app.source = FACE_SPEC + face
            app.main(_face_main)
        asked = self.config.request_caps if caps is None else caps
        proc = self.start_process(app, args, {}, parent=parent, caps=asked, task=False)
        proc.state, proc.face = ProcState.RUNNING, face
        # Invariant: no cancel scope spans the block (it may sit in an async generator, such as a
        # streamed HTTP reply): a kill ends the process at once, which aborts its sequences, and its
        # next syscall or the end of the block raises ProcessKilled.
        try:
            yield Sys(self, proc)
        except ExitProcess as exc:
            self._end(proc, ProcState.EXITED, value=exc.value)
        except (anyio.get_cancelled_exc_class(), GeneratorExit):  # (GeneratorExit: a streamed reply closed)
            self._end(proc, ProcState.KILLED, error="its client went away")
            raise
        except BaseException as exc:  # the face's own task's: raised to it (it never reaches the kernel's)
            self._end(proc, ProcState.CRASHED, error=f"{type(exc).__name__}: {exc}")
            raise
        else:
            if proc.killed:
                raise ProcessKilled(f"request process {proc.pid} ({face}) was killed before it ended")
            self._end(proc, ProcState.EXITED)
        finally:
            self._reap(proc)


async def _face_main(sys: Sys, *args: Any) -> None:
    """The main of a face's request process: never called (its code runs in the face's own task)."""
    raise AssertionError("a request process has no task of its own")


def root_app() -> App:
    """The App of the root process (pid 0)."""
    app = App("root", "the root user's faces: shell, CLI, HTTP process control", restartable=False)
    app.main(_face_main)
    return app
