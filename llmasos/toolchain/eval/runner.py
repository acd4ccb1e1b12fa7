"""Running evaluation tasks over a client: every item is a process, spawned concurrently so that their
model calls share the kernel's batched forward steps.

Rule: the runner talks to the kernel through a ``KernelClient`` only (``LocalClient`` over a kernel it
booted, or ``RemoteClient`` over a daemon), so ``--url`` runs exactly what a local run does. An item whose
process crashes or is killed scores as wrong and keeps its error; a spawn refused outright (an unknown
app, bad arguments) stops the run with that error, since every other item would fail the same way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from llmasos.client.records import KernelClient
from llmasos.toolchain.eval import metrics
from llmasos.toolchain.eval.apps import SPECS
from llmasos.toolchain.eval.sets import Task

SPAN = 64  # perplexity: tokens per span of the distribution the figure shows
STEP_CALLS = ("generate", "calltool")  # an agent's steps: its model calls and tool calls (trace names)
_TRACE_CALL = re.compile(r"^\[\d+\] (\w+)\(")
# react's log (apps/react.py): a line per tool call or invalid call, one for a required call the model
# did not make (it answered instead: an invalid call too), and the model it runs on
_LOG_CALL = re.compile(r"^\[\w+\(.*\) -> ", re.MULTILINE)
_LOG_INVALID = re.compile(r"^\[(?:invalid call|no call): ", re.MULTILINE)
_LOG_MODEL = re.compile(r"^\[model: ([^\s\]]+)", re.MULTILINE)


@dataclass(slots=True)
class TaskReport:
    """One task's scores for one model: metrics (name -> value), per-item rows, and a distribution
    (the perplexity of each SPAN tokens, or per-item correctness) for the plot."""

    kind: str
    source: str
    metrics: dict[str, float]
    items: list[dict[str, Any]] = field(default_factory=list)
    distribution: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class ModelReport:
    """All tasks' reports for one model (its name as the kernel reports it)."""

    model: str
    tasks: list[TaskReport] = field(default_factory=list)


@dataclass(slots=True)
class Options:
    """How items run: the agent app, model-call sizes, perplexity windows, processes at once."""

    app: str = "react"
    concurrency: int = 32
    max_tokens: int | None = None  # qa / tools / agent replies; None: each app's own default
    window: int | None = None  # perplexity: None: the kernel's score_window
    stride: int | None = None  # perplexity: None: half the window
    free: bool = False  # agent: the app generates without the tool-call grammar (react's constrained=False)
    check: bool = True  # agent: False runs the app without its call check (react's check=False)


Advance = Callable[[str], None]  # called with the task's kind after each item ends


async def run_model(client: KernelClient, tasks: list[Task], options: Options | None = None,
                    advance: Advance | None = None) -> ModelReport:
    """Run every task on the kernel behind client; items of a task run concurrently."""
    options = options or Options()
    report = ModelReport((await client.stats()).engine)
    for task in tasks:
        t0 = time.perf_counter()
        rows = await _run_items(client, task, options, advance or (lambda _kind: None))
        scored = SCORERS[task.kind](task, rows)
        scored.seconds = round(time.perf_counter() - t0, 3)
        report.tasks.append(scored)
    return report


async def _run_items(client: KernelClient, task: Task, options: Options, advance: Advance) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{} for _ in task.items]
    limiter = anyio.CapacityLimiter(max(1, options.concurrency))

    async def one(i: int, item: dict[str, Any]) -> None:
        async with limiter:
            rows[i] = await _run_item(client, task.kind, item, options)
        advance(task.kind)

    try:
        async with anyio.create_task_group() as tg:
            for i, item in enumerate(task.items):
                tg.start_soon(one, i, item)
    except BaseExceptionGroup as group:  # a refused spawn: the first error, as it was raised
        raise _first(group) from None
    return rows


def _first(group: BaseExceptionGroup) -> BaseException:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error


async def _run_item(client: KernelClient, kind: str, item: dict[str, Any], options: Options) -> dict[str, Any]:
    spec, args, kwargs = _spawn_args(kind, item, options)
    pid = await client.spawn(spec, args, kwargs)
    info = await client.ended(pid)
    steps = None
    if kind == "agent":
        lines = await client.trace(pid)
        steps = sum(1 for line in lines if (m := _TRACE_CALL.match(line)) and m.group(1) in STEP_CALLS)
        log = "".join(text for stream, text in await client.output(pid) if stream == "stderr")
        calls = {"valid_calls": len(_LOG_CALL.findall(log)), "invalid_calls": len(_LOG_INVALID.findall(log)),
                 "model": (_LOG_MODEL.findall(log) or [""])[-1], "log": log}
    await client.wait(pid)  # reap it
    return {"id": item["id"], "state": info.state, "value": info.exit_value, "error": info.error,
            "tokens": info.usage.prompt_tokens + info.usage.completion_tokens, "steps": steps,
            **(calls if kind == "agent" else {})}


def _spawn_args(kind: str, item: dict[str, Any], options: Options) -> tuple[str, list[Any], dict[str, Any]]:
    sized = {"max_tokens": options.max_tokens} if options.max_tokens is not None else {}
    if kind == "perplexity":
        return SPECS["perplexity"], [item["text"]], {"window": options.window, "stride": options.stride}
    if kind == "qa":
        return SPECS["qa"], [item["question"]], sized
    if kind == "tools":
        offered = item.get("tools") or sorted({"calculator", "clock", item["tool"]})
        return SPECS["tools"], [item["question"]], {"offered": offered, **sized}
    return options.app, [item["question"]], {**sized, **({"constrained": False} if options.free else {}),
                                             **({} if options.check else {"check": False})}


# -- scoring ------------------------------------------------------------------------------------------


def _score_perplexity(task: Task, rows: list[dict[str, Any]]) -> TaskReport:
    row = rows[0]
    value = row["value"] if row["state"] == "exited" and isinstance(row["value"], dict) else None
    if value is None:
        return TaskReport(task.kind, task.source, {"perplexity": float("nan")},
                          [{"id": row["id"], "error": row["error"] or row["state"]}])
    logprobs = value["logprobs"]
    nll = -sum(logprobs) / len(logprobs) if logprobs else 0.0
    spans = metrics.chunk_perplexities(logprobs, SPAN)
    item = {"id": row["id"], "tokens": value["tokens"], "window": value["window"], "stride": value["stride"]}
    return TaskReport(task.kind, task.source,
                      {"perplexity": metrics.perplexity(logprobs), "nll": nll, "tokens": float(value["tokens"])},
                      [item], spans)


def _score_qa(task: Task, rows: list[dict[str, Any]]) -> TaskReport:
    items, predictions, references = [], [], []
    for item, row in zip(task.items, rows, strict=True):
        answer = str(row["value"]) if row["state"] == "exited" and row["value"] is not None else ""
        refs = item["answers"]
        items.append({"id": row["id"], "question": item["question"], "prediction": answer, "answers": refs,
                      "exact": metrics.exact_match(answer, refs), "contains": metrics.contains(answer, refs),
                      "tokens": row["tokens"], **_error(row)})
        predictions.append(answer)
        references.append(refs)
    return TaskReport(task.kind, task.source, {
        "exact_match": metrics.mean(i["exact"] for i in items),
        "contains": metrics.mean(i["contains"] for i in items),
        "bleu": metrics.bleu(predictions, references),
    }, items, [float(i["contains"]) for i in items])


def _score_tools(task: Task, rows: list[dict[str, Any]]) -> TaskReport:
    items = []
    for item, row in zip(task.items, rows, strict=True):
        value = row["value"] if row["state"] == "exited" and isinstance(row["value"], dict) else {}
        calls = value.get("calls") or []
        first = calls[0]["name"] if calls else None
        items.append({"id": row["id"], "question": item["question"], "expected": item["tool"], "called": first,
                      "arguments": calls[0]["arguments"] if calls else None, "reply": value.get("text", ""),
                      "valid": bool(calls),
                      "right": first == item["tool"], "tokens": row["tokens"], **_error(row)})
    return TaskReport(task.kind, task.source, {
        "valid_call_rate": metrics.mean(i["valid"] for i in items),
        "right_tool_rate": metrics.mean(i["right"] for i in items),
    }, items, [float(i["right"]) for i in items])


def _score_agent(task: Task, rows: list[dict[str, Any]]) -> TaskReport:
    items = []
    for item, row in zip(task.items, rows, strict=True):
        answer = str(row["value"]) if row["state"] == "exited" and row["value"] is not None else ""
        items.append({"id": row["id"], "question": item["question"], "prediction": answer,
                      "answer": item["answer"], "correct": metrics.answer_matches(answer, item["answer"]),
                      "steps": row["steps"] or 0, "tokens": row["tokens"], "valid_calls": row["valid_calls"],
                      "invalid_calls": row["invalid_calls"], "model": row["model"], "log": row["log"],
                      **_error(row)})
    valid, invalid = sum(i["valid_calls"] for i in items), sum(i["invalid_calls"] for i in items)
    return TaskReport(task.kind, task.source, {
        "accuracy": metrics.mean(i["correct"] for i in items),
        "mean_steps": metrics.mean(i["steps"] for i in items),
        "mean_tokens": metrics.mean(i["tokens"] for i in items),
        "call_validity": valid / (valid + invalid) if valid + invalid else 1.0,
    }, items, [float(i["correct"]) for i in items])


def _error(row: dict[str, Any]) -> dict[str, Any]:
    if row["state"] == "exited":
        return {}
    error = (row["error"] or "").strip().splitlines()
    return {"error": f"{row['state']}: {error[-1] if error else ''}".rstrip(": ")}


SCORERS: dict[str, Callable[[Task, list[dict[str, Any]]], TaskReport]] = {
    "perplexity": _score_perplexity, "qa": _score_qa, "tools": _score_tools, "agent": _score_agent,
}

__all__ = ["STEP_CALLS", "ModelReport", "Options", "TaskReport", "run_model"]
