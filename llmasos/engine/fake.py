"""A scripted engine for tests: replies are enqueued by the test and produced token by token.

Rule: it behaves like a real engine towards the kernel (prepare / step / abort, one token per sequence
per step, stop strings, max_tokens, context window) so kernel logic can be tested without a model.
Tokens are words with their trailing white space.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence as Seq

from llmasos.engine.base import Capacity, Sequence, SequenceFailed, TokenEvent
from llmasos.syscalls.errors import ContextOverflow

_TOKEN = re.compile(r"\s*\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into word tokens that join back into it exactly."""
    return _TOKEN.findall(text)


def _render(seq: Sequence) -> str:
    if seq.messages is not None:
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in seq.messages)
    return seq.prompt or ""


class FakeEngine:
    """Scripted replies: ``enqueue("text")`` queues the reply for the next sequence that arrives.

    With nothing queued, ``responder(seq)`` gives the reply (by default: "echo: <prompt>").
    ``step_delay`` seconds of simulated model time per step make the kernel run steps in a thread.
    A queued exception fails the whole step (a forward that failed); ``fail(seq)`` returning an
    exception fails that sequence alone (as a logits processor that raises would): the step raises
    ``SequenceFailed`` before any sequence advances.
    """

    name = "fake"

    def __init__(
        self,
        *,
        context_window: int = 4096,
        max_batch: int = 64,
        step_delay: float = 0.0,
        responder: Callable[[Sequence], str] | None = None,
        fail: Callable[[Sequence], Exception | None] | None = None,
    ) -> None:
        self.context_window = context_window
        self.max_batch = max_batch
        self.step_delay = step_delay
        self.threaded = step_delay > 0
        self.responder = responder or (lambda seq: "echo: " + _render(seq))
        self.fail = fail  # per-sequence failure hook (tests)
        self._script: deque[str | Exception] = deque()
        self._lock = threading.Lock()
        self.active: dict[int, Sequence] = {}  # sid -> sequences holding "KV cache"
        self.batches: list[list[int]] = []  # the pids in each step, for tests
        self.prompts: list[str] = []  # every rendered prompt, in arrival order
        self.aborted: list[int] = []  # sids freed before they finished

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *replies: str | Exception) -> None:
        """Queue replies (or an exception to raise in step) for the next sequences, in order."""
        with self._lock:
            self._script.extend(replies)

    # -- Engine protocol ---------------------------------------------------------------------

    def prepare(self, seq: Sequence) -> None:
        text = _render(seq)
        words = tokenize(text)
        budget = self.context_window - seq.params.max_tokens
        if len(words) > budget:
            if not seq.params.truncate or budget < 1:
                raise ContextOverflow(
                    f"prompt is {len(words)} tokens and max_tokens is {seq.params.max_tokens}: "
                    f"{len(words) + seq.params.max_tokens} > the context window of "
                    f"{self.context_window}; shorten the prompt or lower max_tokens"
                )
            words = words[-budget:]
        seq.prompt_ids = [hash(w) & 0xFFFF for w in words]
        with self._lock:
            reply = self._script.popleft() if self._script else None
        if reply is None:
            reply = self.responder(seq)
        self.prompts.append(text)
        seq.engine_state = {"reply": reply, "pos": 0}

    def step(self, batch: Seq[Sequence],
             early: Callable[[list[TokenEvent]], None] | None = None) -> list[TokenEvent]:
        if self.step_delay:
            time.sleep(self.step_delay)
        if self.fail is not None:
            for seq in batch:
                error = self.fail(seq)
                if error is not None:
                    raise SequenceFailed(seq, error)
        self.batches.append([s.pid for s in batch])
        events = []
        for seq in batch:
            self.active[seq.sid] = seq
            state = seq.engine_state
            reply = state["reply"]
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, str):
                state["reply"] = reply = tokenize(reply)
            events.append(self._advance(seq, state, reply))
        return events

    def _advance(self, seq: Sequence, state: dict, words: list[str]) -> TokenEvent:
        pos = state["pos"]
        state["pos"] = pos + 1
        word = words[pos] if pos < len(words) else ""
        seq.output_ids.append(pos)
        before = seq.text
        full = before + word
        finish = None
        for stop in seq.params.stop:
            cut = full.find(stop)
            if cut != -1:
                full, finish = full[:cut], "stop"
        if finish is None and pos + 1 >= len(words):
            finish = "stop"
        if finish is None and len(seq.output_ids) >= seq.params.max_tokens:
            finish = "length"
        seq.text = full
        if finish is not None:
            self.active.pop(seq.sid, None)
        return TokenEvent(seq, pos, full[len(before):], finish)

    def abort(self, seq: Sequence) -> None:
        if self.active.pop(seq.sid, None) is not None:
            self.aborted.append(seq.sid)

    def capacity(self) -> Capacity:
        resident = sum(s.num_tokens for s in self.active.values())
        return Capacity(self.max_batch, self.context_window * self.max_batch, resident)

    def cached_tokens(self, seq: Sequence) -> int:
        return 0

    def score(self, text: str, window: int, stride: int) -> list[float]:
        """Scripted prompt logprobs: a word of n characters after the first has log-probability -ln(n + 1)."""
        return [-math.log(len(w.strip()) + 1) for w in tokenize(text)[1:]]

    def count_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def close(self) -> None:
        self.active.clear()
