"""The listings every face prints: the process table, apps, models, and the short forms they use.

Rule: one function per listing, from records to a rich ``Table``; the shell's ``ps`` and
``llmasos ps --url`` (and ``apps``, ``models``) print the same table for the same records, whatever
kernel they came from. Nothing here asks a kernel anything.
"""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from rich.text import Text

from llmasos.client.records import AppRow, ModelStats, Row
from llmasos.syscalls.types import ProcInfo

PS_COLUMNS = ("PID", "PPID", "APP", "STATE", "PRIO", "TOKENS in/out", "CALLS", "MODEL", "TIME", "ARGS / RESULT")
STATE_STYLE = {"exited": "dim", "killed": "yellow", "crashed": "red", "lost": "red"}


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def ended_line(pid: int, state: str, value: Any = None, error: str | None = None) -> str:
    """`[3] exited: 'hi'`, `[4] killed`, `[5] crashed: ValueError: bad` (the traceback is in logs)."""
    if state == "exited":
        return f"[{pid}] exited" + (f": {short(repr(value))}" if value is not None else "")
    if state == "crashed" and error:
        return f"[{pid}] crashed: {short(_last_line(error))} (see logs {pid})"
    return f"[{pid}] {state}" + (f": {short(error)}" if error and error != "killed" else "")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def table(*columns: str, title: str | None = None, color: bool = False) -> Table:
    """A borderless table with bold headers (reversed on a color terminal)."""
    return Table(*columns, title=title, box=None, header_style="bold reverse" if color else "bold",
                 pad_edge=False, title_justify="left")


def ps_table(rows: list[ProcInfo], *, color: bool = False, now: float | None = None) -> Table:
    """The process table, by pid: state (and why it waits), usage, age, and its args or how it ended."""
    nodes = any(p.node for p in rows)  # a cluster: which node runs each (NODE, after PID)
    out = table(*(PS_COLUMNS[:1] + ("NODE",) + PS_COLUMNS[1:] if nodes else PS_COLUMNS), color=color)
    now = time.time() if now is None else now
    for p in sorted(rows, key=lambda r: r.pid):
        state = p.state + (f":{p.waiting_on}" if p.waiting_on else "")
        tail = " ".join(short(a, 20) for a in p.args)
        if p.state == "exited" and p.exit_value is not None:
            tail = "→ " + short(repr(p.exit_value), 40)
        elif p.state in ("crashed", "lost") and p.error:
            tail = short(_last_line(p.error), 40)
        u = p.usage
        out.add_row(
            str(p.pid), *((p.node or "",) if nodes else ()), str(p.ppid), p.app, Text(state, style=STATE_STYLE.get(p.state, "")), str(p.priority),
            f"{u.prompt_tokens}/{u.completion_tokens}", str(u.syscalls), f"{u.model_time:.2f}s",
            age((p.ended or now) - p.started), Text(tail),
        )
    return out


def apps_table(rows: list[AppRow], *, color: bool = False) -> Table:
    out = table("APP", "USAGE", "DESCRIPTION", "SOURCE", color=color)
    for a in rows:
        out.add_row(Text(a.name, style="bold"), Text(a.usage), Text(a.description), Text(a.source, style="dim"))
    return out


def model_rate(now: ModelStats, before: ModelStats | None = None) -> float:
    """Tokens per second of a model: since before (a snapshot of the same model), else since boot."""
    if before is not None and now.at > before.at:
        return (now.tokens - before.tokens) / (now.at - before.at)
    return now.tokens / now.uptime if now.uptime > 0 else 0.0


def loaded_models_table(rows: list[ModelStats], before: list[ModelStats] | None = None, *,
                        color: bool = False) -> Table:
    """The loaded models: engine, policy, queue (running/waiting), tokens/s (since before, else since boot)."""
    out = table("MODEL", "ENGINE", "KIND", "POLICY", "RUN/WAIT", "BATCH", "TOK/S", "TOKENS", "CONTEXT", color=color)
    prev = {m.name: m for m in before or ()}
    for m in rows:
        name = Text(m.name, style="bold")
        if m.default:
            name.append(" (default)", style="dim")
        out.add_row(name, Text(short(m.engine, 30)), m.kind, m.policy, f"{m.running}/{m.waiting}",
                    f"{m.last_batch}/{m.max_batch}", f"{model_rate(m, prev.get(m.name)):.1f}", str(m.tokens),
                    str(m.context_window or ""))
    return out


def models_table(rows: list[Row], *, color: bool = False) -> Table:
    out = table("MODEL", "SOURCE", "STATUS", color=color)
    for r in rows:
        out.add_row(Text(r.name, style="bold"), Text(r.description, style="dim"), r.extra)
    return out
