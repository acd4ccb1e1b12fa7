"""Scheduling policies: which sequences share the model's next forward step.

Rule: pure bookkeeping over queues, no I/O and no model, so every policy is testable on its own.
The kernel's LLM loop calls ``add`` when a generate syscall arrives, ``schedule`` before each engine
step, ``on_step`` after it, and ``remove`` when a sequence finishes or its process is killed.

A preempted sequence goes back to ``waiting`` with its KV cache still in the engine (so resuming costs
no recompute); the engine may drop that cache and recompute it later only when its resident-token
limit is exceeded. Policies differ in three hooks: which waiting sequence comes next (``_pick``), which
running one yields first (``_victim``), and when a waiting one may take a running one's slot
(``_should_swap``). The limits hold for every policy: at most ``max_batch`` sequences per step,
``max_step_tokens`` tokens computed per step (a newcomer costs its prompt less what the engine's prefix
cache holds; one newcomer is always let in so a long prompt cannot starve), and ``max_resident_tokens`` KV tokens over running sequences
(over it, the least important running sequence is preempted instead of the engine running out of memory).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from llmasos.engine.base import Capacity, Sequence, SeqStatus
from llmasos.kernel.config import KernelConfig


def _default(name: str) -> int:
    return KernelConfig.__dataclass_fields__[name].default


@dataclass(slots=True)
class SchedLimits:
    """The scheduler's limits: the KernelConfig fields of the same names, with their defaults (each is
    documented there, and in docs/architecture.md's Limits table)."""

    max_batch: int = _default("max_batch")
    max_step_tokens: int = _default("max_step_tokens")
    max_resident_tokens: int = _default("max_resident_tokens")
    quantum: int = _default("quantum")
    starvation_steps: int = _default("starvation_steps")

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"SchedLimits.{f.name} must be at least 1, not {getattr(self, f.name)}")

    @classmethod
    def from_config(cls, config: KernelConfig) -> SchedLimits:
        """The scheduler's share of config."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class Scheduler:
    """FIFO: admit in arrival order while the limits allow; never preempt to reorder."""

    policy = "fifo"

    def __init__(self, limits: SchedLimits | None = None) -> None:
        self.limits = limits or SchedLimits()
        self.waiting: deque[Sequence] = deque()  # not yet admitted (or preempted)
        self.running: list[Sequence] = []  # admitted: holds a KV cache in the engine
        self.preemptions = 0  # for `sched` and `top`
        # Invariant: a sequence is in at most one of waiting / running.

    def __len__(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def schedule(self, capacity: Capacity, cached: Callable[[Sequence], int] | None = None) -> list[Sequence]:
        """Return the next batch: running sequences, then waiting ones while the limits allow. cached(seq)
        says how many of a newcomer's prompt tokens the engine has cached (Engine.cached_tokens): they
        are not computed, so they do not count against max_step_tokens."""
        lim = self.limits
        max_batch = min(lim.max_batch, capacity.max_batch)
        max_resident = min(lim.max_resident_tokens, capacity.max_resident_tokens)
        self._swap(max_batch)
        # Over the resident limit: preempt the least important running sequences (keep one).
        while len(self.running) > 1 and sum(s.num_tokens for s in self.running) > max_resident:
            self._preempt(self._victim(self.running))
        batch = self._order(self.running)[:max_batch]
        step_tokens = len(batch)
        resident = sum(s.num_tokens for s in self.running)
        admitted = 0
        while self.waiting and len(batch) < max_batch:
            seq = self._pick()
            # a resumed sequence kept its cache; a newcomer computes what the prefix cache does not hold
            cost = 1 if seq.output_ids else max(1, seq.num_tokens - (cached(seq) if cached else 0))
            if admitted and step_tokens + cost > lim.max_step_tokens:
                break
            if batch and resident + seq.num_tokens > max_resident:
                break
            self._admit(seq)
            batch.append(seq)
            step_tokens += cost
            resident += seq.num_tokens
            admitted += 1
        return batch

    def on_step(self, batch: list[Sequence]) -> None:
        """Account the step just run (quanta, attained service); finished ones are removed apart."""
        for seq in batch:
            seq.quantum_used += 1

    # -- policy hooks -----------------------------------------------------------------------------

    def _key(self, seq: Sequence) -> tuple:
        """Sort key: smaller runs first."""
        return (seq.arrival, seq.sid)

    def _pick(self) -> Sequence:
        """The waiting sequence to admit next (FIFO / RR: the head of the queue)."""
        return self.waiting[0]

    def _victim(self, running: list[Sequence]) -> Sequence:
        """The running sequence to preempt first: the least important by ``_key``."""
        return max(running, key=self._key)

    def _order(self, running: list[Sequence]) -> list[Sequence]:
        return running

    def _should_swap(self, waiting: Sequence, victim: Sequence) -> bool:
        return False

    # -- mechanics --------------------------------------------------------------------------------

    def _swap(self, max_batch: int) -> None:
        """While the batch is full and the policy prefers a waiting sequence, swap it in."""
        # Invariant: at most as many swaps as sequences were waiting, so one just preempted is not
        # swapped straight back in within the same call.
        swaps, budget = 0, min(len(self.waiting), max_batch)
        while self.waiting and len(self.running) >= max_batch and swaps < budget:
            seq, victim = self._pick(), self._victim(self.running)
            if not self._should_swap(seq, victim):
                return
            self._preempt(victim)
            self._admit(seq)
            swaps += 1

    def _admit(self, seq: Sequence) -> None:
        self.waiting.remove(seq)
        seq.status = SeqStatus.RUNNING
        seq.quantum_used = 0
        self.running.append(seq)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        seq.status = SeqStatus.WAITING
        self.preemptions += 1
        self._requeue(seq)

    def _requeue(self, seq: Sequence) -> None:
        """Where a preempted sequence waits (FIFO: at the front, it resumes first)."""
        self.waiting.appendleft(seq)


class RoundRobin(Scheduler):
    """RR: a running sequence that used its quantum yields its slot to the head of the queue."""

    policy = "rr"

    def _victim(self, running: list[Sequence]) -> Sequence:
        # Invariant: the one that has run longest in its quantum yields first.
        return max(running, key=lambda s: (s.quantum_used, s.arrival))

    def _should_swap(self, waiting: Sequence, victim: Sequence) -> bool:
        return victim.quantum_used >= self.limits.quantum

    def _requeue(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def _order(self, running: list[Sequence]) -> list[Sequence]:
        return sorted(running, key=lambda s: s.quantum_used)


class PriorityScheduler(Scheduler):
    """Priority: lowest nice value first (ties by arrival); a better arrival preempts a worse runner."""

    policy = "priority"

    def _key(self, seq: Sequence) -> tuple:
        return (seq.priority, seq.arrival, seq.sid)

    def _pick(self) -> Sequence:
        return min(self.waiting, key=self._key)

    def _order(self, running: list[Sequence]) -> list[Sequence]:
        return sorted(running, key=self._key)

    def _should_swap(self, waiting: Sequence, victim: Sequence) -> bool:
        return waiting.priority < victim.priority


class FairScheduler(Scheduler):
    """Fair (after Autellix's PLAS): the process with the least attained service goes first.

    Service is counted in tokens per pid (across all of its requests, finished ones included). A
    running sequence is only swapped out after a quantum, so the batch does not churn every step; a
    sequence that waited ``starvation_steps`` steps goes first whatever its process attained (the
    longest-waiting first among those), which bounds every wait."""

    policy = "fair"

    def __init__(self, limits: SchedLimits | None = None) -> None:
        super().__init__(limits)
        self.attained: dict[int, int] = {}  # pid -> tokens computed for it
        self.waited: dict[int, int] = {}  # sid -> steps spent waiting since it last ran

    def _key(self, seq: Sequence) -> tuple:
        waited = self.waited.get(seq.sid, 0)
        if waited >= self.limits.starvation_steps:
            return (0, -waited, seq.arrival, seq.sid)  # starved: the longest wait goes first
        return (1, self.attained.get(seq.pid, 0), seq.arrival, seq.sid)

    def _pick(self) -> Sequence:
        return min(self.waiting, key=self._key)

    def _order(self, running: list[Sequence]) -> list[Sequence]:
        return sorted(running, key=self._key)

    def _should_swap(self, waiting: Sequence, victim: Sequence) -> bool:
        # Invariant: a fresh request (it has not run yet) from a process with less service than the
        # victim's gets a slot at once (PLAS); otherwise swap only for a starved sequence or a service
        # gap of at least a quantum, so processes with about equal service take turns a quantum at a
        # time instead of churning every step.
        if self._key(waiting) >= self._key(victim):
            return False
        if self.waited.get(waiting.sid, 0) >= self.limits.starvation_steps:
            return True
        gap = self.attained.get(victim.pid, 0) - self.attained.get(waiting.pid, 0)
        if not waiting.output_ids and gap > 0:
            return True
        return gap >= self.limits.quantum

    def _admit(self, seq: Sequence) -> None:
        super()._admit(seq)
        self.waited.pop(seq.sid, None)

    def remove(self, seq: Sequence) -> None:
        super().remove(seq)
        self.waited.pop(seq.sid, None)

    def on_step(self, batch: list[Sequence]) -> None:
        super().on_step(batch)
        for seq in batch:
            self.attained[seq.pid] = self.attained.get(seq.pid, 0) + 1
        for seq in self.waiting:
            self.waited[seq.sid] = self.waited.get(seq.sid, 0) + 1


POLICIES: dict[str, type[Scheduler]] = {
    "fifo": Scheduler,
    "rr": RoundRobin,
    "priority": PriorityScheduler,
    "fair": FairScheduler,
}


def make_scheduler(policy: str, limits: SchedLimits | None = None, *,
                   previous: Scheduler | None = None) -> Scheduler:
    """Build a scheduler by policy name; with ``previous``, take over its queues (switch at run time)."""
    try:
        cls = POLICIES[policy]
    except KeyError:
        names = ", ".join(sorted(POLICIES))
        raise ValueError(f"unknown scheduling policy {policy!r}; choose one of: {names}") from None
    sched = cls(limits or (previous.limits if previous is not None else None))
    if previous is not None:
        # Invariant: running sequences stay admitted (their caches are in the engine); waiting ones
        # keep their arrival order, and the new policy decides from the next schedule() on.
        sched.running = list(previous.running)
        for seq in sorted(previous.waiting, key=lambda s: (s.arrival, s.sid)):
            sched.add(seq)
        if isinstance(previous, FairScheduler) and isinstance(sched, FairScheduler):
            sched.attained = dict(previous.attained)
    return sched
