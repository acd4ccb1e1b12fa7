"""cron: a daemon that wakes on a timer and runs an app each time; it survives kernel restarts.

``llmasos spawn cron notes add "stand up" --every=3600 --ticks=8`` (against ``llmasos serve``): tick 1
runs at once, then one every ``every`` seconds, counted from the end of the previous tick's run (a tick
waits for its child, so runs never overlap); ``--ticks=0`` (the default) ticks until killed. Options
other than ``every`` and ``ticks`` go to the app (``cron hello --name=Ada``). Each tick writes one line
``[tick N] pid P exited: VALUE`` to cron's stdout; ``logs P`` shows the child's own output.

Syscalls: ``spawn`` (one child per tick), ``wait`` (reap it), ``sleep`` (the interval), ``write``.

Rule: after the kernel is killed and restarted, cron is restored and replays its journal: the ticks that
ran return their recorded pids and exit statuses instead of running again, a spawn in flight at the
crash finds the child it started, and the sleeps already slept are not slept again (the one the crash
interrupted is slept again whole); then it goes on live. A tick's app therefore runs exactly once per tick. Its manifest asks for spawning and for the
tools and memory namespaces its spawner holds (``"*"``: cron acts for whoever started it, and an app
it runs can hold no more than cron does); a spawner narrows them with ``caps=``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from llmasos.apps.app import App
from llmasos.syscalls.sys import Sys

app = App("cron", "Run an app every N seconds, N times or until killed; survives kernel restarts",
          can_spawn=True, tools=["*"], memory=["*"])

Interval = Annotated[float, Field(ge=0.01, le=31 * 86400)]
Ticks = Annotated[int, Field(ge=0, le=1_000_000)]
SHOWN = 120  # characters of a tick's exit value or error that its line shows


@app.main
async def main(sys: Sys, target: str, *args: str, every: Interval = 60.0, ticks: Ticks = 0,
               **options: Any) -> dict[str, Any]:
    done = failed = 0
    last: dict[str, Any] = {}
    while ticks == 0 or done < ticks:
        pid = await sys.spawn(target, *args, **options)
        status = await sys.wait(pid)
        done += 1
        if status.state == "exited":
            shown = repr(status.value)
        else:
            failed += 1
            shown = ((status.error or "").strip().splitlines() or [""])[-1]
        await sys.write(f"[tick {done}] pid {pid} {status.state}: {shown[:SHOWN]}\n")
        last = {"pid": pid, "state": status.state, "value": status.value}
        if ticks == 0 or done < ticks:
            await sys.sleep(every)
    return {"ticks": done, "failed": failed, "last": last}
