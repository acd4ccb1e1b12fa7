"""Capabilities: granted at spawn (never more than the parent), checked at the chokepoint."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmasos import App
from llmasos.apps.app import App as _App
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.caps import ROOT, Caps, grant
from llmasos.syscalls.calls import MemGet
from llmasos.syscalls.errors import InvalidArguments, PermissionDenied, QuotaExceeded
from tests.conftest import make_kernel

# -- grant: a matrix of (parent holds, child asks) -> granted or refused --------------------------


@pytest.mark.parametrize(("parent", "asked", "expect"), [
    (ROOT, {}, Caps(tools=frozenset(), memory=frozenset(), can_spawn=False)),
    (ROOT, {"tools": ["calculator"]}, Caps(tools=frozenset({"calculator"}), memory=frozenset(), can_spawn=False)),
    (ROOT, {"tools": ["*"]}, Caps(tools=None, memory=frozenset(), can_spawn=False)),
    (Caps(tools=frozenset({"a", "b"})), {"tools": ["*"]}, Caps(tools=frozenset({"a", "b"}), memory=frozenset(),
                                                               can_spawn=False)),
    (Caps(tools=frozenset({"a"})), {"tools": ["a", "b"]}, PermissionDenied),
    (Caps(memory=frozenset({"shared"})), {"memory": ["shared"]},
     Caps(tools=frozenset(), memory=frozenset({"shared"}), can_spawn=False)),
    (Caps(memory=frozenset({"shared"})), {"memory": ["secret"]}, PermissionDenied),
    (Caps(can_spawn=False), {"can_spawn": True}, PermissionDenied),
    (Caps(max_children=2), {"can_spawn": True, "max_children": 3}, PermissionDenied),
    (Caps(max_children=2), {"can_spawn": True}, Caps(tools=frozenset(), memory=frozenset(), max_children=2)),
    (Caps(token_budget=100), {"token_budget": 50}, Caps(tools=frozenset(), memory=frozenset(), can_spawn=False,
                                                        token_budget=50)),
    (Caps(token_budget=100), {}, Caps(tools=frozenset(), memory=frozenset(), can_spawn=False, token_budget=100)),
    (Caps(token_budget=100), {"token_budget": 101}, PermissionDenied),
    (Caps(syscall_budget=10), {"syscall_budget": 11}, PermissionDenied),
    (ROOT, {"flying": True}, InvalidArguments),
    (ROOT, {"token_budget": -1}, InvalidArguments),
])
def test_grant_matrix(parent: Caps, asked: dict, expect: object) -> None:
    app = _App("child")
    if isinstance(expect, type):
        with pytest.raises(expect):
            grant(parent, app, asked)
    else:
        assert grant(parent, app, asked) == replace(expect, signal=False, see_args=False)  # asked for neither


def test_manifest_asks_and_spawner_overrides() -> None:
    app = _App("m", tools=["calculator", "clock"], can_spawn=True, max_children=4)
    caps = grant(ROOT, app)
    assert caps.tools == {"calculator", "clock"} and caps.can_spawn and caps.max_children == 4
    assert grant(ROOT, app, {"tools": ["clock"]}).tools == {"clock"}
    with pytest.raises(PermissionDenied, match="caps="):
        grant(Caps(tools=frozenset({"clock"})), app)


# -- check: through the kernel ---------------------------------------------------------------------

child = App("child")


@child.main
async def _child(sys, seconds: float = 0) -> str:
    await sys.sleep(seconds)
    return "child ran"


def _parent(**manifest: object) -> App:
    app = App("parent", **manifest)

    @app.main
    async def main(sys, action: str, arg: object = None) -> object:
        try:
            if action == "spawn":
                pid = await sys.spawn(child, caps=arg)
                return (await sys.wait(pid)).value
            if action == "spawn_many":
                return [await sys.spawn(child, 5) for _ in range(arg)]
            if action == "syscalls":
                for _ in range(arg):
                    await sys.getpid()
                return "ok"
            if action == "tokens":
                for _ in range(arg):
                    await sys.generate("one two three four five", max_tokens=5)
                return "ok"
            if action == "memory":
                ns = f"pid:{sys.pid}" if arg == "own" else arg
                return await sys._trap(MemGet("k", namespace=ns))
        except (PermissionDenied, QuotaExceeded) as exc:
            return exc
        return None

    return app


async def _run(tmp_path, app: App, *args: object, caps: dict | None = None) -> tuple[object, object]:
    async with make_kernel(tmp_path, FakeEngine()) as k:
        pid = await k.spawn(app, *args, caps=caps)
        info = k.info(pid)
        status = await k.wait(pid)
        assert status.ok, status.error  # a violation never crashes the process or the kernel
        return status.value, info


async def test_spawn_needs_can_spawn(tmp_path) -> None:
    value, _ = await _run(tmp_path, _parent(), "spawn")
    assert isinstance(value, PermissionDenied) and "can_spawn" in str(value)
    value, _ = await _run(tmp_path, _parent(can_spawn=True), "spawn")
    assert value == "child ran"


async def test_child_asking_more_than_parent_is_refused(tmp_path) -> None:
    value, _ = await _run(tmp_path, _parent(can_spawn=True, tools=["clock"]), "spawn", {"tools": ["files"]})
    assert isinstance(value, PermissionDenied) and "files" in str(value)


async def test_max_children(tmp_path) -> None:
    value, _ = await _run(tmp_path, _parent(can_spawn=True, max_children=2), "spawn_many", 3)
    assert isinstance(value, PermissionDenied) and "max_children=2" in str(value)


async def test_syscall_budget(tmp_path) -> None:
    value, info = await _run(tmp_path, _parent(syscall_budget=5), "syscalls", 10)
    assert isinstance(value, QuotaExceeded)
    assert info.caps["syscall_budget"] == 5


async def test_token_budget(tmp_path) -> None:
    value, _ = await _run(tmp_path, _parent(token_budget=15), "tokens", 5)
    assert isinstance(value, QuotaExceeded) and "token" in str(value)


async def test_memory_namespaces(tmp_path) -> None:
    value, _ = await _run(tmp_path, _parent(), "memory", "team")
    assert isinstance(value, PermissionDenied) and "team" in str(value)
    for ns in (None, "own"):
        value, _ = await _run(tmp_path, _parent(), "memory", ns)
        assert not isinstance(value, PermissionDenied)


async def test_violation_is_traced_and_ps_shows_caps(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(_parent(tools=["clock"]), "spawn")
        proc = k.get(pid)
        await proc.done.wait()
        info = k.info(pid)
        await k.wait(pid)
    assert info.caps["tools"] == ["clock"] and info.caps["can_spawn"] is False
    assert info.usage.syscalls == 1
    (event,) = [e for e in proc.trace if e.error is not None]
    assert isinstance(event.error, PermissionDenied) and event.call.name == "spawn"


async def test_violations_leave_other_processes_alone(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        bad = await k.spawn(_parent(), "spawn")
        good = await k.spawn("echo", "fine")
        assert (await k.wait(good)).value == "fine"
        assert isinstance((await k.wait(bad)).value, PermissionDenied)
