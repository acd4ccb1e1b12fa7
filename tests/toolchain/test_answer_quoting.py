"""react's answer quotes the calculator's result by construction (apps/react.py, quote_result): a
misquoted number is replaced, a right one left alone, an operand never touched; an answer that names
what only the few-shot examples name says the result plainly (unborrowed); and the eval counts a
required call the model did not make as an invalid call."""

from __future__ import annotations

from pathlib import Path

from llmasos.apps.react import quote_result, unborrowed
from llmasos.client.local import LocalClient
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.toolchain.eval.runner import Options, run_model
from llmasos.toolchain.eval.sets import load_task
from llmasos.tools.agent import AgentResult, AgentStep

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "327 * 79"}}</tool_call>'


def solved(answer: str, value: object = 25833, *, name: str = "calculator", error: str | None = None,
           expression: str = "327 * 79", finished: bool = True) -> AgentResult:
    steps = [AgentStep("call", "", name, {"expression": expression}, value, error), AgentStep("answer", answer)]
    return AgentResult(answer, steps, [], finished=finished)


def test_a_misquoted_result_is_replaced_and_logged() -> None:
    fixed, note = quote_result(solved("327 * 79 is 2583."))
    assert fixed == "327 * 79 is 25833." and note is not None and "2583" in note and "25833" in note


def test_the_operands_are_left_and_the_last_other_number_is_replaced() -> None:
    fixed, _ = quote_result(solved("2583 is 327 * 79"))
    assert fixed == "25833 is 327 * 79"
    fixed, _ = quote_result(solved("There are 1,234 eggs in 12 boxes.", 12.5, expression="150 / 12"))
    assert fixed == "There are 12.5 eggs in 12 boxes."


def test_an_answer_without_a_number_gets_the_result_added() -> None:
    fixed, note = quote_result(solved("Each friend gets the same.", 7, expression="21 / 3"))
    assert fixed == "Each friend gets the same. (7)" and "added" in (note or "")
    fixed, _ = quote_result(solved("It is 327 times 79.", 25833))
    assert fixed == "It is 327 times 79. (25833)"


def test_a_right_answer_or_one_without_a_calculator_result_is_unchanged() -> None:
    for result in (solved("It is 25,833."), solved("It is 25833.0 exactly."),
                   solved("Noon.", "12:00", name="clock"), solved("Sorry.", None, error="division by zero"),
                   solved("It is 3.", True), solved("could not answer: no answer", finished=False),
                   AgentResult("42", [AgentStep("answer", "42")], [])):
        assert quote_result(result) == (result.answer, None)


def test_an_answer_that_names_the_examples_things_says_the_result_plainly() -> None:
    fixed, note = unborrowed("What is 467+91?", "Tom has 558 dollars left.", solved("x", 558, expression="467 + 91"))
    assert fixed == "The answer is 558." and note is not None and "dollars, tom" in note
    fixed, _ = unborrowed("A café sells 47 muffins and 39 more. How many muffins?", "Tom has 86 muffins.",
                          solved("x", 86, expression="47 + 39"))
    assert fixed == "The answer is 86."


def test_an_answer_whose_words_the_question_names_is_left_alone() -> None:
    for question, answer in (("Tom had 50 dollars and spent 12. How much is left?", "Tom has 38 dollars left."),
                             ("A box holds 6 eggs. How many eggs are in 4 Boxes?", "4 boxes hold 24 eggs."),
                             ("What is 467+91?", "467 + 91 = 558.")):
        result = solved(answer, 1, expression="1 * 1")
        assert unborrowed(question, answer, result) == (answer, None)
    for result in (solved("Tom: noon.", "12:00", name="clock"), solved("Tom is sorry.", None, error="division by zero"),
                   solved("could not answer: Tom", finished=False)):  # no calculator result to state
        assert unborrowed("What is 1/0?", result.answer, result) == (result.answer, None)


async def test_react_on_the_default_model_says_the_result_plainly_when_the_answer_borrows(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.enqueue('<tool_call>{"name": "calculator", "arguments": {"expression": "467 + 91"}}</tool_call>',
                   "Tom has 558 dollars left.")
    async with Kernel(KernelConfig(engine=engine, home=tmp_path, durable=False)) as kernel:
        pid = await kernel.spawn("react", "What is 467+91?")
        await kernel.get(pid).done.wait()
        log = "".join(text for stream, text in kernel.output(pid) if stream == "stderr")
        status = await kernel.wait(pid)
    assert status.ok and status.value == "The answer is 558.", (status, log)
    assert "names dollars, tom, from the examples" in log


AGENT = [{"question": "What is 327 times 79?", "answer": 25833}]


async def _agent(tmp_path: Path, replies: list[str], *, free: bool) -> object:
    task = load_task("agent", tmp_path / "agent.jsonl")
    engine = FakeEngine()
    engine.enqueue(*replies)
    async with Kernel(KernelConfig(engine=engine, home=tmp_path / f"h{free}", durable=False)) as kernel:
        return (await run_model(LocalClient(kernel), [task], Options(free=free))).tasks[0]


async def test_the_eval_scores_the_quoted_result(tmp_path: Path) -> None:
    (tmp_path / "agent.jsonl").write_text('{"question": "What is 327 times 79?", "answer": 25833}\n')
    got = await _agent(tmp_path, [CALL, "327 * 79 is 2583."], free=False)
    assert got.items[0]["prediction"] == "327 * 79 is 25833." and got.metrics["accuracy"] == 1.0


async def test_an_answer_where_a_call_was_required_is_an_invalid_call(tmp_path: Path) -> None:
    """react's first step must call a tool; a model that answers there instead made an invalid call
    (the FakeEngine has no grammar, so constrained or free it can answer)."""
    (tmp_path / "agent.jsonl").write_text('{"question": "What is 327 times 79?", "answer": 25833}\n'
                                          '{"question": "What is 327 times 79?", "answer": 25833}\n')
    for free in (False, True):
        got = await _agent(tmp_path, ["It is 25833.", CALL, "It is 25833."], free=free)
        calls = sorted((i["valid_calls"], i["invalid_calls"]) for i in got.items)
        assert calls == [(0, 1), (1, 0)] and got.metrics["call_validity"] == 0.5
        assert got.metrics["accuracy"] == 1.0  # the answer is still scored on its own
