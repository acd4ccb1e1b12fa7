"""The root user's run-time controls of the kernel: the process table as rows (ps, info), the
scheduling policy, and priorities (renice).

Rule: a mixin of ``Kernel`` (kernel.py), kept apart so the kernel file stays the process table and the
chokepoint; these read the table and change scheduling knobs, and a change that must survive a
restart goes through the kernel's durability interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.apps.app import SECRET
from llmasos.kernel import sandbox
from llmasos.kernel.errors import KernelNotRunning
from llmasos.kernel.sched import make_scheduler
from llmasos.syscalls.errors import InvalidArguments
from llmasos.syscalls.types import ProcInfo, Usage

if TYPE_CHECKING:
    from llmasos.kernel.config import KernelConfig
    from llmasos.kernel.journal import Durability
    from llmasos.kernel.llm import LLMLoop
    from llmasos.kernel.models import ModelTable
    from llmasos.kernel.proc import Process

PRIORITY_LIMIT = 1_000_000
"""A priority (a nice value: lower runs first under the priority policy) is an int in
[-PRIORITY_LIMIT, PRIORITY_LIMIT]."""


class Control:
    """Kernel methods for ps/info, the policy and priorities (the shell, the HTTP routes, Renice)."""

    config: KernelConfig
    durability: Durability
    llm: LLMLoop | None
    models: ModelTable
    _procs: dict[int, Process]

    get: Any  # Kernel.get(pid) -> Process, or NoSuchProcess

    def ps(self, all: bool = False, *, viewer: Process | None = None) -> list[ProcInfo]:
        """The process table: live processes, or also the ended ones not yet reaped (as viewer sees it)."""
        return [self.info(p.pid, viewer=viewer) for p in self._procs.values() if all or p.alive]

    def info(self, pid: int, *, viewer: Process | None = None) -> ProcInfo:
        """One process's row. Its app's secret arguments show as "***" to everyone; its other arguments
        too, to a viewer process (None: the root user) that is not pid and does not hold ``see_args``."""
        p = self.get(pid)
        u = p.usage
        args = p.app.shown(p.args)
        if viewer is not None and viewer is not p and not viewer.caps.see_args:
            args = (SECRET,) * len(args)
        return ProcInfo(
            pid=p.pid, ppid=p.parent, app=p.app.name, state=p.state.value, waiting_on=p.waiting_on,
            priority=p.priority, args=args, started=p.started, ended=p.ended,
            usage=Usage(u.syscalls, u.prompt_tokens, u.completion_tokens, u.model_time, u.syscall_time),
            exit_value=p.exit_value, error=p.error, caps=p.caps.as_dict(), sandbox=sandbox.shown(p),
        )

    @property
    def processes(self) -> dict[int, Process]:
        """The live table (read-only use: shell, top, recovery)."""
        return self._procs

    def set_policy(self, policy: str, model: str | None = None) -> None:
        """Switch the scheduling policy at run time: of one model, or of every model (None)."""
        if self.llm is None:
            raise KernelNotRunning("boot the kernel first")
        make_scheduler(policy)  # ValueError for an unknown policy, before anything changes
        for m in [self.models.get(model)] if model is not None else self.models:
            m.llm.set_scheduler(make_scheduler(policy, previous=m.llm.scheduler))
        if model is None:
            self.config.policy = policy

    def renice(self, pid: int, priority: int) -> None:
        """Give live process pid a new priority, for its queued and future generations; journaled."""
        check_priority(priority)
        proc = self.get(pid)
        if not proc.alive:
            raise InvalidArguments(f"process {pid} has ended; only a live process can change its priority")
        proc.priority = priority
        for model in self.models if self.llm is not None else ():  # its queued generations, on any model
            sched = model.llm.scheduler
            for seq in (*sched.waiting, *sched.running):
                if seq.pid == pid:
                    seq.priority = priority
        self.durability.process_reniced(proc)

    @property
    def policy(self) -> str:
        """The default model's scheduling policy."""
        return self.llm.scheduler.policy if self.llm is not None else self.config.policy


def check_priority(priority: Any) -> None:
    """InvalidArguments unless priority is a whole number within PRIORITY_LIMIT."""
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > PRIORITY_LIMIT:
        raise InvalidArguments(f"a priority is a whole number from {-PRIORITY_LIMIT:,} to {PRIORITY_LIMIT:,} "
                               f"(lower runs first under the priority policy), not {priority!r:.60}")
