"""On the real model: a small adapter made by the smollm2-135m-tools recipe (its data, its settings, a
few steps) answers fixed word problems through react, calling the calculator. Slow: 16 steps of 4
examples, ~3.5 s each on two quiet cores, about 70 s in all (the full build takes ~15 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmasos.apps.react import TOOLS_MODEL
from llmasos.kernel import Kernel, KernelConfig
from llmasos.toolchain import build
from llmasos.toolchain.data.wordproblems import numbers_in
from llmasos.toolchain.finetune import TuneConfig, finetune

STEPS = 16  # of the recipe's 60: enough to learn the call and the answer sentence
# Half the recipe's batch at twice its rate: the same format learnt at half the cost of a step (118 s in
# all at the recipe's batch 8 and rate 1e-3; 14 steps of 4 at 2e-3 pass as well, 8 steps of 8 do not)
SMALL = {"batch_size": 4, "lr": 2e-3, "val_fraction": 0.0}
PROBLEMS = [  # wordings of the training templates, numbers from the evaluation side (3 mod 4): the
    # held-out templates need the full build (docs/tools.md has its accuracy); 16 steps learn the format
    ("Each box holds 23 marbles. How many marbles are in 7 boxes?", 161),
    ("Ana had 143 stickers and gave away 27. How many stickers are left?", 116),
    ("Ben shares 231 cookies equally among 3 friends. How many does each friend get?", 77),
    ("How many minutes are in 3 hours and 15 minutes?", 195),
]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_small_recipe_adapter_answers_fixed_word_problems(tmp_path: Path) -> None:
    recipe = build.RECIPES[TOOLS_MODEL]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in build.training_rows(recipe)))
    result = finetune(TuneConfig(base=recipe.base, data=data, out=tmp_path / "adapter", max_steps=STEPS,
                                 seed=recipe.seed, **{**recipe.tune, **SMALL}))
    assert result.steps == STEPS and not result.interrupted
    spec = f"{recipe.base}+{tmp_path / 'adapter'}"
    answers = []
    async with Kernel(KernelConfig(models={TOOLS_MODEL: spec}, home=tmp_path / "home")) as k:
        for question, _want in PROBLEMS:
            pid = await k.spawn("react", question, model=TOOLS_MODEL)
            await k.get(pid).done.wait()
            log = "".join(text for stream, text in k.output(pid) if stream == "stderr")
            status = await k.wait(pid)
            assert status.ok, status.error
            assert "[calculator(" in log, log
            answers.append(status.value)
    print(f"\n{STEPS} steps in {result.seconds:.0f} s: {answers}")
    # the answer quotes the result ("There are 161 marbles in 7 boxes." ends on another number, so
    # eval's last-number rule would not do here)
    assert [want in numbers_in(a) for a, (_q, want) in zip(answers, PROBLEMS)] == [True] * len(PROBLEMS)
