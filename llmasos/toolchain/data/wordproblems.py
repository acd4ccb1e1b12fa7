"""Seeded word problems: training conversations for a tool-calling fine-tune, and evaluation items.

Rule: the training generator and the evaluation sets are disjoint by templates (the held-out ones,
``templates.EVAL``, only make evaluation items) and by numbers (an operand is *held out* when its
value in cents is 3 mod 4, ``held_out``: evaluation questions use only those, training questions
never do). The same seed gives the same items. The answer of each item is what the built-in
calculator computes from its expression, so data and tool agree.

Training examples are chat JSONL, the conversation ``sys.agent`` has: system, user question, the
assistant's calculator call, the tool result, the assistant's answer quoting it. Evaluation items
are ``{"question": ..., "answer": <number>}``. Write them with
``python -m llmasos.toolchain.data.wordproblems train --count 2000 --seed 0 --out train.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from random import Random
from typing import Any

from llmasos.toolchain.data.templates import (
    EVAL,
    ITEMS,
    NAMES,
    PLACES,
    STATED_EVAL,
    TEMPLATES,
    VALIDATION,
    Template,
)
from llmasos.tools.agent import DEFAULT_SYSTEM
from llmasos.tools.builtin.calculator import evaluate

TRAIN_TEMPLATES = tuple(t for t in TEMPLATES if t.id not in EVAL)
EVAL_TEMPLATES = tuple(t for t in TEMPLATES if t.id in EVAL)
VALIDATION_TEMPLATES = tuple(t for t in TRAIN_TEMPLATES if t.id in VALIDATION)
OPS = ("+", "-", "*")
TRIES = 2000  # draws per item before a template is declared unable to meet the number split
EVAL_FILES = {"wordproblems": "wordproblems.jsonl", "expressions": "expressions.jsonl"}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class SplitError(ValueError):
    """A template could not draw operands on its side of the number split; widen its ranges."""


@dataclass(frozen=True, slots=True)
class Problem:
    question: str
    expression: str
    answer: int | float
    reply: str  # the answer sentence, quoting the result
    template: str
    family: str


def held_out(value: float) -> bool:
    """True for numbers kept for evaluation: their value in cents is 3 mod 4 (3, 7, 11, 0.03, 1.15...)."""
    return int(value) % 4 == 3 if value == int(value) else round(value * 100) % 4 == 3


def numbers_in(text: str) -> list[float]:
    """The numbers written in a question."""
    return [float(n) for n in _NUMBER.findall(text)]


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.2f}"


def make(t: Template, rng: Random, *, evaluation: bool) -> Problem:
    """One problem from template t, its operands on the evaluation (or the training) side of the split."""
    for _ in range(TRIES):
        values = t.draw(rng)
        words = {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "place": rng.choice(PLACES),
                 "op": rng.choice(OPS)}
        text = rng.choice(t.texts)
        shown = {k: v for k, v in values.items() if "{" + k + "}" in text}
        if any(held_out(v) != evaluation for v in shown.values()):
            continue
        fields = {**words, **{k: _fmt(v) for k, v in values.items()}}
        expression = t.expression.format(**fields)
        result = evaluate(expression)
        if result < 0 or round(result, 2) != result:
            continue
        fields["result"] = _fmt(result)
        question = text.format(**fields)
        return Problem(question, expression, result, rng.choice(t.answers).format(**fields), t.id, t.family)
    raise SplitError(f"template {t.id} drew no operands on the {'evaluation' if evaluation else 'training'} "
                     f"side of the number split in {TRIES} tries")


def problems(count: int, seed: int = 0, *, evaluation: bool = False,
             templates: tuple[Template, ...] | None = None) -> Iterator[Problem]:
    """count problems, the templates taken in turn (training templates unless evaluation)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    pool = templates or (EVAL_TEMPLATES if evaluation else TRAIN_TEMPLATES)
    if not evaluation and any(t.id in EVAL for t in pool):
        raise ValueError("a held-out template may not make training data")
    rng = Random(seed)
    order = list(pool)
    for i in range(count):
        if i % len(order) == 0:
            rng.shuffle(order)
        yield make(order[i % len(order)], rng, evaluation=evaluation)


def training_example(p: Problem, index: int = 0) -> dict[str, Any]:
    """The chat conversation that teaches p: the call, its result, an answer quoting it."""
    cid = f"call_{index}"
    return {"tools": ["calculator"], "messages": [
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": p.question},
        {"role": "assistant", "content": None, "tool_calls": [{"id": cid, "type": "function", "function": {
            "name": "calculator", "arguments": json.dumps({"expression": p.expression})}}]},
        {"role": "tool", "tool_call_id": cid, "name": "calculator", "content": json.dumps(p.answer)},
        {"role": "assistant", "content": p.reply},
    ]}


def training_set(count: int, seed: int = 0) -> list[dict[str, Any]]:
    return [training_example(p, i) for i, p in enumerate(problems(count, seed))]


def eval_items(kind: str = "wordproblems", count: int = 200, seed: int = 1) -> list[dict[str, Any]]:
    """Evaluation items generated from held-out templates (plus the hand-written ones for wordproblems)."""
    if kind == "expressions":
        found = problems(count, seed, evaluation=True, templates=(STATED_EVAL,))
        return [{"question": p.question, "answer": p.answer} for p in found]
    if kind != "wordproblems":
        raise ValueError(f"the evaluation sets are {', '.join(EVAL_FILES)}, not {kind!r}")
    from llmasos.toolchain.data.handwritten import HANDWRITTEN

    made = [{"question": p.question, "answer": p.answer} for p in problems(count, seed, evaluation=True)]
    return made + [{"question": q, "answer": evaluate(e)} for q, e in HANDWRITTEN]


def validation_items(count: int = 120, seed: int = 2) -> list[dict[str, Any]]:
    """Items from the validation templates (training templates a build keeps out of its data), with
    numbers on the training side of the split: what recipe choices are measured on, not the eval sets."""
    found = problems(count, seed, templates=VALIDATION_TEMPLATES)
    return [{"question": p.question, "answer": p.answer} for p in found]


def load_eval(kind: str = "wordproblems") -> list[dict[str, Any]]:
    """An evaluation set shipped with the package (llmasos/toolchain/data/eval/)."""
    if kind not in EVAL_FILES:
        raise ValueError(f"the evaluation sets are {', '.join(EVAL_FILES)}, not {kind!r}")
    text = resources.files("llmasos.toolchain.data").joinpath("eval", EVAL_FILES[kind]).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write seeded word-problem data as JSONL.")
    ap.add_argument("kind", choices=["train", "validation", *EVAL_FILES])
    ap.add_argument("--count", type=int, default=None,
                    help="items (train: 2000; validation: 120; eval: 200 generated)")
    ap.add_argument("--seed", type=int, default=None, help="train: 0; validation: 2; eval: 1 (the shipped sets)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.kind == "train":
        rows = training_set(2000 if args.count is None else args.count, 0 if args.seed is None else args.seed)
    elif args.kind == "validation":
        rows = validation_items(120 if args.count is None else args.count, 2 if args.seed is None else args.seed)
    else:
        rows = eval_items(args.kind, 200 if args.count is None else args.count, 1 if args.seed is None else args.seed)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} items to {args.out}")


if __name__ == "__main__":
    main()
