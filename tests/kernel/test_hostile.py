"""The hostile-app suite: many hostile apps in one kernel run, next to a bystander that must not notice.

Each hostile app tries one thing issue 13 found (or one of its cousins) and returns what happened to it,
so a regression names itself. The bystander generates, uses its memory, spawns and waits for a child,
and must finish with the right result; the kernel must still serve a process spawned afterwards.
Grow this suite with every new surface.
"""

from __future__ import annotations

import anyio

from llmasos import App
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import SyscallError
from llmasos.tools import REGISTRY, tool

from ..conftest import make_kernel


async def _try(coro) -> str:
    """What happened: "ok" or the error's class name (a hostile app keeps going either way)."""
    try:
        await coro
    except SyscallError as exc:
        return type(exc).__name__
    return "ok"


bystander = App("bystander", memory=[], can_spawn=True)
child = App("child")


@child.main
async def _child(sys, n: int) -> int:
    return n * 2


@bystander.main
async def _bystander(sys) -> list:
    out = []
    for i in range(5):
        out.append((await sys.generate(f"round {i}", max_tokens=8)).text)
        await sys.memory.set(f"k{i}", i)
        await sys.sleep(0.01)
    pid = await sys.spawn(child, 21)
    status = await sys.wait(pid)
    return [out, [await sys.memory.get(f"k{i}") for i in range(5)], status.value]


def _hostile_apps(victim_pid: list[int]) -> dict[str, App]:
    apps: dict[str, App] = {}

    def hostile(name: str, **manifest):
        app = App(name, **manifest)
        apps[name] = app
        return app.main

    @hostile("exits")
    async def _exits(sys):
        raise SystemExit(3)  # sys.exit(3) in app code: its exit status, nothing more

    @hostile("interrupts")
    async def _interrupts(sys):
        raise KeyboardInterrupt  # ends only this process

    @hostile("poisons", tools=[])
    async def _poisons(sys):
        tries = [sys.generate("x", temperature=float("nan")), sys.generate("x", stop=[None]),
                 sys.generate("x", stop=[1]), sys.generate("x", max_tokens=0),
                 sys.generate("x", seed=2**70), sys.generate("x", temperature=-1)]
        return [await _try(t) for t in tries]

    @hostile("tiny_temperature")
    async def _tiny(sys):
        return (await sys.generate("x", temperature=1e-40, max_tokens=4)).finish_reason

    @hostile("killer")
    async def _killer(sys):
        return [await _try(sys.kill(victim_pid[0])), await _try(sys.wait(victim_pid[0]))]

    @hostile("snooper")
    async def _snooper(sys):
        rows = await sys.ps()
        other_args = [r.args for r in rows if r.pid == victim_pid[0]]
        return [other_args, await _try(sys.memory.get("k0", namespace=f"pid:{victim_pid[0]}")),
                await _try(sys.memory.set("x", 1, namespace=""))]

    @hostile("overspender", token_budget=20)
    async def _overspender(sys):
        c1 = await sys.generate("one two", max_tokens=900)
        return [c1.completion_tokens + c1.prompt_tokens <= 20, await _try(sys.generate("more", max_tokens=900))]

    @hostile("hoarder", tools=["hostile_exit_tool"], can_spawn=True)
    async def _hoarder(sys):
        huge = "x" * (21 * 1024 * 1024)
        return [await _try(sys.memory.set("big", huge)), await _try(sys.memory.search("w " * 100_000)),
                await _try(sys.memory.search("q", k=10**30)), await _try(sys.memory.keys(None)),
                await _try(sys.spawn(child, 1, priority=10**30)), await _try(sys.memory.set("o", object())),
                await _try(sys.syscall(c.CallTool("hostile_exit_tool", [1]))),
                await _try(sys.call_tool("hostile_exit_tool"))]

    return apps


async def test_hostile_apps_next_to_a_bystander(tmp_path):
    @tool(name="hostile_exit_tool", register=False)
    def exit_tool() -> str:
        """A tool that calls sys.exit (as argparse does on bad input)."""
        raise SystemExit(2)

    REGISTRY.register(exit_tool)
    engine = FakeEngine(step_delay=0.002)
    engine.responder = lambda seq: "fine " * 30
    victim: list[int] = []
    try:
        async with make_kernel(tmp_path, engine=engine) as k:
            victim.append(await k.spawn(bystander))
            hostile = _hostile_apps(victim)
            pids = {name: await k.spawn(app) for name, app in hostile.items()}
            with anyio.fail_after(30):
                results = {name: await k.wait(pid) for name, pid in pids.items()}
                calm = await k.wait(victim[0])
                after = await k.run("echo", "still serving")
    finally:
        REGISTRY.unregister("hostile_exit_tool")

    # The bystander noticed nothing.
    assert calm.state == "exited", calm.error
    texts, values, doubled = calm.value
    assert all(t.startswith("fine") for t in texts) and values == [0, 1, 2, 3, 4] and doubled == 42
    assert after.value == "still serving"

    # Each hostile app ended only itself, the way the issue asks.
    assert (results["exits"].state, results["exits"].value) == ("exited", 3)
    assert results["interrupts"].state == "crashed" and "KeyboardInterrupt" in results["interrupts"].error
    assert results["poisons"].value == ["InvalidArguments"] * 6
    assert results["tiny_temperature"].value in ("length", "stop")  # greedy, not a poisoned step
    assert results["killer"].value == ["PermissionDenied", "PermissionDenied"]
    args, private, empty = results["snooper"].value
    assert args == [()] and private == "PermissionDenied" and empty == "PermissionDenied"
    within, second = results["overspender"].value
    assert within and second == "QuotaExceeded"
    assert results["hoarder"].value == ["InvalidArguments"] * 6 + ["ToolArgumentsInvalid", "ToolFailed"]


async def test_arguments_nested_too_deeply_are_the_callers_fault(tmp_path):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    app = App("nester")

    @app.main
    async def main(sys) -> str:
        try:
            await sys.memory.set("k", deep)
        except SyscallError as exc:
            return type(exc).__name__
        return "stored"

    async with make_kernel(tmp_path) as k:
        assert (await k.run(app)).value == "InvalidArguments"
        assert (await k.run("echo", "still up")).value == "still up"


async def test_the_builtin_apps_given_hostile_input_end_only_themselves_with_clear_errors(tmp_path):
    """summarize, debate, notes, qa and cron pushed past the kernel's limits, next to the bystander."""
    engine = FakeEngine(step_delay=0.002)
    engine.responder = lambda seq: "fine " * 30
    long_text = "\n\n".join(f"para{i} " + "word " * 50 for i in range(5))
    many_words = " ".join(f"w{i}" for i in range(100))
    async with make_kernel(tmp_path, engine=engine) as k:
        calm_pid = await k.spawn(bystander)
        pids = {
            "summarize": await k.spawn("summarize", long_text, chunk_chars=300, caps={"max_children": 2}),
            "debate": await k.spawn("debate", "Tea", debaters=3, caps={"max_children": 1}),
            "notes": await k.spawn("notes", "search", many_words),
            "qa": await k.spawn("qa", "ask", 'kettle" OR NEAR( -- ;DROP TABLE notes'),
            "cron": await k.spawn("cron", "echo", "x", every=0.01, ticks=3, caps={"can_spawn": False}),
        }
        with anyio.fail_after(30):
            results = {name: await k.wait(pid) for name, pid in pids.items()}
            calm = await k.wait(calm_pid)
        with_huge_text = await _try(k.spawn("summarize", "x" * (2 * 1024 * 1024)))
        left = [p.app for p in k.ps()]
        after = await k.run("echo", "still serving")
    assert calm.state == "exited" and calm.value[2] == 42
    assert after.value == "still serving" and left == []  # no debater or chunk child was left behind

    def last_line(name: str) -> str:
        assert results[name].state == "crashed", (name, results[name])
        return results[name].error.strip().splitlines()[-1]

    assert "TooMuchInput: summarize: the text makes 5 chunks of 300 characters, and this process may run " \
           "2 children at once" in last_line("summarize")
    assert "PermissionDenied: process" in last_line("debate") and "max_children=1" in last_line("debate")
    assert "KernelConfig.max_search_terms" in last_line("notes")
    assert results["qa"].state == "exited" and results["qa"].value == {"answer": None, "sources": []}
    assert "PermissionDenied" in last_line("cron") and "can_spawn" in last_line("cron")
    assert with_huge_text == "InvalidArguments"  # over KernelConfig.max_args_size, refused at spawn
