"""On the real model: a small adapter made by the smollm2-135m-tools recipe (its data, its settings, a
few steps) answers fixed word problems through react. Slow: about 3 minutes on two cores (the full
build takes ~15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmasos.apps.react import TOOLS_MODEL
from llmasos.kernel import Kernel, KernelConfig
from llmasos.toolchain import build
from llmasos.toolchain.eval.metrics import answer_matches
from llmasos.toolchain.finetune import TuneConfig, finetune

STEPS = 16  # of the recipe's 60: enough to learn the call and the answer sentence
PROBLEMS = [  # evaluation-side numbers (3 mod 4), wordings outside the training templates
    ("A baker makes 23 loaves every morning. How many loaves does she make in 7 mornings?", 161),
    ("Mia had 143 stickers and gave 27 to her brother. How many does she have now?", 116),
    ("3 friends share 231 dollars equally. How much does each get?", 77),
    ("How many minutes are in 3 hours and 15 minutes?", 195),
]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_small_recipe_adapter_answers_fixed_word_problems(tmp_path: Path) -> None:
    recipe = build.RECIPES[TOOLS_MODEL]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in build.training_rows(recipe)))
    result = finetune(TuneConfig(base=recipe.base, data=data, out=tmp_path / "adapter", max_steps=STEPS,
                                 seed=recipe.seed, **{**recipe.tune, "val_fraction": 0.0}))
    assert result.steps == STEPS and not result.interrupted
    spec = f"{recipe.base}+{tmp_path / 'adapter'}"
    answers = []
    async with Kernel(KernelConfig(models={TOOLS_MODEL: spec}, home=tmp_path / "home")) as k:
        for question, _want in PROBLEMS:
            pid = await k.spawn("react", question, model=TOOLS_MODEL)
            status = await k.wait(pid)
            assert status.ok, status.error
            answers.append(status.value)
    print(f"\n{STEPS} steps in {result.seconds:.0f} s: {answers}")
    assert [answer_matches(a, want) for a, (_q, want) in zip(answers, PROBLEMS)] == [True] * len(PROBLEMS)
