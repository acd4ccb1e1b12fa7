"""The built-in apps and the app registry."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from llmasos import App
from llmasos.apps.registry import builtin_names, find_app, list_apps
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import InvalidArguments, NoSuchApp
from tests.conftest import make_kernel


def test_builtins_are_listed():
    assert {"echo", "hello", "chat"} <= set(builtin_names())
    names = [a.name for a in list_apps()]
    assert {"echo", "hello", "chat"} <= set(names)
    assert find_app("echo").source == "builtin"


def test_module_spec_and_bad_specs():
    assert find_app("llmasos.apps.echo:app").name == "echo"
    with pytest.raises(NoSuchApp, match="not an llmasos App"):
        find_app("llmasos.apps.echo:main")
    with pytest.raises(NoSuchApp, match="cannot import"):
        find_app("no_such_module_xyz:app")


def test_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise ImportError('half written')\n")
    with pytest.raises(NoSuchApp, match="failed to import: ImportError: half written"):
        find_app(str(path))


def test_app_manifest_validation():
    with pytest.raises(ValueError, match="one word"):
        App("two words")
    app = App("sync")
    with pytest.raises(TypeError, match="async def"):
        app.main(lambda sys: None)


def test_pydantic_constraints_on_mains_parameters_are_checked_at_bind():
    app = App("bounded")

    @app.main
    async def main(sys, n: Annotated[int, Field(ge=1, le=10)] = 1, *, every: Annotated[float, Field(gt=0)] = 1.0):
        return n

    assert app.bind(("3",), {"every": "0.5"}) == ((3,), {"every": 0.5})
    with pytest.raises(InvalidArguments, match=r"bounded: bad value 0 for n: Input should be greater than or "
                                               r"equal to 1; usage: bounded \[N\] \[--every=EVERY\]"):
        app.bind((0,), {})
    with pytest.raises(InvalidArguments, match="bad value -1 for every: Input should be greater than 0"):
        app.bind((), {"every": -1})


async def test_echo(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn("echo", "hello", "world")
        await k.get(pid).done.wait()
        assert k.output(pid) == [("stdout", "hello world\n")]
        assert (await k.wait(pid)).value == "hello world"


async def test_hello_streams_the_reply_to_stdout(tmp_path):
    engine = FakeEngine()
    engine.enqueue("Hi Ada, nice to meet you!")
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn("hello", "Ada")
        proc = k.get(pid)
        await proc.done.wait()
        out = "".join(text for _, text in k.output(pid))
        status = await k.wait(pid)
    assert status.value == "Hi Ada, nice to meet you!"
    assert out == "Hi Ada, nice to meet you!\n"
    assert "Ada" in engine.prompts[0]


async def test_chat_keeps_the_conversation(tmp_path):
    engine = FakeEngine()
    engine.enqueue("Hello!", "You said hi before.")
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn("chat")
        proc = k.get(pid)
        k.write_stdin(pid, "hi\n\nwhat did I say?\n")
        k.close_stdin(pid)
        await proc.done.wait()
        out = "".join(text for _, text in k.output(pid))
        status = await k.wait(pid)
    assert status.value == 2
    assert out == "Hello!\nYou said hi before.\n"
    # The second prompt carries the first turn.
    assert "user: hi" in engine.prompts[1] and "assistant: Hello!" in engine.prompts[1]


def test_apps_from_installed_packages_entry_points(monkeypatch, tmp_path):
    from importlib.metadata import EntryPoint

    from llmasos.apps import registry, store
    from llmasos.syscalls.errors import PermissionDenied

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    eps = [EntryPoint("echo2", "llmasos.apps.echo:app", registry.ENTRY_POINT_GROUP),
           EntryPoint("echo", "llmasos.apps.echo:app", registry.ENTRY_POINT_GROUP),
           EntryPoint("broken", "no_such_pkg_xyz:app", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in eps if e.group == group])
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "_seen", {})
    with pytest.raises(NoSuchApp, match="entry point's name and App\\(...\\)'s name must be the same"):
        registry.find_app("echo2")
    with pytest.raises(NoSuchApp, match="no readable manifest.*not installed"):
        registry.find_app("broken")
    with pytest.raises(NoSuchApp, match="did you mean 'echo2'"):
        registry.find_app("ekho2")
    eps[0] = EntryPoint("echo2", "tests.apps.echo2:app", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "_seen", {})
    import llmasos.apps.manifest as manifest

    m = manifest.read_source("app = App('echo2', version='1.0')\n@app.main\nasync def main(sys, *words): ...",
                             "app", entry="tests.apps.echo2:app")
    monkeypatch.setattr(registry, "read_entry", lambda value: m)
    with pytest.raises(PermissionDenied, match="not enabled"):
        registry.find_app("echo2")
    store.enable(m, "echo2-pkg")
    app = registry.find_app("echo2")
    assert app.sandbox and app.version == "1.0" and app.usage() == "echo2 [WORDS...]"
    assert "echo" in [a.name for a in registry.list_apps()]