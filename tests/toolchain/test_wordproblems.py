"""The word-problem generator: seeded, disjoint from the evaluation sets by templates and by numbers."""

from __future__ import annotations

import json

import pytest

from llmasos.toolchain.data.templates import EVAL, TEMPLATES, VALIDATION
from llmasos.toolchain.data.wordproblems import (
    EVAL_TEMPLATES,
    TRAIN_TEMPLATES,
    VALIDATION_TEMPLATES,
    eval_items,
    held_out,
    load_eval,
    main,
    numbers_in,
    problems,
    training_set,
    validation_items,
)
from llmasos.tools.builtin.calculator import calculator, evaluate


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    assert training_set(60, seed=5) == training_set(60, seed=5)
    assert training_set(60, seed=5) != training_set(60, seed=6)
    assert eval_items(seed=1) == eval_items(seed=1)


def test_training_and_evaluation_share_no_template_and_no_number() -> None:
    train = list(problems(600, seed=0))
    assert {p.template for p in train}.isdisjoint(EVAL)
    assert {t.id for t in TRAIN_TEMPLATES} | {t.id for t in EVAL_TEMPLATES} == {t.id for t in TEMPLATES}
    train_numbers = {n for p in train for n in numbers_in(p.question)}
    eval_numbers = {n for kind in ("wordproblems", "expressions") for item in load_eval(kind)
                    for n in numbers_in(item["question"])}
    assert train_numbers and eval_numbers and train_numbers.isdisjoint(eval_numbers)
    assert not any(held_out(n) for n in train_numbers) and all(held_out(n) for n in eval_numbers)
    train_questions = {p.question for p in train}
    assert not train_questions & {i["question"] for i in load_eval("wordproblems")}


def test_validation_items_come_from_training_templates_on_the_training_side_of_the_split() -> None:
    """The validation split (what recipe choices are measured on) is training templates a build
    keeps out, with training numbers: it never touches the evaluation sets."""
    assert {t.id for t in VALIDATION_TEMPLATES} == set(VALIDATION) and not set(VALIDATION) & EVAL
    items = validation_items()
    assert items == validation_items() and len(items) == 120
    texts = {t.id: t.texts for t in VALIDATION_TEMPLATES}
    assert all(len(ts) >= 2 for ts in texts.values())
    numbers = {n for i in items for n in numbers_in(i["question"])}
    assert numbers and not any(held_out(n) for n in numbers)
    for item in items:
        assert evaluate(str(item["answer"])) == item["answer"]


def test_every_family_is_covered_in_training() -> None:
    families = {p.family for p in problems(200, seed=3)}
    assert families == {"totals", "differences", "rates", "sharing", "percentages", "time", "money", "stated"}


def test_training_examples_are_agent_conversations_the_calculator_agrees_with() -> None:
    for ex in training_set(40, seed=2):
        _system, _user, call, tool, answer = ex["messages"]
        assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
        fn = call["tool_calls"][0]["function"]
        args = json.loads(fn["arguments"])
        calculator.validate(args)  # fits the calculator's schema (its pattern included)
        result = json.loads(tool["content"])
        assert evaluate(args["expression"]) == result
        assert str(result) in answer["content"] or f"{result:.2f}" in answer["content"]


def test_the_shipped_eval_sets_are_the_generator_output() -> None:
    words, exprs = load_eval("wordproblems"), load_eval("expressions")
    assert words == json.loads(json.dumps(eval_items("wordproblems", 200, 1)))
    assert exprs == json.loads(json.dumps(eval_items("expressions", 100, 1)))
    assert len(words) >= 200 and len(exprs) >= 100
    for item in words + exprs:
        assert set(item) == {"question", "answer"} and isinstance(item["answer"], (int, float))


@pytest.mark.parametrize(("call", "error"), [
    (lambda: list(problems(-1)), "count must be"),
    (lambda: eval_items("../../etc/passwd"), "evaluation sets are"),
    (lambda: load_eval("nope"), "evaluation sets are"),
    (lambda: list(problems(3, templates=EVAL_TEMPLATES)), "held-out template"),
])
def test_bad_requests_are_clear_errors(call, error) -> None:
    with pytest.raises(ValueError, match=error):
        call()


def test_the_module_writes_jsonl(tmp_path, capsys) -> None:
    out = tmp_path / "train.jsonl"
    main(["train", "--count", "7", "--seed", "4", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == json.loads(json.dumps(training_set(7, 4))) and "wrote 7 items" in capsys.readouterr().out
    main(["validation", "--out", str(out)])
    assert [json.loads(line) for line in out.read_text().splitlines()] == validation_items()


@pytest.mark.parametrize(("name", "count"), [("wordproblems_fresh.jsonl", 40), ("wordproblems_fresh2.jsonl", 50),
                                             ("wordproblems_fresh3.jsonl", 50), ("wordproblems_fresh4.jsonl", 50)])
def test_the_unseen_problems_in_bench_share_no_number_with_training_and_their_answers_are_right(
        name: str, count: int) -> None:
    """bench/data/wordproblems_fresh*.jsonl (docs/tools.md): the check on the shipped sets, so they must
    hold to the same split: evaluation-side numbers only, and answers the calculator agrees with."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "data" / name
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    assert len(rows) == count and len({r["question"] for r in rows}) == count
    for r in rows:
        assert all(held_out(n) for n in numbers_in(r["question"])), r["question"]
        assert evaluate(r["expression"]) == r["answer"]
    assert not {r["question"] for r in rows} & {p.question for p in problems(2000, seed=0)}
