"""top: a live view of the processes and the models: states, tokens per second, batch and queue.

Rule: top only reads (ps, the default model's counters, every model's counters) and computes rates from the
difference between two snapshots; the first frame shows averages since each process (and the kernel)
started. With several models loaded, a row per model shows its policy, queue and tokens/s.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout import Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from llmasos.client import EngineStats, ModelStats
from llmasos.client.tables import age, loaded_models_table
from llmasos.shell.commands import command, parse_number, take_options, usage_error

if TYPE_CHECKING:
    from llmasos.shell.repl import Shell
    from llmasos.syscalls.types import ProcInfo


@dataclass(slots=True)
class Snapshot:
    stats: EngineStats
    procs: list[ProcInfo]
    models: list[ModelStats] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)


async def snapshot(sh: Shell) -> Snapshot:
    return Snapshot(await sh.client.stats(), await sh.client.ps(all=False), await sh.client.model_stats())


def render(now: Snapshot, before: Snapshot | None, max_rows: int = 40) -> Group:
    """One frame of top as rich renderables."""
    s = now.stats
    dt = (now.at - before.at) if before is not None else 0.0
    if before is not None and dt > 0:
        tok_s = (s.tokens - before.stats.tokens) / dt
        busy = (s.busy_time - before.stats.busy_time) / dt
    else:
        tok_s = s.tokens / s.uptime if s.uptime > 0 else 0.0
        busy = s.busy_time / s.uptime if s.uptime > 0 else 0.0
    states: dict[str, int] = {}
    for p in now.procs:
        states[p.state] = states.get(p.state, 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    header = Text.assemble(
        ("llmasos top", "bold"), f" — up {age(s.uptime)} · engine {s.engine} · policy {s.policy}\n",
        f"processes: {len(now.procs)}" + (f" ({counts})" if counts else ""), "\n",
        ("model: ", "bold"),
        f"batch {s.last_batch}/{s.max_batch} · running {s.running} · queued {s.waiting} · ",
        (f"{tok_s:.1f} tok/s", "bold"),
        f" · busy {min(busy, 1.0):.0%} · steps {s.steps} · tokens {s.tokens} · "
        f"KV {s.resident_tokens}/{s.max_resident_tokens}",
        *_prefix_line(s),
    )
    table = Table("PID", "APP", "STATE", "PRIO", "TOK/S", "TOKENS in/out", "CALLS", "MODEL", "TIME",
                  box=None, header_style="reverse", pad_edge=False)
    prev = {p.pid: p for p in before.procs} if before is not None else {}
    wall = time.time()
    rows = sorted(now.procs, key=lambda p: (_rate(p, prev.get(p.pid), dt, wall), -p.pid), reverse=True)
    for p in rows[:max_rows]:
        u = p.usage
        state = p.state + (f":{p.waiting_on}" if p.waiting_on else "")
        table.add_row(
            str(p.pid), p.app, state, str(p.priority), f"{_rate(p, prev.get(p.pid), dt, wall):.1f}",
            f"{u.prompt_tokens}/{u.completion_tokens}", str(u.syscalls), f"{u.model_time:.2f}s",
            age(wall - p.started),
        )
    parts: list[Any] = [header, Text("")]
    if len(now.models) > 1:  # per-model throughput
        parts += [loaded_models_table(now.models, before.models if before is not None else None), Text("")]
    parts.append(table)
    if len(rows) > max_rows:
        parts.append(Text(f"… {len(rows) - max_rows} more (ps shows all)", style="dim"))
    return Group(*parts)


def _prefix_line(s: EngineStats) -> tuple[str, ...]:
    """The prefix cache's line (shared prompt prefixes), when it holds or has served anything."""
    if not (s.prefix_blocks or s.prefix_hit_rate):
        return ()
    line = (f"\nshared prefixes: {s.prefix_blocks} blocks ({s.prefix_tokens} tokens) · "
            f"{s.prefix_shared} in use by 2+ · prompt hit rate {s.prefix_hit_rate:.0%}")
    return (line,)


def _rate(p: ProcInfo, before: ProcInfo | None, dt: float, wall: float) -> float:
    if before is not None and dt > 0:
        return (p.usage.completion_tokens - before.usage.completion_tokens) / dt
    lifetime = wall - p.started
    return p.usage.completion_tokens / lifetime if lifetime > 0 else 0.0


def to_ansi(renderable: Any, width: int, color: bool) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
            highlight=False).print(renderable)
    return buf.getvalue()


@command("top [-d SECONDS] [-n FRAMES]", flags=("-d", "-n"))
async def top(sh: Shell, args: list[str]) -> None:
    """Live view of the processes and the model, until you press a key.

    Per process: state, tokens/s, tokens, syscalls, model time. For the model: batch size, running and
    queued sequences, aggregate tokens/s, busy share, KV-cache use, and the prefix cache (prompt prefixes
    shared between processes: blocks, tokens, hit rate); with several models loaded, a row per
    model (policy, running/waiting, batch, tokens/s). Refreshes every second (-d
    SECONDS). -n FRAMES prints that many frames and returns (top -n 1: one snapshot, for scripts).
    """
    opts, rest = take_options("top", args, {"-d": True, "-n": True})
    if rest:
        raise usage_error("top", f"unexpected {rest[0]!r}")
    delay = parse_number("top", "-d", opts["-d"], float) if "-d" in opts else 1.0
    if delay <= 0:
        raise usage_error("top", "-d must be above 0")
    if "-n" in opts:
        frames = parse_number("top", "-n", opts["-n"])
        before = None
        for i in range(frames):
            now = await snapshot(sh)
            sh.print(render(now, before))
            before = now
            if i + 1 < frames:
                await anyio.sleep(delay)
        return
    await live(sh, delay)


async def live(sh: Shell, delay: float) -> None:
    frame = ""
    kb = KeyBindings()
    kb.add("<any>")(lambda e: e.app.exit(result=None))
    kb.add("c-c")(lambda e: e.app.exit(result=None))
    app: Application[None] = Application(
        layout=Layout(Window(FormattedTextControl(lambda: ANSI(frame)))),
        key_bindings=kb, input=sh.input, output=sh.output, erase_when_done=False,
    )

    async def refresh() -> None:
        nonlocal frame
        before: Snapshot | None = None
        while True:
            now = await snapshot(sh)
            size = app.output.get_size()
            text = to_ansi(render(now, before, max_rows=max(size.rows - 8, 3)), size.columns, sh.color)
            hint = "\x1b[2m(any key quits)\x1b[0m" if sh.color else "(any key quits)"
            frame = text.rstrip("\n") + "\n" + hint
            before = now
            app.invalidate()
            await anyio.sleep(delay)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refresh)
        await app.run_async(handle_sigint=False)
        tg.cancel_scope.cancel()
