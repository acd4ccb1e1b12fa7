"""Scheduling policies: which sequences share the model's next forward step.

Rule: pure bookkeeping over queues, no I/O and no model, so every policy is testable on its own.
The kernel's LLM loop calls ``add`` when a generate syscall arrives, ``schedule`` before each engine
step, ``on_step`` after it, and ``remove`` when a sequence finishes or its process is killed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llmasos.engine.base import Capacity, Sequence, SeqStatus


@dataclass(slots=True)
class SchedLimits:
    """Limits on one step; the kernel fills these from KernelConfig."""

    max_batch: int = 32  # sequences in one forward step
    max_step_tokens: int = 2048  # tokens computed in one step (prefill counts its whole prompt)
    max_resident_tokens: int = 65536  # KV-cache tokens held across all admitted sequences
    quantum: int = 16  # rr: tokens a sequence decodes before it yields its slot


class Scheduler:
    """FIFO: admit in arrival order while the limits allow; never preempt."""

    policy = "fifo"

    def __init__(self, limits: SchedLimits | None = None) -> None:
        self.limits = limits or SchedLimits()
        self.waiting: deque[Sequence] = deque()  # not yet admitted (or preempted)
        self.running: list[Sequence] = []  # admitted: holds a KV cache in the engine
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

    def schedule(self, capacity: Capacity) -> list[Sequence]:
        """Return the next batch: every running sequence, then newcomers while they fit."""
        lim = self.limits
        max_batch = min(lim.max_batch, capacity.max_batch)
        max_resident = min(lim.max_resident_tokens, capacity.max_resident_tokens)
        batch = self.running[:max_batch]
        step_tokens = len(batch)
        resident = sum(s.num_tokens for s in self.running)
        while self.waiting and len(batch) < max_batch:
            seq = self.waiting[0]
            cost = seq.num_tokens
            if batch and (step_tokens + cost > lim.max_step_tokens or resident + cost > max_resident):
                break
            self.waiting.popleft()
            seq.status = SeqStatus.RUNNING
            self.running.append(seq)
            batch.append(seq)
            step_tokens += cost
            resident += cost
        return batch

    def on_step(self, batch: list[Sequence]) -> None:
        """Account the step just run (quanta, attained service); finished ones are removed apart."""
        for seq in batch:
            seq.quantum_used += 1


POLICIES: dict[str, type[Scheduler]] = {"fifo": Scheduler}


def make_scheduler(policy: str, limits: SchedLimits | None = None) -> Scheduler:
    """Build a scheduler by policy name."""
    try:
        cls = POLICIES[policy]
    except KeyError:
        names = ", ".join(sorted(POLICIES))
        raise ValueError(f"unknown scheduling policy {policy!r}; choose one of: {names}") from None
    return cls(limits)
