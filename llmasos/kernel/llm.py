"""The kernel's LLM loop: it feeds the scheduler's batches to the engine and routes tokens back.

Rule: only this loop touches the engine's mutable state (step and abort), one call at a time and
always on the model thread (engine/worker.py), so engines need no locks. Processes talk to it
through ``submit`` and ``cancel``, which never block. No request can fail another's: a sequence that
fails alone in a step (an error event, or ``SequenceFailed``) fails alone, and the step goes on (or
runs again) without it; only a step that fails as a whole fails its batch. Budgets hold per token:
each delivered token is charged to its process, and a process out of tokens, model time or time
has its sequence ended with ``finish_reason="budget"`` (``kernel/budget.py``).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llmasos.engine import worker
from llmasos.engine.base import Engine, Sequence, SequenceFailed, SeqStatus, TokenEvent
from llmasos.kernel import budget
from llmasos.kernel.sched import Scheduler
from llmasos.syscalls.errors import EngineError
from llmasos.syscalls.types import Completion, ReplyStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmasos.kernel.proc import Process


class TokenStream(ReplyStream):
    """The tokens of one generate call as they are produced: ``async for text in stream``.

    ``await stream.collect()`` drains it into a Completion. Leaving the stream early (a break, a kill,
    a crash) frees the sequence in the engine.
    """

    def __init__(self, llm: LLMLoop, proc: Process | None, seq: Sequence,
                 events: MemoryObjectReceiveStream[TokenEvent | BaseException]) -> None:
        self._llm, self._proc, self.seq, self._events = llm, proc, seq, events
        self.completion: Completion | None = None  # set once the last token arrived
        # -- tools: turns the finished Completion into one with tool_calls (tools/calling.py)
        self.postprocess: Callable[[Completion], Completion] | None = None

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> str:
        if self.completion is not None:
            raise StopAsyncIteration
        try:
            event = await self._events.receive()
        except anyio.EndOfStream:  # freed without a last token (aborted)
            self._finish(self.seq.finish_reason or "abort")
            raise StopAsyncIteration from None
        except BaseException:
            self.close()
            raise
        if isinstance(event, BaseException):
            self.close()
            raise event
        if event.finish_reason is not None:
            self._finish(event.finish_reason)
        return event.text

    def _finish(self, reason: str) -> None:
        seq = self.seq
        if reason == "length" and seq.capped and len(seq.output_ids) >= seq.params.max_tokens:
            reason = "budget"  # its max_tokens was what its process's budget had left
        self.completion = Completion(
            text=seq.text, finish_reason=reason, prompt_tokens=len(seq.prompt_ids),
            completion_tokens=len(seq.output_ids), model=self._llm.engine.name,
        )
        self._events.close()
        if self.postprocess is not None:  # -- tools (it may raise: a required call that is missing)
            self.completion = self.postprocess(self.completion)

    def close(self) -> None:
        """Stop generating: the engine frees the sequence before its next step."""
        if self.completion is None:
            self._llm.cancel(self.seq)
            self._events.close()


class LLMLoop:
    """Runs engine steps while any sequence waits; sleeps otherwise."""

    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self._routes: dict[int, tuple[Process | None, MemoryObjectSendStream]] = {}  # sid -> owner
        self._aborts: list[Sequence] = []  # cancelled by their owners, to release
        self._to_free: list[Sequence] = []  # released, for the engine to free before the next step
        self._sent_early: set[int] = set()  # sids whose event of the running step went out early
        self._token: anyio.lowlevel.EventLoopToken | None = None  # for the model thread's early calls
        self._wake = anyio.Event()
        # Statistics for top.
        self.steps = 0
        self.tokens = 0
        self.last_batch = 0
        self.busy_time = 0.0
        self.started = time.monotonic()

    @property
    def pending(self) -> int:
        return len(self.scheduler)

    def submit(self, proc: Process | None, seq: Sequence) -> TokenStream:
        """Queue a prepared sequence; its tokens arrive on the returned stream."""
        send, recv = anyio.create_memory_object_stream[TokenEvent | BaseException](math.inf)
        self._routes[seq.sid] = (proc, send)
        if proc is not None:
            proc.seqs.add(seq)
        self.scheduler.add(seq)
        self._wake.set()
        return TokenStream(self, proc, seq, recv)

    def cancel(self, seq: Sequence) -> None:
        """Abort seq before the next step (its owner was killed or stopped listening)."""
        owner = self._routes.get(seq.sid)
        if owner is not None:
            if owner[0] is not None:
                owner[0].seqs.discard(seq)
            self._aborts.append(seq)
            self._wake.set()

    def set_scheduler(self, scheduler: Scheduler) -> None:
        """Switch policy at run time (build it with ``make_scheduler(..., previous=old)``)."""
        self.scheduler = scheduler

    def _release(self, seq: Sequence, reason: str) -> None:
        self.scheduler.remove(seq)
        self._to_free.append(seq)  # the engine frees it on the model thread, before the next step
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = seq.finish_reason or reason
        owner = self._routes.pop(seq.sid, None)
        if owner is not None:
            proc, send = owner
            if proc is not None:
                proc.seqs.discard(seq)
                if seq.reserved:
                    budget.release(proc, seq)
            send.close()

    async def run(self) -> None:
        """The loop; runs in the kernel's task group until the kernel shuts down."""
        self._token = anyio.lowlevel.current_token()
        try:
            await self._loop()
        finally:
            # Invariant: when the loop stops, every open token stream is closed, so its reader
            # ends (it sees an aborted completion) instead of waiting forever, and the engine
            # holds nothing of this kernel's (an engine may outlive its kernel).
            self._to_free += [*self.scheduler.running, *self.scheduler.waiting]
            self._to_free += self._aborts
            for _proc, send in self._routes.values():
                send.close()
            self._routes.clear()
            with anyio.CancelScope(shield=True):
                await self._free()

    async def _free(self) -> None:
        """Free released sequences in the engine, on the model thread like every engine change."""
        if not self._to_free:
            return
        seqs, self._to_free = self._to_free, []
        if self.engine.threaded:
            await worker.run(self._abort_all, seqs)
        else:
            self._abort_all(seqs)

    def _abort_all(self, seqs: list[Sequence]) -> None:
        for seq in seqs:
            self.engine.abort(seq)

    async def _loop(self) -> None:
        while True:
            for seq in self._aborts:
                self._release(seq, "abort")
            self._aborts.clear()
            await self._free()
            batch = (self.scheduler.schedule(self.engine.capacity(), self.engine.cached_tokens)
                     if len(self.scheduler) else [])
            if not batch:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            t0 = time.perf_counter()
            try:
                batch, events = await self._step(batch)
            except Exception as exc:  # the engine failed: fail this batch, keep the kernel
                self._sent_early.clear()
                self._fail(batch, exc)
                continue
            if not batch:
                continue
            elapsed = time.perf_counter() - t0
            self._deliver(batch, events, elapsed)
            self.scheduler.on_step(batch)
            await self._free()  # what finished or was dropped in this step
            if not self.engine.threaded:
                await anyio.lowlevel.checkpoint()  # let the processes that got tokens run

    async def _step(self, batch: list[Sequence]) -> tuple[list[Sequence], list[TokenEvent]]:
        """engine.step(batch); a sequence that failed alone (SequenceFailed) is failed, and the step runs
        again without it. Returns the batch that ran and its events."""
        while True:
            try:
                if self.engine.threaded and not getattr(self.engine, "runs_model", True):
                    # a remote engine waits on a server, not the CPU: not on (nor holding) the model thread
                    return batch, await anyio.to_thread.run_sync(self.engine.step, batch)
                if self.engine.threaded:
                    early = None if worker.on_model_thread() else self._early
                    return batch, await worker.run(self.engine.step, batch, early)
                return batch, self.engine.step(batch)
            except SequenceFailed as exc:
                if not any(s is exc.seq for s in batch):
                    raise
                self._sent_early.clear()
                self._fail([exc.seq], exc.cause, alone=True)
                batch = [s for s in batch if s is not exc.seq]
                if not batch:
                    return batch, []

    def _early(self, events: list[TokenEvent]) -> None:
        """From the model thread, mid-step: hand newcomers their first token now."""
        anyio.from_thread.run_sync(self._send_early, events, token=self._token)

    def _send_early(self, events: list[TokenEvent]) -> None:
        # Invariant: only the send happens here; accounting and release wait for _deliver, which
        # skips the send of every sid recorded in _sent_early.
        now = time.monotonic()
        for event in events:
            owner = self._routes.get(event.seq.sid)
            if owner is None:
                continue
            try:
                owner[1].send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                continue  # _deliver frees it
            self._sent_early.add(event.seq.sid)
            if event.seq.first_token_at is None:
                event.seq.first_token_at = now

    def _deliver(self, batch: list[Sequence], events: list[TokenEvent], elapsed: float) -> None:
        self.steps += 1
        self.tokens += len(events)
        self.last_batch = len(batch)
        self.busy_time += elapsed
        share = elapsed / max(len(batch), 1)
        now = time.monotonic()
        for event in events:
            seq = event.seq
            owner = self._routes.get(seq.sid)
            if owner is None:  # aborted while the step ran
                self._to_free.append(seq)
                continue
            proc, send = owner
            if event.error is not None:  # this sequence alone failed in the step
                self._fail([seq], event.error, alone=True)
                continue
            early = seq.sid in self._sent_early
            over = None
            if proc is not None:
                usage = proc.usage
                # Charged: what the sequence's counts grew by since its last event (its prompt with
                # the first token; an engine that learns the real counts late corrects them later).
                prompt, completion = len(seq.prompt_ids), len(seq.output_ids)
                grew = prompt - seq.charged[0], completion - seq.charged[1]
                seq.charged = (prompt, completion)
                usage.prompt_tokens += grew[0]
                usage.completion_tokens += grew[1]
                usage.model_time += share
                if seq.reserved and grew[0] + grew[1] > 0:
                    budget.charge(proc, seq, grew[0] + grew[1])
                caps = proc.caps
                # Invariant (belt and braces, whatever was reserved): once its process's budget is
                # spent, a sequence gets no further token; this one goes out and the stream ends.
                if event.finish_reason is None and (caps.token_budget is not None or proc.deadline is not None
                                                    or caps.model_time_budget is not None):
                    over = budget.exhausted(proc)
            if seq.first_token_at is None:
                seq.first_token_at = now
            try:
                if not early:
                    send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # Invariant: the owner stopped listening (killed, or left the stream): free it now.
                self._release(seq, "abort")
                continue
            if event.finish_reason is not None:
                self._release(seq, event.finish_reason)
            elif over is not None:  # its stream ends here, with the partial reply
                self._release(seq, "budget")
        self._sent_early.clear()

    def _fail(self, batch: list[Sequence], exc: BaseException, alone: bool = False) -> None:
        if isinstance(exc, EngineError):  # the engine's own message for this request (a remote server's)
            error = exc
        elif alone:
            error = EngineError(f"this request failed in the model step: {type(exc).__name__}: {exc} "
                                "(the other requests in its batch went on); check its sampling arguments, "
                                "logits processor or tools")
        else:
            error = EngineError(f"the model failed during a forward step: {type(exc).__name__}: {exc}")
        for seq in batch:
            owner = self._routes.get(seq.sid)
            if owner is not None:
                try:
                    owner[1].send_nowait(error)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
            self._release(seq, "error")
