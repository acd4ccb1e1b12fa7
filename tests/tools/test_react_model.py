"""react's model: the tools adapter when the kernel's models syscall says it can serve it (loaded, or
registered in the library and loaded on first use), else the default model (saying why); an explicit
model= wins; the log and ps say which model it runs on."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from llmasos.apps.react import TOOLS_MODEL
from llmasos.engine import library
from llmasos.engine.fake import FakeEngine
from llmasos.engine.library import Card
from llmasos.kernel import Kernel, KernelConfig
from llmasos.kernel import models as kmodels
from llmasos.syscalls.errors import InvalidArguments

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def adapter(tmp_path: Path, manifest: dict | None = None, config: bool = True) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    if config:
        (folder / "adapter_config.json").write_text("{}")
    if manifest is not None:
        (folder / "llmasos-adapter.json").write_text(json.dumps(manifest))
    library.register(Card(TOOLS_MODEL, str(folder), "registered"))
    return folder


async def react(tmp_path: Path, engines: dict[str, FakeEngine], **kw: object) -> tuple[object, str]:
    """Run react on a kernel whose model table holds engines (one, "default": a default boot)."""
    for e in engines.values():
        e.enqueue(CALL, "It is 42.")
    config = KernelConfig(engine=engines["default"], home=tmp_path) if list(engines) == ["default"] else \
        KernelConfig(models=dict(engines), home=tmp_path)
    async with Kernel(config) as k:
        pid = await k.spawn("react", "What is 6 times 7?", **kw)
        await k.get(pid).done.wait()
        log = "".join(text for stream, text in k.output(pid) if stream == "stderr")
        status = await k.wait(pid)
    return status, log


def loads_as(monkeypatch: pytest.MonkeyPatch, tuned: FakeEngine) -> list[str]:
    """The kernel's loads of TOOLS_MODEL on first use give tuned (no weights are read)."""
    loads: list[str] = []
    real = kmodels.open_engine

    async def open_engine(spec: object, **options: object) -> object:
        if spec != TOOLS_MODEL:
            return await real(spec, **options)
        loads.append(spec)
        return tuned

    monkeypatch.setattr(kmodels, "open_engine", open_engine)
    return loads


@pytest.mark.parametrize(("manifest", "config", "why"), [
    (None, True, "does not say its base model"),  # the load itself fails
    ({"steps": 2, "total_steps": 9}, True, "unfinished (2/9 steps)"),
    ({"steps": 9, "total_steps": 9, "interrupted": True}, True, "unfinished"),
    ({"steps": 9, "total_steps": 9}, False, "no adapter_config.json"),
])
async def test_a_broken_adapter_falls_back_and_says_why(tmp_path, home, manifest, config, why) -> None:
    adapter(tmp_path, manifest, config)
    base = FakeEngine()
    status, log = await react(tmp_path, {"default": base})
    assert status.value == "It is 42."
    assert "[model: default" in log and why in log
    assert base.prompts


async def test_not_built_runs_on_the_default_model_with_few_shot_turns(tmp_path, home) -> None:
    base = FakeEngine()
    status, log = await react(tmp_path, {"base": base})
    assert status.value == "It is 42." and f"the kernel does not offer {TOOLS_MODEL}" in log
    assert "A box holds 12 eggs" in base.prompts[0]  # the calculator's few-shot turns


async def test_on_a_default_boot_the_built_adapter_is_loaded_on_first_use(tmp_path, home, monkeypatch) -> None:
    adapter(tmp_path, {"steps": 3, "total_steps": 3})
    base, tuned = FakeEngine(), FakeEngine(step_delay=0.01)
    loads = loads_as(monkeypatch, tuned)
    tuned.enqueue(CALL, "It is 42.")
    async with Kernel(KernelConfig(engine=base, home=tmp_path)) as k:
        pid = await k.spawn("react", "What is 6 times 7?")
        seen = set()
        with anyio.fail_after(5):
            while k.get(pid).alive:
                seen |= {p.waiting_on for p in k.ps(all=True) if p.pid == pid}
                await anyio.lowlevel.checkpoint()
        log = "".join(text for stream, text in k.output(pid) if stream == "stderr")
        assert (await k.wait(pid)).value == "It is 42."
        state = {m.name: m for m in await k.root.models()}[TOOLS_MODEL]
    assert f"[model: {TOOLS_MODEL} (the tool-calling adapter)]" in log and f"llm:{TOOLS_MODEL}" in seen
    assert loads == [TOOLS_MODEL] and not base.prompts and len(tuned.prompts) == 2
    assert "A box holds 12 eggs" not in tuned.prompts[0]
    assert state.state == "loaded" and state.lazy


async def test_with_lazy_loading_off_the_adapter_is_not_offered(tmp_path, home) -> None:
    adapter(tmp_path, {"steps": 3, "total_steps": 3})
    base = FakeEngine()
    base.enqueue(CALL, "It is 42.")
    async with Kernel(KernelConfig(engine=base, home=tmp_path, lazy_models=0)) as k:
        pid = await k.spawn("react", "What is 6 times 7?")
        await k.get(pid).done.wait()
        log = "".join(text for stream, text in k.output(pid) if stream == "stderr")
        status = await k.wait(pid)
    assert status.value == "It is 42." and "[model: default" in log and "does not offer" in log


async def test_the_built_adapter_is_used_without_few_shot_turns(tmp_path, home) -> None:
    adapter(tmp_path, {"steps": 3, "total_steps": 3})
    base, tuned = FakeEngine(), FakeEngine()
    status, log = await react(tmp_path, {"base": base, TOOLS_MODEL: tuned})
    assert status.value == "It is 42." and f"[model: {TOOLS_MODEL} (the tool-calling adapter)]" in log
    assert not base.prompts and len(tuned.prompts) == 2
    assert "A box holds 12 eggs" not in tuned.prompts[0]


async def test_an_explicit_model_wins(tmp_path, home) -> None:
    adapter(tmp_path, {"steps": 3, "total_steps": 3})
    base, tuned = FakeEngine(), FakeEngine()
    status, log = await react(tmp_path, {"base": base, TOOLS_MODEL: tuned}, model="base")
    assert status.value == "It is 42." and "[model: base (chosen by the caller)]" in log
    assert base.prompts and not tuned.prompts


async def test_an_explicit_model_that_is_not_loaded_is_an_error(tmp_path, home) -> None:
    status, _log = await react(tmp_path, {"base": FakeEngine()}, model="nope")
    assert not status.ok and "no model 'nope' is loaded" in (status.error or "")


async def test_a_model_that_is_not_a_name_is_refused(tmp_path, home) -> None:
    async with Kernel(KernelConfig(models={"base": FakeEngine()}, home=tmp_path)) as k:
        with pytest.raises(InvalidArguments, match="bad value 3 for model"):
            await k.spawn("react", "What is 6 times 7?", model=3)
    status, _log = await react(tmp_path, {"base": FakeEngine()}, model="")
    assert not status.ok and "no model '' is loaded" in (status.error or "")
