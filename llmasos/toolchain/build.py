"""`llmasos models build NAME`: make a library model here from a recipe (generate data, fine-tune, register).

Rule: a build is idempotent and resumable. Its folder is ``$LLMASOS_HOME/models/NAME/``: the training
data (``train.jsonl``, generated from the seeded word-problem generator, the same bytes for the same
recipe) and the adapter (``adapter/``, written by ``toolchain.finetune``). A finished build that is
registered is left alone unless ``force``; an interrupted one (Ctrl-C) keeps its checkpoints and is not
registered, and the next build resumes it at the step it reached. The name is registered only once
training has finished, so a registered name always loads. The training data is checked disjoint from
the shipped evaluation sets, by template and by number, before any model loads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.engine import library, models
from llmasos.engine.library import Card, LibraryError
from llmasos.toolchain import finetune
from llmasos.toolchain.data import wordproblems
from llmasos.toolchain.data.agentformat import react_examples
from llmasos.toolchain.data.templates import EVAL, VALIDATION


@dataclass(frozen=True, slots=True)
class Recipe:
    """How to make one library model: the base, the training problems, the fine-tune's settings."""

    base: str
    problems: int  # word problems drawn from the training templates; each makes two examples (call, answer)
    seed: int
    examples: bool  # the prompt holds the tools' few-shot turns (react passes the same; see apps/react.py)
    steps: int | None = None  # stop after this many steps (None: the whole of tune's epochs)
    tune: dict[str, Any] = field(default_factory=dict)  # TuneConfig fields
    holdout: tuple[str, ...] = ()  # training templates kept out of the data (validation: templates.VALIDATION)
    answer_every: int = 1  # one problem in this many also makes the answer example (every one makes the call)
    description: str = ""


RECIPES: dict[str, Recipe] = {
    "smollm2-135m-tools": Recipe(
        base=models.DEFAULT_MODEL, problems=500, seed=0, examples=False, steps=60, holdout=VALIDATION,
        # chosen by a short timing run on 2 cores: LoRA on the top 15 of 30 layers trains ~3x faster
        # than on all of them (7 s against 20 s a step of 8 examples of ~360 tokens); 60 steps (480 of
        # the 950 training examples, from 41 templates) fit the ~15 minutes on two quiet cores, the
        # training loss near flat from step ~20 (0.05-0.3 a step). The validation templates stay out
        # so that a build can be measured on wordings it has not seen. Since the fine-tune runs the
        # shared system prompt once a batch (finetune.answer_loss), a step is ~5 s and the 60 take
        # ~330 s; twice the examples (batch 16) and more templates measured no better (docs/tools.md)
        tune={"epochs": 1, "batch_size": 8, "lr": 1e-3, "rank": 16, "alpha": 32, "dropout": 0.0,
              "targets": ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"), "top_layers": 15,
              "max_len": 512, "val_fraction": 0.05, "save_every": 10},
        description="SmolLM2-135M-Instruct + a LoRA adapter for react's calculator calls and answers"),
}


@dataclass(slots=True)
class BuildResult:
    name: str
    folder: Path
    built: bool  # False: it was already built (nothing done)
    tune: finetune.TuneResult | None = None
    interrupted: bool = False


def recipe(name: str) -> Recipe:
    library.check_name(name)
    if name not in RECIPES:
        raise LibraryError(f"no recipe to build {name!r}; the buildable models are: {', '.join(RECIPES)}")
    return RECIPES[name]


def folder(name: str) -> Path:
    return models.models_dir() / name


def is_built(name: str) -> bool:
    """True when name is registered to this build's finished adapter."""
    card = library.registered().get(name)
    adapter = folder(name) / "adapter"
    if card is None or Path(card.source) != adapter:
        return False
    return _finished(adapter)


def _finished(adapter: Path) -> bool:
    try:
        m = json.loads((adapter / finetune.MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return not m.get("interrupted") and m.get("steps") == m.get("total_steps")


def training_rows(r: Recipe) -> list[dict[str, Any]]:
    """The recipe's training examples; AssertionError if any touches an evaluation set."""
    unknown = sorted(set(r.holdout) - {t.id for t in wordproblems.TRAIN_TEMPLATES})
    if unknown:
        raise LibraryError(f"the recipe holds out templates that are not training templates: {unknown}")
    pool = tuple(t for t in wordproblems.TRAIN_TEMPLATES if t.id not in r.holdout)
    problems = list(wordproblems.problems(r.problems, r.seed, templates=pool))
    check_disjoint(problems)
    if not (isinstance(r.answer_every, int) and not isinstance(r.answer_every, bool) and r.answer_every >= 1):
        raise LibraryError(f"answer_every must be a positive integer, not {r.answer_every!r}")
    rows = []
    for i, p in enumerate(problems):
        call, answer = react_examples(p.question, p.expression, p.answer, p.reply, i, examples=r.examples)
        rows += [call, answer] if i % r.answer_every == 0 else [call]
    return rows


def check_disjoint(problems: list[wordproblems.Problem]) -> None:
    """Training problems share no template, no held-out number and no question with the evaluation sets."""
    assert not any(p.template in EVAL for p in problems), "a held-out template made training data"
    bad = [p.question for p in problems if any(wordproblems.held_out(n) for n in wordproblems.numbers_in(p.question))]
    assert not bad, f"training questions hold evaluation numbers: {bad[:3]}"
    asked = {item["question"] for kind in wordproblems.EVAL_FILES for item in wordproblems.load_eval(kind)}
    same = [p.question for p in problems if p.question in asked]
    assert not same, f"training questions are in an evaluation set: {same[:3]}"


def build(name: str, *, force: bool = False, base: str | None = None, max_steps: int | None = None,
          note: Callable[[str], None] | None = None, on_step: finetune.OnStep | None = None) -> BuildResult:
    """Build name from its recipe (see the module docstring). base and max_steps override the recipe's
    base and steps (a test trains the tiny model for a few steps)."""
    r = recipe(name)
    if max_steps is not None and not (isinstance(max_steps, int) and not isinstance(max_steps, bool)
                                      and max_steps >= 1):
        raise LibraryError(f"max_steps must be a positive integer, not {max_steps!r}")
    say = note or (lambda _msg: None)
    where = folder(name)
    if force:
        if name in library.registered():
            library.unregister(name)
        shutil.rmtree(where, ignore_errors=True)
    elif is_built(name):
        say(f"{name} is built ({where / 'adapter'}); --force rebuilds it")
        return BuildResult(name, where, built=False)
    elif name in library.registered():
        raise LibraryError(f"{name} is registered to {library.registered()[name].source}, not to a build; "
                           f"`llmasos models remove {name}` first, or --force")
    where.mkdir(parents=True, exist_ok=True)
    data = where / "train.jsonl"
    rows = training_rows(r)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if not data.is_file() or data.read_text("utf-8") != text:
        data.write_text(text, "utf-8")
    say(f"{len(rows)} training examples from {r.problems} word problems (training templates only; "
        f"checked disjoint from the evaluation sets) in {data}")
    adapter = where / "adapter"
    resume = (adapter / finetune.CHECKPOINTS).is_dir()
    if adapter.exists() and not resume:
        shutil.rmtree(adapter)  # a start that saved nothing usable
    cfg = finetune.TuneConfig(base=base or r.base, data=data, out=adapter, max_steps=max_steps or r.steps,
                              seed=r.seed, **r.tune)
    if resume:
        say(f"resuming the interrupted build in {adapter}")
    result = finetune.finetune(cfg, resume=resume, on_step=on_step, on_note=say)
    if result.interrupted:
        say(f"interrupted at step {result.steps}/{result.total_steps}: {name} is not registered; "
            f"run `llmasos models build {name}` again to resume")
        return BuildResult(name, where, built=False, tune=result, interrupted=True)
    library.register(Card(name, str(adapter), "registered", description=r.description))
    say(f"registered {name} -> {adapter} ({result.steps} steps in {result.seconds:.0f} s)")
    return BuildResult(name, where, built=True, tune=result)
