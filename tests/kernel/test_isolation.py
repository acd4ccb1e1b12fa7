"""Process isolation in the syscall layer (issue 13, findings 3 and 4, and the caps and names of 12).

kill and wait reach only the caller's own tree unless it holds ``signal``; ps shows other processes'
arguments only with ``see_args``, and an app's secret arguments to no one; memory namespaces are owned
(``pid:<pid>``) or granted, never taken by naming an app.
"""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from llmasos import App
from llmasos.client.local import LocalClient
from llmasos.kernel import caps as capmod
from llmasos.kernel.caps import ROOT, grant
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NoSuchProcess, PermissionDenied
from tests.conftest import make_kernel

sleeper = App("sleeper")


@sleeper.main
async def _sleeper(sys, seconds: float = 0.3, password: str = "") -> str:
    await sys.sleep(seconds)
    return "slept"


def _stranger(**manifest: object) -> App:
    """An app that tries one thing on another process and returns the outcome (or the refusal)."""
    app = App("stranger", **manifest)

    @app.main
    async def main(sys, action: str, target: int = 0) -> object:
        try:
            if action == "kill":
                return await sys.kill(target)
            if action == "wait":
                return (await sys.wait(target)).value
            if action == "ps":
                return {p.pid: p.args for p in await sys.ps()}
            if action == "read":
                return await sys.memory.get("secret", namespace=f"pid:{target}")
            if action == "shared":
                return await sys.memory.get("k", namespace="")
            if action == "by_name":
                return await sys.memory.get("k", namespace="team")
        except PermissionDenied as exc:
            return exc
        return None

    return app


async def _wait_for(k, pid: int, state: str) -> None:
    with anyio.fail_after(5):
        while k.info(pid).state != state:
            await anyio.sleep(0.005)


# -- finding 3: kill and wait -----------------------------------------------------------------------


async def test_a_process_without_capabilities_cannot_kill_root_spawned_processes(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        victim = await k.spawn(sleeper, 0.3)
        status = await k.run(_stranger(), "kill", victim)
        assert isinstance(status.value, PermissionDenied), status
        assert "signal" in str(status.value) and "descendants" in str(status.value)
        assert k.info(victim).state != "killed"
        assert (await k.wait(victim)).value == "slept"  # the bystander finishes with its result


async def test_a_process_cannot_reap_another_process_child(tmp_path) -> None:
    parent = App("parent", can_spawn=True)

    @parent.main
    async def _parent(sys) -> object:
        child = await sys.spawn(sleeper, 0.3)
        await sys.write(f"{child}\n")
        return (await sys.wait(child)).value  # its real parent gets the child's status

    async with make_kernel(tmp_path) as k:
        ppid = await k.spawn(parent)
        with anyio.fail_after(5):
            while not k.processes[ppid].children:
                await anyio.sleep(0.005)
        (child,) = k.processes[ppid].children
        status = await k.run(_stranger(), "wait", child)
        assert isinstance(status.value, PermissionDenied), status
        assert (await k.wait(ppid)).value == "slept"


async def test_a_process_may_kill_and_wait_its_own_descendants(tmp_path) -> None:
    middle = App("middle", can_spawn=True)

    @middle.main
    async def _middle(sys, boss: int) -> str:
        grandchild = await sys.spawn(sleeper, 30)
        await sys.send(boss, grandchild)
        return (await sys.wait(grandchild)).state

    boss = App("boss", can_spawn=True)

    @boss.main
    async def _boss(sys) -> object:
        child = await sys.spawn(middle, sys.pid, caps={"can_spawn": True})
        grandchild = (await sys.recv()).body
        killed = await sys.kill(grandchild)  # a grandchild is a descendant too
        return killed, (await sys.wait(child)).value

    async with make_kernel(tmp_path) as k:
        status = await k.run(boss)
        assert status.value == (True, "killed"), status


async def test_the_signal_capability_reaches_any_process(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        victim = await k.spawn(sleeper, 30)
        status = await k.run(_stranger(signal=True), "kill", victim)
        assert status.value is True and k.info(victim).state == "killed"


async def test_kill_and_wait_of_an_unknown_pid_are_no_such_process(tmp_path) -> None:
    app = App("lost-pids")

    @app.main
    async def main(sys) -> list[str]:
        out = []
        for call in (sys.kill(99_999), sys.wait(99_999), sys.kill(0)):
            try:
                await call
            except NoSuchProcess as exc:
                out.append(type(exc).__name__)
        return out

    async with make_kernel(tmp_path) as k:
        assert (await k.run(app)).value == ["NoSuchProcess"] * 3


# -- the signal and see_args capabilities: granted like the others ------------------------------------


@pytest.mark.parametrize("asked", [{"signal": "false"}, {"signal": 1}, {"see_args": "yes"}, {"signal": None},
                                   {"can_spawn": "false"}, {"can_spawn": 0}])
def test_flag_capabilities_take_booleans_only(asked: dict) -> None:
    app = App("child")
    with pytest.raises(InvalidArguments, match="True or False"):
        grant(ROOT, app, asked)


def test_a_child_never_holds_signal_or_see_args_its_parent_lacks() -> None:
    parent = grant(ROOT, App("parent"))
    assert not parent.signal and not parent.see_args
    for name in ("signal", "see_args"):
        with pytest.raises(PermissionDenied, match=name):
            grant(parent, App("child"), {name: True})
        with pytest.raises(PermissionDenied, match=name):
            grant(parent, App("child", **{name: True}))
    assert grant(ROOT, App("x", signal=True)).signal and ROOT.signal and ROOT.see_args
    assert ROOT.as_dict()["signal"] is True and grant(ROOT, App("x")).as_dict()["see_args"] is False


async def test_spawning_with_a_string_flag_is_refused_in_the_process(tmp_path) -> None:
    app = App("spawner", can_spawn=True)

    @app.main
    async def main(sys) -> str:
        try:
            await sys.spawn(sleeper, 0, caps={"signal": "false"})
        except InvalidArguments as exc:
            return str(exc)
        return "spawned"

    async with make_kernel(tmp_path) as k:
        assert "signal is True or False" in (await k.run(app)).value


# -- finding 3: ps and secret arguments -------------------------------------------------------------


async def test_ps_hides_other_processes_arguments_without_see_args(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        victim = await k.spawn(sleeper, 0.3, "hunter2")
        me = await k.spawn(_stranger(), "ps")
        seen = (await k.wait(me)).value
        assert seen[victim] == ("***", "***")  # the count shows, the values do not
        assert seen[me] == ("ps",)  # a process always sees its own
        seen = (await k.run(_stranger(see_args=True), "ps")).value
        assert seen[victim] == (0.3, "hunter2")
        await k.wait(victim)


async def test_secret_arguments_are_masked_for_everyone(tmp_path) -> None:
    app = App("login", secret=("token", "extra"))

    @app.main
    async def main(sys, user: str, token: str = "", *extra: str, note: str = "") -> object:
        await sys.sleep(0.2)
        return token, [p.args for p in await sys.ps() if p.pid == sys.pid]  # its own ps masks them too

    async with make_kernel(tmp_path) as k:
        by_position = await k.spawn(app, "alice", "s3cret", "more", "again")
        by_keyword = await k.spawn(app, "bob", token="t0ken")
        assert k.info(by_position).args == ("alice", "***", "***", "***")  # the root's ps too
        assert k.info(by_keyword).args == ("bob", "***")
        rows = {p.pid: p for p in await LocalClient(k).ps()}  # what `llmasos ps` shows
        assert rows[by_position].args == ("alice", "***", "***", "***")
        assert (await k.wait(by_position)).value == ("s3cret", [("alice", "***", "***", "***")])
        assert (await k.wait(by_keyword)).value == ("t0ken", [("bob", "***")])  # main got the values


def test_secret_must_name_a_parameter_of_main() -> None:
    app = App("typo", secret=["tokn"])
    with pytest.raises(TypeError, match="tokn"):
        @app.main
        async def main(sys, token: str) -> None: ...

    first = App("first", secret="sys")
    with pytest.raises(TypeError, match="sys"):
        @first.main
        async def main2(sys, token: str) -> None: ...


# -- finding 4: namespaces are owned ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["pid:3", "a:b", "team/bot", "..\\x", "*", "", "two words", "tab\tname",
                                  "x" * 101, None, 3])
def test_app_names_that_look_like_namespaces_or_paths_are_refused(name: object) -> None:
    with pytest.raises(ValueError, match="app name"):
        App(name)  # type: ignore[arg-type]


def test_a_manifest_cannot_ask_for_a_private_namespace() -> None:
    with pytest.raises(ValueError, match="private namespace"):
        App("thief", memory=["pid:1"])
    with pytest.raises(ValueError, match="namespace is a string"):
        App("odd", memory=[None])  # type: ignore[list-item]


async def test_a_process_cannot_take_another_private_namespace(tmp_path) -> None:
    owner = App("owner")

    @owner.main
    async def _owner(sys) -> int:
        await sys.memory.set("secret", "hunter2")  # its own namespace, pid:<pid>
        return sys.pid

    async with make_kernel(tmp_path) as k:
        status = await k.run(owner)
        victim = status.value
        with pytest.raises(ValueError):
            App(f"pid:{victim}")  # naming an app like the namespace is refused
        value = (await k.run(_stranger(), "read", victim)).value
        assert isinstance(value, PermissionDenied) and f"pid:{victim}" in str(value)
        # the root user may share it explicitly
        assert (await k.run(_stranger(), "read", victim, caps={"memory": [f"pid:{victim}"]})).value == "hunter2"


async def test_an_app_name_does_not_grant_a_namespace(tmp_path) -> None:
    team = App("team")

    @team.main
    async def _team(sys) -> None:
        await sys.memory.set("k", "v", namespace="team")

    async with make_kernel(tmp_path) as k:
        assert (await k.run(team, caps={"memory": ["team"]})).ok
        status = await k.run(team)  # the same app, without the grant
        assert status.state == "crashed" and "may not use memory namespace 'team'" in status.error
        value = (await k.run(_stranger(), "by_name")).value
        assert isinstance(value, PermissionDenied)
        assert (await k.run(_stranger(memory=["team"]), "by_name")).value == "v"


async def test_the_empty_namespace_is_held_only_if_granted(tmp_path) -> None:
    async with make_kernel(tmp_path) as k:
        value = (await k.run(_stranger(), "shared")).value
        assert isinstance(value, PermissionDenied) and "''" in str(value)
        assert (await k.run(_stranger(memory=[""]), "shared")).value is None


def test_every_namespaced_syscall_has_a_rule() -> None:
    namespaced = [cls for cls in vars(c).values()
                  if isinstance(cls, type) and issubclass(cls, c.Syscall) and dataclasses.is_dataclass(cls)
                  and "namespace" in {f.name for f in dataclasses.fields(cls)}]
    assert len(namespaced) >= 6
    assert [cls for cls in namespaced if cls not in capmod._RULES] == []
