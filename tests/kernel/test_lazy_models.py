"""Models of the library loaded on first use: a registered adapter is served by name without a model-table
entry, loaded once for concurrent first requests; a broken one is a clear error, remembered, and the kernel
goes on; KernelConfig.lazy_models bounds how many are resident; the models syscall says each one's state."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import anyio
import pytest

from llmasos.engine import library
from llmasos.engine.fake import FakeEngine
from llmasos.engine.library import Card
from llmasos.kernel import Kernel, KernelConfig
from llmasos.kernel import models as kmodels
from llmasos.kernel.config import ConfigError
from llmasos.kernel.configfile import ConfigFileError, load_config
from llmasos.syscalls.errors import ModelUnavailable, NoSuchModel, PermissionDenied

QUESTION = [{"role": "user", "content": "What color is the sky?"}]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model library of the test's own."""
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def lora(base: Path, folder: Path, *, finished: bool = True) -> Path:
    """A LoRA adapter for the tiny model, made by peft without training (random B: it changes outputs),
    with the manifest `llmasos finetune` writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmasos.engine.adapters import quiet_peft

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    with quiet_peft():
        peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        peft.save_pretrained(folder)
    steps = 5 if finished else 2
    (folder / "llmasos-adapter.json").write_text(json.dumps({"base": str(base), "steps": steps, "total_steps": 5}))
    return folder


def counting(monkeypatch: pytest.MonkeyPatch, engines: dict[str, object] | None = None) -> list[str]:
    """Count the kernel's engine loads by name (an Engine object given to it is no load); engines: specs answered with these objects instead of
    loading anything."""
    loads: list[str] = []
    real = kmodels.open_engine

    async def open_engine(spec: object, **options: object) -> object:
        if isinstance(spec, str):
            loads.append(spec)
        if engines is not None and spec in engines:
            await anyio.sleep(0.05)  # a load takes time: concurrent first requests overlap it
            return engines[spec]
        return await real(spec, **options)

    monkeypatch.setattr(kmodels, "open_engine", open_engine)
    return loads


def register(name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    library.register(Card(name, str(folder), "registered"))


async def test_a_registered_adapter_loads_on_first_use_and_answers_as_base_plus_dir(
        tiny_model_dir: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = lora(tiny_model_dir, tmp_path / "tuned")
    library.register(Card("tuned", str(adapter), "registered"))
    async with Kernel(KernelConfig(engine=f"{tiny_model_dir}+{adapter}", home=tmp_path / "k1")) as k:
        async with k.session("test") as sys:
            expected = (await sys.generate(messages=QUESTION, max_tokens=6)).text
    loads = counting(monkeypatch)
    async with Kernel(KernelConfig(engine=str(tiny_model_dir), home=tmp_path / "k2")) as k:
        async with k.session("test") as sys:
            before = {m.name: m for m in await sys.models()}
            assert before["tuned"].state == "loadable" and before["tuned"].lazy
            base = (await sys.generate(messages=QUESTION, max_tokens=6)).text
            tuned = (await sys.generate(messages=QUESTION, max_tokens=6, model="tuned")).text
            again = (await sys.generate(messages=QUESTION, max_tokens=6, model="tuned")).text
            after = {m.name: m for m in await sys.models()}
        assert "tuned" in k.models and [m.name for m in k.models][-1] == "tuned"
    assert tuned == again == expected and tuned != base
    assert loads == [str(tiny_model_dir), "tuned"]  # the boot's model, then once by its library name
    assert after["tuned"].state == "loaded" and after["tuned"].lazy and after["tuned"].kind == "local"
    assert [m.state for m in after.values()][0] == "loaded" and next(iter(after.values())).default


async def test_concurrent_first_requests_wait_for_one_load(tmp_path: Path, home: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    register("extra", tmp_path / "extra")
    extra = FakeEngine(responder=lambda seq: "from extra")
    loads = counting(monkeypatch, {"extra": extra})
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        replies: list[str] = []

        async def one() -> None:
            async with k.session("test") as sys:
                replies.append((await sys.generate("hi", max_tokens=4, model="extra")).text)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
    assert loads == ["extra"] and replies == ["from extra"] * 6


async def test_a_broken_adapter_is_a_clear_error_remembered_and_the_kernel_goes_on(
        tiny_model_dir: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": "many"}')
    (folder / "llmasos-adapter.json").write_text(json.dumps({"base": str(tiny_model_dir), "steps": 1,
                                                             "total_steps": 1}))
    library.register(Card("bad", str(folder), "registered"))
    loads = counting(monkeypatch)
    async with Kernel(KernelConfig(engine=str(tiny_model_dir), home=tmp_path / "k")) as k:
        async with k.session("test") as sys:
            with pytest.raises(ModelUnavailable, match="'bad' of the model library could not be loaded") as first:
                await sys.generate("hi", max_tokens=2, model="bad")
            with pytest.raises(ModelUnavailable, match="cannot be served: loading it failed"):
                await sys.generate("hi", max_tokens=2, model="bad")  # remembered: not loaded again
            assert loads == [str(tiny_model_dir), "bad"]
            assert len(str(first.value)) < 1000
            state = {m.name: m for m in await sys.models()}["bad"]
            assert state.state == "broken" and "loading it failed" in state.reason
            assert (await sys.generate("hi", max_tokens=2)).completion_tokens == 2  # the default model serves
            later = os.stat(folder).st_mtime_ns + 10**9  # the entry is rebuilt: tried again
            os.utime(folder / "llmasos-adapter.json", ns=(later, later))
            with pytest.raises(ModelUnavailable):
                await sys.generate("hi", max_tokens=2, model="bad")
            assert loads == [str(tiny_model_dir), "bad", "bad"]
        assert k.models.names == [k.models.default]


@pytest.mark.parametrize(("manifest", "config", "why"), [
    ({"steps": 2, "total_steps": 9}, True, "its training is unfinished (2/9 steps)"),
    ({"steps": 9, "total_steps": 9, "interrupted": True}, True, "unfinished"),
    ({"steps": 9, "total_steps": 9}, False, "holds no adapter_config.json"),
    ("not json", True, "is unreadable"),
    ([1, 2], True, "does not hold a JSON object"),
])
async def test_an_unusable_library_entry_is_broken_without_a_load(tmp_path: Path, home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  manifest, config, why) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    if config:
        (folder / "adapter_config.json").write_text("{}")
    (folder / "llmasos-adapter.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    library.register(Card("half", str(folder), "registered"))
    loads = counting(monkeypatch)
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k, k.session("test") as sys:
        state = {m.name: m for m in await sys.models()}["half"]
        assert state.state == "broken" and why in state.reason
        with pytest.raises(ModelUnavailable, match="cannot be served"):
            await sys.generate("hi", max_tokens=2, model="half")
    assert loads == []


async def test_lazy_models_bounds_the_resident_ones(tmp_path: Path, home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one", "two"):
        register(name, tmp_path / name)
    one, two = FakeEngine(step_delay=0.01), FakeEngine(responder=lambda seq: "two")
    loads = counting(monkeypatch, {"one": one, "two": two})
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, lazy_models=1)) as k, k.session("t") as sys:
        await sys.generate("hi", max_tokens=2, model="one")
        await sys.generate("hi", max_tokens=2, model="two")  # "one" is idle: unloaded to make room
        states = {m.name: m.state for m in await sys.models()}
        assert states["one"] == "loadable" and states["two"] == "loaded" and "one" not in k.models
        stream = sys.generate("a long reply " * 20, max_tokens=60, model="one", stream=True)  # "two" goes
        async for _ in stream:
            with pytest.raises(NoSuchModel, match=r"lazy_models \(1\).*busy \('one'\)"):
                await sys.generate("hi", max_tokens=2, model="two")  # "one" is busy: refused, not queued
            break
        stream.close()
        assert loads == ["one", "two", "one"] and k.models.names == [k.models.default, "one"]
        with anyio.fail_after(5):
            while one.active:  # its loop frees the closed stream's sequence
                await anyio.sleep(0.01)
        assert (await sys.generate("hi", max_tokens=2, model="two")).text == "two"  # idle again: it goes
        assert loads == ["one", "two", "one", "two"] and not one.active


async def test_lazy_models_zero_serves_only_the_table(tmp_path: Path, home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    register("extra", tmp_path / "extra")
    loads = counting(monkeypatch, {"extra": FakeEngine()})
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, lazy_models=0)) as k, k.session("t") as sys:
        assert [m.name for m in await sys.models()] == ["fake"]
        with pytest.raises(NoSuchModel, match="no model 'extra' is loaded"):
            await sys.generate("hi", max_tokens=2, model="extra")
    assert loads == []


async def test_the_models_syscall_shows_only_what_the_caps_allow(tmp_path: Path, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    register("extra", tmp_path / "extra")
    counting(monkeypatch, {"extra": FakeEngine()})
    config = KernelConfig(models={"a": FakeEngine(), "b": FakeEngine()}, home=tmp_path)
    async with Kernel(config) as k, k.session("t", caps={"models": ["b"]}) as sys:
        assert [(m.name, m.state, m.default) for m in await sys.models()] == [("b", "loaded", False)]
        root = {m.name: m.state for m in await k.root.models()}
        assert root["a"] == root["b"] == "loaded" and root["extra"] == "loadable"


@pytest.mark.parametrize("value", [-1, True, "2", 1.5, None])
def test_hostile_lazy_models_are_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="lazy_models must be an integer >= 0"):
        KernelConfig(engine=FakeEngine(), home=tmp_path, lazy_models=value)


@pytest.mark.parametrize(("text", "says"), [("lazy_models = -3", "[kernel] lazy_models must be an integer >= 0"),
                                            ("lazy_models = 'two'", "lazy_models"),
                                            ("lazy_models = 2.5", "lazy_models")])
def test_the_config_file_refuses_a_bad_lazy_models(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "llmasos.toml"
    path.write_text(f"[kernel]\n{text}\n")
    with pytest.raises(ConfigFileError, match=re.escape(says)):
        load_config(path)
    path.write_text("[kernel]\nlazy_models = 0\n")
    assert load_config(path).config.lazy_models == 0


async def test_a_restored_process_sees_the_models_list_it_saw(tmp_path: Path, home: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The models syscall is journaled: after a restart its recorded answer is replayed, so a process
    that chose a model from it chooses the same one, whatever the library holds now."""
    register("extra", tmp_path / "extra")
    spec = f"{Path(__file__).with_name('lazy_apps.py')}:chooser"
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path / "k")) as k:
        pid = await k.spawn(spec)
        with anyio.fail_after(10):
            while k.get(pid).waiting_on != "recv":
                await anyio.sleep(0.01)
    library.unregister("extra")
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path / "k")) as k:
        assert "extra" not in [m.name for m in await k.root.models()]
        await k.root.send(pid, "go")
        assert "extra" in (await k.wait(pid)).value


async def test_react_on_a_default_boot_runs_on_the_registered_adapter(tiny_model_dir: Path, tmp_path: Path,
                                                                      home: Path) -> None:
    """The tiny model as the kernel's one model, a tiny adapter registered as react's: react asks the
    kernel (models syscall), which loads the adapter on its first generate; ps shows it waiting on it."""
    from llmasos.apps.react import TOOLS_MODEL

    library.register(Card(TOOLS_MODEL, str(lora(tiny_model_dir, tmp_path / "tools")), "registered"))
    async with Kernel(KernelConfig(engine=str(tiny_model_dir), home=tmp_path / "k")) as k:
        pid = await k.spawn("react", "What is 6 times 7?", 1, 16)
        seen = set()
        with anyio.fail_after(180):  # the load and the merge run in a worker thread: poll, do not spin
            while k.get(pid).alive:
                seen |= {p.waiting_on for p in k.ps(all=True) if p.pid == pid}
                await anyio.sleep(0.005)
        log = "".join(text for stream, text in k.output(pid) if stream == "stderr")
        status = await k.wait(pid)
        assert status.ok, status.error
        assert f"[model: {TOOLS_MODEL} (the tool-calling adapter)]" in log and f"llm:{TOOLS_MODEL}" in seen
        assert k.models.get(TOOLS_MODEL).kind == "local" and k.models.get(TOOLS_MODEL).lazy


async def test_caps_and_a_manifest_may_name_a_library_model(tmp_path: Path, home: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from llmasos import App

    register("extra", tmp_path / "extra")
    counting(monkeypatch, {"extra": FakeEngine(responder=lambda seq: "from extra")})
    pinned = App("pinned-to-extra", model="extra")

    @pinned.main
    async def _pinned(sys) -> str:
        return (await sys.generate("hi", max_tokens=3)).text

    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        pid = await k.spawn(pinned, caps={"models": ["extra"]})
        assert (await k.wait(pid)).value == "from extra"
        with pytest.raises(NoSuchModel, match=r"not loaded: 'ghost' \(nor in the model library\)"):
            await k.spawn("echo", "x", caps={"models": ["ghost"]})
        ghost = App("pinned-to-ghost", model="ghost")
        ghost.main(_pinned)
        with pytest.raises(NoSuchModel, match=r"'ghost' in its manifest, which is not loaded \(nor in the model"):
            await k.spawn(ghost)


async def test_request_caps_may_name_a_library_model_that_loads_on_first_use(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register("extra", tmp_path / "extra")
    loads = counting(monkeypatch, {"extra": FakeEngine(responder=lambda seq: "from extra")})
    config = KernelConfig(models={"main": FakeEngine()}, request_caps={"models": ["extra"]}, home=tmp_path / "k")
    async with Kernel(config) as k:
        assert "extra" not in k.models  # the boot accepted the name without loading it
        async with k.session("http") as sys:
            assert (await sys.generate("hi", max_tokens=4, model="extra")).text == "from extra"
            with pytest.raises(PermissionDenied, match="main"):  # the caps name only the library model
                await sys.generate("hi", max_tokens=4, model="main")
    assert loads == ["extra"]
    off = Kernel(KernelConfig(models={"main": FakeEngine()}, request_caps={"models": ["extra"]}, lazy_models=0,
                              home=tmp_path / "k0"))
    with pytest.raises(ConfigError, match="request_caps names models that are not loaded: 'extra'"):
        await off.boot()
    ghost = Kernel(KernelConfig(models={"main": FakeEngine()}, request_caps={"models": ["extra", "ghost"]},
                                home=tmp_path / "k1"))
    with pytest.raises(ConfigError, match="nor in the model library .*: 'ghost'; the loaded ones are 'main'"):
        await ghost.boot()
