"""A process's persistent context: chat over it, and page old turns out when the window is full.

Rule (after MemGPT): when the context plus the reply budget would not fit the model's window, the
oldest turns move to the process's long-term notes (still found by ``sys.memory.search``) and a short
summary, written by the model, stays at the head of the context. A chat's user turn and reply are
appended together, under the syscall's idempotency key, so a chat re-issued after a crash appends
nothing twice and returns the reply already stored. The summary is a generate syscall made inside the
chat (checked against the budget, traced and journaled like any other); the chat's own reply is the
chat syscall's work. memory/ only stores the rows (``Store.append_context``, ``Store.page_out``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.kernel.sys_llm import resolve_max_tokens, start_generate
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.types import Completion

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process
    from llmasos.memory.store import Store

SUMMARY_PROMPT = (
    "Summarize the conversation below in a few sentences for your own memory. Keep names, facts, "
    "numbers and decisions; leave out pleasantries.\n\n"
)


def own_namespace(pid: int) -> str:
    """The memory namespace a process uses when it names none."""
    return f"pid:{pid}"


def count(kernel: Kernel, role: str, content: str, engine: Any = None) -> int:
    """Tokens one message takes in a prompt (by the engine's tokenizer, plus template overhead); engine:
    the model's the prompt is for (None: the default model's)."""
    text = f"{role}: {content}"
    overhead = kernel.config.message_tokens
    counter = getattr(engine if engine is not None else kernel.engine, "count_tokens", None)
    if counter is None:  # an engine without a tokenizer: about three characters a token
        return len(text) // 3 + overhead
    return int(counter(text)) + overhead


def as_messages(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"role": r.role, "content": r.content} for r in rows]


async def chat(kernel: Kernel, proc: Process, call: Any, store: Store, key: str | None) -> Completion:
    """The chat syscall: generate over the context plus call.text, then append both turns."""
    rows = await store.context(proc.pid)
    if key is not None:
        for r in rows:
            if r.key == f"{key}:a":  # re-issued after a crash: the reply is already there
                return Completion(text=r.content, finish_reason="stop", completion_tokens=r.tokens)
    max_tokens = resolve_max_tokens(kernel, call.max_tokens)  # a 0 given is refused, not the default
    engine = kernel.models.get(call.model if call.model is not None else proc.model).engine
    user = {"role": "user", "content": call.text, "tokens": count(kernel, "user", call.text, engine),
            "key": f"{key}:u" if key else None}
    rows = await fit(kernel, proc, store, rows, user["tokens"] + max_tokens, call.model)
    messages = [*as_messages(rows), {"role": "user", "content": call.text}]
    if call.system and not any(r.role == "system" and r.kind == "turn" for r in rows):
        messages.insert(0, {"role": "system", "content": call.system})
    gen = Generate(messages=tuple(messages), max_tokens=max_tokens, temperature=call.temperature,
                   top_p=call.top_p, seed=call.seed, stop=call.stop, model=call.model)
    completion = await start_generate(kernel, proc, gen).collect()
    reply = {"role": "assistant", "content": completion.text,
             "tokens": count(kernel, "assistant", completion.text, engine), "key": f"{key}:a" if key else None}
    first = []
    if call.system and not any(r.role == "system" and r.kind == "turn" for r in rows):
        first = [{"role": "system", "content": call.system, "key": f"{key}:s" if key else None,
                  "tokens": count(kernel, "system", call.system, engine)}]
    await store.append_context(proc.pid, [*first, user, reply])
    return completion


async def fit(kernel: Kernel, proc: Process, store: Store, rows: list[Any], need: int,
              model: str | None = None) -> list[Any]:
    """rows, after paging out the oldest turns if rows plus need tokens exceed the window of model (the
    chat's: None is the process's default model); its summary is written by that model."""
    engine = kernel.models.get(model if model is not None else proc.model).engine
    window = int(getattr(engine, "context_window", 0) or 0)
    used = sum(r.tokens for r in rows)
    if not window or used + need <= window:
        return rows
    summary_budget = max(kernel.config.summary_min_tokens, int(window * kernel.config.summary_share))
    head = [r for r in rows if r.kind == "summary"]
    turns = [r for r in rows if r.kind != "summary"]
    target = int(window * kernel.config.page_target)  # leave room: the next turns do not page at once
    evicted: list[Any] = []
    while turns and sum(r.tokens for r in turns) + summary_budget + need > target:
        evicted.append(turns.pop(0))
    if not evicted:
        return rows  # nothing left to page; the engine reports the overflow
    old = head[0].content if head else ""
    transcript = "\n".join(f"{r.role}: {r.content}" for r in evicted)
    prompt = SUMMARY_PROMPT + (f"Earlier summary: {old}\n\n" if old else "") + transcript + "\n\nSummary:"
    done = await kernel.syscall(proc, Generate(prompt=prompt, max_tokens=summary_budget, truncate=True,
                                               model=model))
    summary = "Summary of the earlier conversation: " + done.text.strip()
    tokens = count(kernel, "system", summary, engine)
    await store.page_out(proc.pid, own_namespace(proc.pid), evicted, summary, tokens)
    return await store.context(proc.pid)
