"""Budget accounts: tokens and model time carved from the parent's, reserved before a generate runs.

Rule: a process tree never spends more than the budget at its root. Three moves keep it so:
- carve (at spawn): a child's token and model-time budgets come out of what its parent has left
  (``Process.lent_tokens``, ``lent_time``), and its deadline never passes its parent's;
- reserve (at generate): prompt + max_tokens are held (``Process.reserved``) before the sequence is
  queued, so concurrent generates cannot together pass the budget; each charged token turns a reserved
  one into a used one (``charge``), and what a sequence did not use is released when it ends;
- settle (at the end of a process): what the child did not use goes back to its lender (the parent it
  was carved from, even when it was adopted by root); a reservation or a grandchild's grant that comes
  back after the end goes on up the same way.

Invariant: for a process with a token budget, used + reserved + lent_tokens <= token_budget, where
used is its own prompt + completion tokens and lent_tokens holds a live child's whole grant and an
ended child's use.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from llmasos.engine.base import Sequence
    from llmasos.kernel.proc import Process


def tokens_held(proc: Process) -> int:
    """Tokens of proc's budget that are gone: used, reserved by running generates, lent to children."""
    u = proc.usage
    return u.prompt_tokens + u.completion_tokens + proc.reserved + proc.lent_tokens


def tokens_left(proc: Process) -> int | None:
    """Tokens proc may still reserve or lend (None: no token budget)."""
    limit = proc.caps.token_budget
    return None if limit is None else limit - tokens_held(proc)


def model_time_left(proc: Process) -> float | None:
    """Seconds of model time proc may still use or lend (None: no model-time budget)."""
    limit = proc.caps.model_time_budget
    return None if limit is None else limit - proc.usage.model_time - proc.lent_time


def life_left(proc: Process) -> float | None:
    """Seconds until proc's deadline (None: no time budget)."""
    return None if proc.deadline is None else proc.deadline - anyio.current_time()


def available(proc: Process | None, caps: Any) -> Any:
    """caps with each budget replaced by what proc has left: what a child of proc may be granted."""
    if proc is None or (caps.token_budget is None and caps.model_time_budget is None and proc.deadline is None):
        return caps
    tokens, seconds, life = tokens_left(proc), model_time_left(proc), life_left(proc)
    return dataclasses.replace(
        caps, token_budget=None if tokens is None else max(tokens, 0),
        model_time_budget=None if seconds is None else max(seconds, 0.0),
        time_budget=None if life is None else max(life, 0.0))


def carve(parent: Process | None, child: Process) -> None:
    """At spawn: take child's budgets out of parent's, and set child's deadline."""
    caps = child.caps
    if caps.time_budget is not None:
        child.deadline = anyio.current_time() + caps.time_budget
        if parent is not None and parent.deadline is not None:
            child.deadline = min(child.deadline, parent.deadline)
    if parent is None:
        return
    if parent.caps.token_budget is not None and caps.token_budget is not None:
        parent.lent_tokens += caps.token_budget
        child.lender = parent
    if parent.caps.model_time_budget is not None and caps.model_time_budget is not None:
        parent.lent_time += caps.model_time_budget
        child.lender = parent


def settle(proc: Process) -> None:
    """At proc's end: what it did not use (nor reserve, nor lend) goes back to its lender."""
    if proc.lender is None:
        return
    tokens = max(tokens_left(proc) or 0, 0)
    seconds = max(model_time_left(proc) or 0.0, 0.0)
    _give_back(proc, tokens, seconds)


def reserve(proc: Process, seq: Sequence, tokens: int) -> None:
    """Hold tokens of proc's budget for seq (its prompt and max_tokens) until it ends."""
    seq.reserved = tokens
    proc.reserved += tokens


def charge(proc: Process, seq: Sequence, tokens: int) -> None:
    """tokens of seq were just counted as used: they are no longer reserved."""
    take = min(tokens, seq.reserved)
    seq.reserved -= take
    proc.reserved -= take


def release(proc: Process, seq: Sequence) -> None:
    """seq ended: what it reserved and did not use is free again (its lender's, if proc has ended)."""
    tokens, seq.reserved = seq.reserved, 0
    proc.reserved -= tokens
    if not proc.alive:
        _give_back(proc, tokens, 0.0)


def exhausted(proc: Process) -> str | None:
    """Which budget proc has used up mid-stream (None: none), for the LLM loop's per-token check."""
    caps = proc.caps
    if caps.token_budget is not None:
        u = proc.usage
        if u.prompt_tokens + u.completion_tokens + proc.lent_tokens >= caps.token_budget:
            return "token_budget"
    if caps.model_time_budget is not None and proc.usage.model_time + proc.lent_time >= caps.model_time_budget:
        return "model_time_budget"
    if proc.deadline is not None and anyio.current_time() >= proc.deadline:
        return "time_budget"
    return None


def _give_back(proc: Process, tokens: int, seconds: float) -> None:
    # Invariant: a lender that has ended settled already, so what reaches it goes on to its own lender.
    lender = proc.lender
    while lender is not None and (tokens or seconds):
        if lender.caps.token_budget is not None:
            lender.lent_tokens -= tokens
        else:
            tokens = 0
        if lender.caps.model_time_budget is not None:
            lender.lent_time -= seconds
        else:
            seconds = 0.0
        if lender.alive:
            return
        lender = lender.lender
