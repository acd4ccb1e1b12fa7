"""Several models in one kernel (issue 15): the model table, routing by name, per-model batching and
policy, manifest defaults, the models capability, bad names, and replay after a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.config import ConfigError
from llmasos.kernel.models import ModelLoadError
from llmasos.syscalls.errors import InvalidArguments, NoSuchModel, PermissionDenied

REPO = Path(__file__).resolve().parents[2]


def engine(name: str, **kw) -> FakeEngine:
    e = FakeEngine(responder=lambda seq: f"{name} says {seq.prompt or 'hi'}", **kw)
    e.name = name
    return e


def two(tmp_path: Path, **overrides) -> tuple[Kernel, FakeEngine, FakeEngine]:
    small, big = engine("small-engine"), engine("big-engine")
    k = Kernel(KernelConfig(models={"small": small, "big": big}, home=tmp_path, **overrides))
    return k, small, big


ask = App("ask")


@ask.main
async def _ask(sys, prompt: str, model: str = "") -> str:
    return (await sys.generate(prompt, max_tokens=20, model=model or None)).text


on_big = App("on-big", model="big")


@on_big.main
async def _on_big(sys, prompt: str) -> str:
    return (await sys.generate(prompt, max_tokens=20)).text


spawner = App("spawner", can_spawn=True)


@spawner.main
async def _spawner(sys, models: str) -> str:
    pid = await sys.spawn("echo", "x", caps={"models": models.split(",")})
    return (await sys.wait(pid)).state


async def test_generate_routes_by_model_name_and_defaults_to_the_first(tmp_path):
    k, small, big = two(tmp_path)
    async with k:
        assert k.models.names == ["small", "big"] and k.models.default == "small"
        assert (await k.run(ask, "q1", model="big")).value == "big-engine says q1"
        assert (await k.run(ask, "q2")).value == "small-engine says q2"
        async with k.session("test") as sys:
            c = await sys.generate("q3", model="big", max_tokens=5)
        assert c.model == "big-engine"
    assert len(big.batches) and len(small.batches)


async def test_each_model_batches_only_its_own_sequences(tmp_path):
    small, big = engine("s", step_delay=0.002), engine("b", step_delay=0.002)
    async with Kernel(KernelConfig(models={"small": small, "big": big}, home=tmp_path)) as k:
        on_small = [await k.spawn(ask, f"s{i}", model="small") for i in range(4)]
        on_large = [await k.spawn(ask, f"b{i}", model="big") for i in range(4)]
        for pid in on_small + on_large:
            assert (await k.wait(pid)).state == "exited"
    assert {p for b in small.batches for p in b} == set(on_small)
    assert {p for b in big.batches for p in b} == set(on_large)
    assert max(len(b) for b in big.batches) > 1  # the big model's four shared its steps


async def test_default_model_and_a_marked_default(tmp_path):
    async with Kernel(KernelConfig(models={"a": engine("a"), "b": engine("b")}, default_model="b",
                                   home=tmp_path)) as k:
        assert (await k.run(ask, "q")).value == "b says q"
    async with Kernel(KernelConfig(models={"a": engine("a"), "b": {"engine": engine("b"), "default": True}},
                                   home=tmp_path)) as k:
        assert k.models.default == "b" and k.policy == "fifo"


async def test_the_manifest_names_a_processs_default_model(tmp_path):
    k, _small, _big = two(tmp_path)
    async with k:
        assert (await k.run(on_big, "q")).value == "big-engine says q"


async def test_engine_alone_is_one_model_named_after_it(tmp_path):
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        assert k.models.names == ["fake"] and k.models.default == "fake"
        assert (await k.run(ask, "q", model="fake")).state == "exited"


async def test_an_unknown_model_lists_the_loaded_ones(tmp_path):
    k, _small, _big = two(tmp_path)
    async with k:
        async with k.session("test") as sys:
            with pytest.raises(NoSuchModel, match="'small', 'big'"):
                await sys.generate("q", model="nope")
            with pytest.raises(NoSuchModel) as err:
                await sys.generate("q", model="x" * 100_000)
            assert len(str(err.value)) < 300
            with pytest.raises(InvalidArguments, match="string"):
                await sys.generate("q", model=123)  # type: ignore[arg-type]
            with pytest.raises(NoSuchModel):
                await sys.chat("hi", model="nope")
            assert (await sys.chat("hi", model="big")).text.startswith("big-engine says")


async def test_policy_is_per_model_and_switchable_per_model(tmp_path):
    models = {"a": {"engine": engine("a"), "policy": "rr", "quantum": 4}, "b": engine("b")}
    async with Kernel(KernelConfig(models=models, policy="fair", home=tmp_path)) as k:
        a, b = k.models.get("a"), k.models.get("b")
        assert (a.policy, b.policy) == ("rr", "fair")
        assert a.llm.scheduler.limits.quantum == 4 and b.llm.scheduler.limits.quantum == 16
        k.set_policy("priority", "b")
        assert (a.policy, b.policy) == ("rr", "priority")
        k.set_policy("fifo")
        assert (a.policy, b.policy) == ("fifo", "fifo")
        with pytest.raises(NoSuchModel):
            k.set_policy("fifo", "nope")


async def test_caps_restrict_models_and_children_never_get_more(tmp_path):
    k, _small, _big = two(tmp_path)
    async with k:
        pid = await k.spawn(ask, "q", model="big", caps={"models": ["small"]})
        status = await k.wait(pid)
        assert status.state == "crashed" and "PermissionDenied" in status.error and "'big'" in status.error
        assert (await k.run(ask, "q", caps={"models": ["small"]})).value == "small-engine says q"
        # a process that may not use the kernel's default gets the first model it may use
        assert (await k.run(ask, "q", caps={"models": ["big"]})).value == "big-engine says q"
        # a child asks for more than its parent holds: refused at spawn
        status = await k.run(spawner, "small,big", caps={"models": ["small"]})
        assert status.state == "crashed" and "PermissionDenied" in status.error
        assert (await k.run(spawner, "small", caps={"models": ["small"]})).value == "exited"
        info = k.info(await k.spawn(ask, "q", caps={"models": ["big"]}))
        assert info.caps["models"] == ["big"]


async def test_a_manifest_model_outside_the_caps_or_not_loaded_is_refused_at_spawn(tmp_path):
    k, _small, _big = two(tmp_path)
    async with k:
        with pytest.raises(PermissionDenied, match="'big'"):
            await k.spawn(on_big, "q", caps={"models": ["small"]})
        stray = App("stray", model="gone")
        stray.main(_on_big)
        with pytest.raises(NoSuchModel, match="'gone'"):
            await k.spawn(stray, "q")


async def test_caps_naming_models_that_are_not_loaded(tmp_path):
    k, _small, _big = two(tmp_path)
    async with k:
        with pytest.raises(NoSuchModel, match="'ghost'"):
            await k.spawn(ask, "q", caps={"models": ["small", "ghost"]})
        with pytest.raises(NoSuchModel) as err:  # a huge list: refused quickly, with a short message
            await k.spawn(ask, "q", caps={"models": [f"m{i}" for i in range(100_000)]})
        assert len(str(err.value)) < 600
        with pytest.raises(InvalidArguments):
            await k.spawn(ask, "q", caps={"models": [1, 2]})
        with pytest.raises(InvalidArguments):
            await k.spawn(ask, "q", caps={"models": {"small": 1}})


@pytest.mark.parametrize("name", ["", " big", "a b", "x\n", "../etc", "-rf", "a" * 101, "é", "a;b", 7])
def test_odd_model_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="model name"):
        KernelConfig(models={name: FakeEngine()}, home=tmp_path)


@pytest.mark.parametrize("models, why", [
    ({}, "at least one"),
    ({"a": 3}, "engine spec string"),
    ({"a": {"engine": "fake", "colour": "red"}}, "unknown keys"),
    ({"a": {"engine": "fake", "policy": "lottery"}}, "policy"),
    ({"a": {"engine": "fake", "max_batch": 0}}, "max_batch"),
    ({"a": {"engine": "fake", "options": [1]}}, "options"),
    ({"a": {"engine": "fake", "default": "yes"}}, "default"),
    ({"a": {"engine": "fake", "default": True}, "b": {"engine": "fake", "default": True}}, "several default"),
    ({"a": {"engine": ""}}, "engine"),
])
def test_bad_model_entries_are_refused(tmp_path, models, why):
    with pytest.raises(ConfigError, match=why):
        KernelConfig(models=models, home=tmp_path)


def test_engine_and_models_together_or_a_stray_default_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        KernelConfig(engine=FakeEngine(), models={"a": "fake"}, home=tmp_path)
    with pytest.raises(ConfigError, match="not one of the models"):
        KernelConfig(models={"a": "fake"}, default_model="b", home=tmp_path)
    with pytest.raises(ConfigError, match="default_model"):
        KernelConfig(engine=FakeEngine(), default_model="b", home=tmp_path)


async def test_a_model_that_fails_to_load_fails_boot_naming_it(tmp_path):
    ok = FakeEngine()
    k = Kernel(KernelConfig(models={"ok": ok, "broken": {"engine": "fake", "options": {"no_such": 1}}},
                            home=tmp_path))
    with pytest.raises(ModelLoadError, match="'broken'"):
        await k.boot()
    assert len(k.models) == 0 and k.memory is None
    async with Kernel(KernelConfig(models={"ok": ok}, home=tmp_path)) as k2:  # the database was released
        assert k2.models.names == ["ok"]


REPLAY = '''
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
import anyio
from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine

HERE = Path(__file__).resolve()
app = App("twice")


@app.main
async def twice(sys) -> list:
    first = await sys.generate("q1", model="big", max_tokens=20)
    print("first done", flush=True)
    await sys.recv()
    second = await sys.generate("q2", model="big", max_tokens=20)
    return [first.text, first.model, second.text, second.model]


def engine(name, boot):
    e = FakeEngine(responder=lambda seq: name + " boot " + boot + " says " + (seq.prompt or ""))
    e.name = name
    return e


async def main(home, boot):
    config = KernelConfig(models={{"small": engine("small", boot), "big": engine("big", boot)}}, home=home)
    async with Kernel(config) as k:
        if boot == "1":
            await k.spawn(f"{{HERE}}:app")
            await anyio.sleep(30)  # SIGKILLed meanwhile
            return
        (pid,) = k.recovery.restored
        k.send(pid, "go")
        print(json.dumps((await k.wait(pid, timeout=10)).value), flush=True)


anyio.run(main, Path(sys.argv[1]), sys.argv[2])
'''


@pytest.mark.timeout(60)
def test_replay_after_a_crash_keeps_the_model_each_call_named(tmp_path):
    script = tmp_path / "replay_app.py"
    script.write_text(REPLAY.format(repo=str(REPO)))
    home = tmp_path / "home"
    first = subprocess.Popen([sys.executable, str(script), str(home), "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "first done"
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
    out = subprocess.run([sys.executable, str(script), str(home), "2"], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr[-2000:]
    value = json.loads(out.stdout.strip().splitlines()[-1])
    # the first reply is the journaled one (boot 1's big model), the second ran live on boot 2's big model
    assert value == ["big boot 1 says q1", "big", "big boot 2 says q2", "big"]


def test_a_journal_written_before_model_existed_still_replays():
    from llmasos.memory import codec
    from llmasos.syscalls.calls import Chat, Generate

    # the digests of calls without a model are those llmasos wrote before the field existed
    assert codec.digest(Generate(prompt="q")) == "3c720667035d0817"
    assert codec.digest(Chat("hi")) == "3da1e52681ca2f99"
    assert codec.digest(Generate(prompt="q")) != codec.digest(Generate(prompt="q", model="big"))


async def test_a_local_transformers_model_and_a_fake_one_in_one_kernel(tmp_path, tiny_model_dir):
    config = KernelConfig(models={"tiny": str(tiny_model_dir), "fake": {"engine": "fake", "policy": "rr"}},
                          home=tmp_path, memory=False)
    async with Kernel(config) as k:
        assert [(m.name, m.kind, m.policy) for m in k.models] == [("tiny", "local", "fifo"), ("fake", "fake", "rr")]
        async with anyio.create_task_group() as tg:
            done = {}

            async def one(name: str) -> None:
                async with k.session("test") as sys:
                    done[name] = await sys.generate("Hello", model=name, max_tokens=4)

            tg.start_soon(one, "tiny")
            tg.start_soon(one, "fake")
        assert done["tiny"].completion_tokens == 4 and done["fake"].text == "echo: Hello"
        assert k.models.get("tiny").llm.tokens == 4 and k.models.get("fake").llm.tokens == 2
    assert k.models.names == []  # shutdown released the table (the kernel built the tiny engine: closed)


def test_a_manifest_model_must_be_a_name():
    with pytest.raises(ValueError, match="model names a loaded model"):
        App("bad", model=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="models is a list of names"):
        App("bad", models=[None])  # type: ignore[list-item]


@pytest.mark.slow
async def test_the_embedded_model_and_a_second_model_in_one_kernel(tmp_path):
    config = KernelConfig(models={"smollm2": "smollm2-135m", "fake": "fake"}, memory=False)  # (the test home's
    async with Kernel(config) as k:                                                      # converted model)
        assert k.models.get("smollm2").kind == "local"
        async with k.session("test") as sys:
            real = await sys.generate("The capital of France is", model="smollm2", max_tokens=5)
            fake = await sys.generate("x", model="fake", max_tokens=5)
        assert real.model == k.models.get("smollm2").engine.name and fake.model == "fake"
    assert real.completion_tokens >= 1 and fake.text == "echo: x"


async def test_request_caps_naming_a_model_that_is_not_loaded_fail_the_boot(tmp_path):
    k = Kernel(KernelConfig(models={"a": engine("a")}, request_caps={"models": ["a", "ghost"]}, home=tmp_path))
    with pytest.raises(ConfigError, match="request_caps names models that are not loaded nor in the model library.*: 'ghost'; the loaded ones"):
        await k.boot()
    assert k.memory is None and k.llm is None
    async with Kernel(KernelConfig(models={"a": engine("a")}, request_caps={"models": "*"}, home=tmp_path)) as k:
        async with k.session("test") as sys:
            assert (await sys.generate("q", model="a")).text == "a says q"


async def test_score_runs_on_the_model_it_names_and_the_caps_allow(tmp_path):
    k, small, big = two(tmp_path)
    async with k:
        async with k.session("test") as sys:
            assert (await sys.score("a b c", model="big")).model == "big-engine"
            assert (await sys.score("a b c")).model == "small-engine"
            with pytest.raises(NoSuchModel):
                await sys.score("a b c", model="huge")
        async with k.session("test", caps={"models": ["small"]}) as sys:
            with pytest.raises(PermissionDenied):
                await sys.score("a b c", model="big")
