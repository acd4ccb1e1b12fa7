"""`llmasos models build`: the training data is react's own prompts and disjoint from the evaluation sets;
a build on the tiny model registers an adapter, is idempotent, resumes after Ctrl-C, and refuses bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli import cli as cli_app
from llmasos.engine import library
from llmasos.engine.fake import FakeEngine
from llmasos.engine.library import BadModelName, Card, LibraryError
from llmasos.kernel import Kernel, KernelConfig
from llmasos.toolchain import build
from llmasos.toolchain.data import wordproblems
from llmasos.toolchain.data.agentformat import react_examples

RECIPE = build.RECIPES["smollm2-135m-tools"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_training_data_is_seeded_and_disjoint_from_the_evaluation_sets() -> None:
    rows = build.training_rows(RECIPE)
    assert rows == build.training_rows(RECIPE) and len(rows) == 2 * RECIPE.problems
    asked = {i["question"] for kind in wordproblems.EVAL_FILES for i in wordproblems.load_eval(kind)}
    for row in rows:
        question = next(m for m in row["messages"] if m["role"] == "user")["content"]
        assert question not in asked
        assert not any(wordproblems.held_out(n) for n in wordproblems.numbers_in(question))
    kept_out = wordproblems.VALIDATION_TEMPLATES  # the recipe's validation split stays out of its data
    assert {t.id for t in kept_out} == set(RECIPE.holdout) and kept_out
    wordings = [re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(text)) + "$") for t in kept_out for text in t.texts]
    asked_here = [next(m for m in r["messages"] if m["role"] == "user")["content"] for r in rows]
    assert not [q for q in asked_here if any(w.match(q) for w in wordings)]
    assert any(w.match(i["question"]) for i in wordproblems.validation_items(6) for w in wordings)
    held = next(wordproblems.problems(1, 0, evaluation=True))
    with pytest.raises(AssertionError, match="held-out template"):
        build.check_disjoint([held])
    sneaky = wordproblems.Problem("Ana has 7 apples and 4 more?", "7 + 4", 11, "11", "totals.together", "totals")
    with pytest.raises(AssertionError, match="evaluation numbers"):
        build.check_disjoint([sneaky])


async def test_training_prompts_are_what_react_sends_on_the_adapter(tmp_path: Path, home: Path) -> None:
    """The two examples of a problem hold, message for message, the prompts the kernel hands the model
    when react solves it on smollm2-135m-tools (the FakeEngine records them rendered)."""
    question, expression, result = "A box holds 12 eggs. How many eggs are in 8 boxes?", "12 * 8", 96
    reply = "There are 96 eggs."
    call, answer = react_examples(question, expression, result, reply, examples=False)
    _register_adapter(home, tmp_path)
    base, tuned = FakeEngine(), FakeEngine()
    tuned.enqueue(call["messages"][-1]["content"], reply)
    async with Kernel(KernelConfig(models={"base": base, "smollm2-135m-tools": tuned}, home=tmp_path)) as k:
        pid = await k.spawn("react", question)
        assert (await k.wait(pid)).value == reply
    render = ["\n".join(f"{m['role']}: {m['content']}" for m in ex["messages"][:-1]) for ex in (call, answer)]
    assert tuned.prompts == render and base.prompts == []


def _register_adapter(home: Path, tmp_path: Path, *, steps: int = 3, total: int = 3) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "llmasos-adapter.json").write_text(json.dumps({"base": "smollm2-135m", "steps": steps,
                                                             "total_steps": total}))
    library.register(Card("smollm2-135m-tools", str(folder), "registered"))
    return folder


def test_build_on_the_tiny_model_registers_is_idempotent_and_rebuilds(home: Path, tiny_model_dir: Path) -> None:
    notes: list[str] = []
    first = build.build("smollm2-135m-tools", base=str(tiny_model_dir), max_steps=2, note=notes.append)
    assert first.built and first.tune is not None and first.tune.steps == 2
    adapter = home / "models" / "smollm2-135m-tools" / "adapter"
    assert library.registered()["smollm2-135m-tools"].source == str(adapter)
    assert (adapter / "adapter_model.safetensors").is_file() and build.is_built("smollm2-135m-tools")
    assert any("disjoint" in n for n in notes) and any("registered" in n for n in notes)
    from llmasos.toolchain import library as toolchain_library

    assert "smollm2-135m-tools" in {r.name for r in toolchain_library.rows()}
    again = build.build("smollm2-135m-tools", base=str(tiny_model_dir), max_steps=2)
    assert not again.built and again.tune is None  # nothing to do
    stamp = (adapter / "llmasos-adapter.json").stat().st_mtime_ns
    forced = build.build("smollm2-135m-tools", base=str(tiny_model_dir), max_steps=1, force=True)
    assert forced.built and forced.tune.steps == 1
    assert (adapter / "llmasos-adapter.json").stat().st_mtime_ns != stamp


def test_ctrl_c_leaves_it_unregistered_and_the_next_build_resumes(home: Path, tiny_model_dir: Path) -> None:
    def stop(step: int, *_: object) -> None:
        if step == 2:
            raise KeyboardInterrupt

    cut = build.build("smollm2-135m-tools", base=str(tiny_model_dir), max_steps=4, on_step=stop)
    assert cut.interrupted and not cut.built and "smollm2-135m-tools" not in library.registered()
    notes: list[str] = []
    done = build.build("smollm2-135m-tools", base=str(tiny_model_dir), max_steps=4, note=notes.append)
    assert done.built and done.tune.steps == 4 and any("resuming" in n for n in notes)
    assert [s for s, _ in done.tune.train_loss] == [1, 2, 3, 4]


def test_answer_every_keeps_every_call_and_one_answer_in_n() -> None:
    """A recipe can spend its steps on the calls (the answer step is short, and react quotes the
    calculator's result into it): every problem makes its call example, one in answer_every its answer."""
    from dataclasses import replace

    every = build.training_rows(replace(RECIPE, problems=9))
    third = build.training_rows(replace(RECIPE, problems=9, answer_every=3))
    assert len(every) == 18 and len(third) == 9 + 3
    calls = every[0::2]
    assert [r for r in third if r in calls] == calls  # every call, in order
    assert [r for r in third if r not in calls] == [every[1], every[7], every[13]]  # problems 0, 3 and 6
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(LibraryError, match="answer_every"):
            build.training_rows(replace(RECIPE, problems=2, answer_every=bad))


def test_build_refuses_bad_input(home: Path, tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no recipe.*smollm2-135m-tools"):
        build.build("my-model")
    with pytest.raises(BadModelName):
        build.build("../../etc")
    with pytest.raises(LibraryError, match="max_steps"):
        build.build("smollm2-135m-tools", max_steps=0)
    with pytest.raises(LibraryError, match="not training templates.*eval.money.change"):
        build.training_rows(build.Recipe(base="x", problems=2, seed=0, examples=False,
                                         holdout=("eval.money.change",)))
    library.register(Card("smollm2-135m-tools", str(tmp_path), "registered"))
    with pytest.raises(LibraryError, match="not to a build.*--force"):
        build.build("smollm2-135m-tools")


@pytest.mark.parametrize(("args", "message"), [
    (["models", "build", "nope"], "no recipe to build 'nope'"),
    (["models", "build", "a/b"], "name"),
    (["models", "build", "smollm2-135m-tools", "--max-steps", "0"], "--max-steps"),
    (["models", "build", "smollm2-135m-tools", "--max-steps", "x"], "--max-steps"),
    (["models", "build", "smollm2-135m-tools", "--base", "/no/such/model", "--max-steps", "1"], "/no/such/model"),
])
def test_build_command_refuses_bad_input(home: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "smollm2-135m-tools" not in library.registered()
