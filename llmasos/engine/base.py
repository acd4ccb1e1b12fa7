"""The contract between the kernel and whatever runs the model.

Rule: the kernel's scheduler decides *which* sequences share the next forward step; the engine only
computes. Every engine method is called from the kernel's LLM loop, one at a time (``step`` may run in
a worker thread, but never beside another engine call), so engines need no locks of their own.
``prepare`` is the exception: it is called from the requesting process, must be cheap, and must not
touch state that ``step`` uses.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections.abc import Callable, Sequence as Seq
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmasos.syscalls.errors import InvalidArguments

Message = dict[str, Any]
"""A chat message as in the OpenAI API: {"role": ..., "content": ...}."""

LogitsProcessor = Callable[[list[int], Any], Any]
"""Per-sequence hook: (output token ids so far, 1-D logits tensor) -> logits. Used for grammars."""

MIN_TEMPERATURE = 1e-3
"""Temperatures in (0, MIN_TEMPERATURE) decode greedily, as 0 does: sampling at them is greedy in
effect, and logits divided by a tiny enough one overflow to inf (a step that would fail)."""
MAX_TEMPERATURE = 100.0
"""The largest temperature accepted (at 100 the distribution is already close to uniform)."""
MAX_SEED = 2**63 - 1
"""The largest seed accepted (seeds are 0 .. 2**63-1: they fit a signed 64-bit integer)."""


@dataclass(slots=True)
class SamplingParams:
    """How one sequence is decoded."""

    max_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy; so does anything below MIN_TEMPERATURE
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the reply ends before the first of these
    logits_processor: LogitsProcessor | None = None  # e.g. a tool-call grammar
    truncate: bool = False  # drop the oldest prompt tokens instead of raising ContextOverflow

    def __post_init__(self) -> None:
        """Validate what a requester gave (InvalidArguments: the requester's fault, never the engine's)."""
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise InvalidArguments(f"max_tokens must be a whole number of at least 1, not {self.max_tokens!r}")
        if not _finite(self.temperature) or not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidArguments(f"temperature must be a finite number >= 0 (0: greedy) and at most "
                                   f"{MAX_TEMPERATURE:g}, not {self.temperature!r}")
        if self.temperature < MIN_TEMPERATURE:
            self.temperature = 0.0  # Invariant: a sampled sequence divides its logits by >= MIN_TEMPERATURE
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidArguments(f"top_p must be a number in (0, 1], not {self.top_p!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise InvalidArguments(f"seed must be a whole number from 0 to 2**63-1, or None, not {self.seed!r}")
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidArguments(f"stop must be non-empty strings, not {list(self.stop)!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class SeqStatus(enum.Enum):
    WAITING = "waiting"  # not yet prefilled, or preempted
    RUNNING = "running"  # has a KV cache in the engine
    FINISHED = "finished"


_sids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Sequence:
    """One generate request: a prompt and the tokens produced for it so far."""

    pid: int  # the owning process (0: the kernel or a plain script)
    params: SamplingParams
    prompt: str | None = None
    messages: list[Message] | None = None
    priority: int = 0  # nice value: lower runs first under the priority policy
    sid: int = field(default_factory=lambda: next(_sids))
    arrival: float = field(default_factory=time.monotonic)
    prompt_ids: list[int] = field(default_factory=list)  # set by Engine.prepare
    output_ids: list[int] = field(default_factory=list)
    text: str = ""  # decoded output so far, stop strings removed
    status: SeqStatus = SeqStatus.WAITING
    finish_reason: str | None = None  # "stop", "length", "budget", "abort" or "error"
    quantum_used: int = 0  # tokens decoded since the scheduler last (re)admitted it
    first_token_at: float | None = None
    engine_state: Any = None  # private to the engine that owns it
    tools: dict[str, Any] | None = None  # for an engine with native_tools (a remote server): the
    # OpenAI-shaped {"tools": [...], "tool_choice": ..., "messages": [...]}, set by tools/calling.py
    charged: tuple[int, int] = (0, 0)  # the kernel's: (prompt, completion) tokens charged to its process
    reserved: int = 0  # the kernel's: budget tokens reserved for it and not yet charged
    capped: bool = False  # the kernel's: max_tokens was cut to its process's budget

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One token produced for one sequence by one engine step."""

    seq: Sequence
    token_id: int
    text: str  # the text this token adds (may be "" while a stop string or a UTF-8 char is pending)
    finish_reason: str | None = None  # set on the sequence's last event
    error: BaseException | None = None  # finish_reason "error": this sequence alone failed in the step


class SequenceFailed(Exception):
    """Raised by ``Engine.step`` when one sequence failed before the step changed any other's state:
    the kernel fails that sequence alone and runs the step again without it."""

    def __init__(self, seq: Sequence, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.seq, self.cause = seq, cause


@dataclass(slots=True)
class PrefixStats:
    """The engine's prefix cache (engine/prefix.py), for `top` and stats: counters since it started."""

    blocks: int = 0  # blocks held now
    tokens: int = 0  # tokens held now (blocks x block size; counted in resident_tokens)
    shared: int = 0  # blocks held now that two or more live sequences reference
    lookups: int = 0  # prompt tokens looked up (each prefill of a prompt)
    hits: int = 0  # of those, tokens whose KV came from the cache instead of a prefill
    evicted: int = 0  # blocks evicted so far

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the engine can take in one step."""

    max_batch: int
    max_resident_tokens: int  # KV-cache tokens it can hold at once; over it, an engine may drop the
    # cache of a preempted sequence (one left out of recent batches) and recompute it on resumption
    resident_tokens: int  # KV-cache tokens held now
    prefix: PrefixStats | None = None  # its prefix cache's counters (a copy); None: it has none


@runtime_checkable
class Engine(Protocol):
    """A model that runs batched forward steps over sequences the scheduler hands it."""

    name: str  # the model's name, shown by `models` and /v1/models
    context_window: int  # prompt + completion tokens one sequence may hold
    threaded: bool  # True: the kernel runs step() in a worker thread (the model thread, unless the
    # engine sets runs_model = False: its step waits on a remote server and computes nothing)

    def prepare(self, seq: Sequence) -> None:
        """Tokenize seq (applying the chat template to messages) into seq.prompt_ids.

        Raises ContextOverflow when prompt + max_tokens exceeds context_window and the params do not
        ask for truncation."""

    def step(self, batch: Seq[Sequence],
             early: Callable[[list[TokenEvent]], None] | None = None) -> list[TokenEvent]:
        """Advance every sequence in batch by one token (prefilling newcomers first).

        A newcomer whose long prompt is prefilled in chunks gets no event until its last chunk;
        a sequence of the batch that already finished gets none either. ``early``, when given, is
        called (from the step's own thread) with the newcomers' first-token events as soon as their
        prefill is done, before the rest of the batch decodes, so a newcomer's time to first token
        does not include the batch's decode; those events are in the returned list as well.

        One sequence's own failure (its logits processor or sampling raised) fails it alone: its
        event has finish_reason "error" and ``error`` set, and the others advance as usual (or, if
        nothing else changed yet, step raises ``SequenceFailed``). Any other exception fails the batch."""

    def abort(self, seq: Sequence) -> None:
        """Free everything the engine holds for seq (finished or not). Idempotent."""

    def capacity(self) -> Capacity:
        """Limits and current use, for the scheduler and `top`."""

    def cached_tokens(self, seq: Sequence) -> int:
        """How many of seq's prompt tokens a step would not compute, as they are cached now (0 without a
        prefix cache). Pure bookkeeping, asked between steps: the scheduler charges a newcomer the rest."""

    def count_tokens(self, text: str) -> int:
        """How many tokens text takes in this model."""

    def close(self) -> None:
        """Release the model."""

    # Optional: ``score(text, window, stride) -> list[float]``, the log-probability of each token of text
    # but the first given the tokens before it, over windows of at most ``window`` tokens that advance
    # by ``stride`` (the score syscall; an engine without it answers NotSupported). It must not touch
    # what ``step`` uses: the kernel calls it between steps, on the model thread when ``threaded``.
