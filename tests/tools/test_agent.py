"""The agent loop and the react app on scripted tool calls."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmasos import App
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.types import Completion
from llmasos.tools.agent import run_agent
from llmasos.tools.calling import prepare
from llmasos.tools.invoke import invoke
from llmasos.tools.registry import REGISTRY
from tests.conftest import make_kernel


def _call(name: str, args: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


async def test_react_app_solves_with_the_calculator(tmp_path) -> None:
    fake = FakeEngine()
    fake.enqueue(_call("calculator", '{"expression": "17 * 23"}'), "17 * 23 is 391.")
    async with make_kernel(tmp_path, fake) as k:
        pid = await k.spawn("react", "What is 17 * 23?")
        status = await k.wait(pid)
        assert status.value == "17 * 23 is 391."
        assert "<tool_response>\n391\n</tool_response>" in fake.prompts[1]


async def _agent(tmp_path, replies: list[str], tools=("calculator", "clock"), **kw) -> object:
    app = App("agentic", tools=list(tools))

    @app.main
    async def main(sys) -> object:
        return await sys.agent("question", **kw)

    fake = FakeEngine()
    fake.enqueue(*replies)
    async with make_kernel(tmp_path, fake) as k:
        status = await k.run(app)
        assert status.ok, status.error
        return status.value, fake


async def test_tool_error_becomes_a_message_the_model_sees(tmp_path) -> None:
    result, fake = await _agent(tmp_path, [_call("calculator", '{"expression": "1 / 0"}'), "Cannot divide by zero."])
    assert result.answer == "Cannot divide by zero."
    assert result.steps[0].error and "division by zero" in result.steps[0].error
    assert "division by zero" in fake.prompts[1]


async def test_invalid_call_gets_an_error_and_another_step(tmp_path) -> None:
    result, fake = await _agent(tmp_path, [_call("shell", '{"cmd": "ls"}'), "Sorry."])
    assert [s.kind for s in result.steps] == ["invalid", "answer"]
    assert "no tool named 'shell'" in fake.prompts[1]


async def test_repeated_call_is_not_run_twice(tmp_path) -> None:
    c = _call("clock", "{}")
    result, _ = await _agent(tmp_path, [c, c, "It is noon."])
    assert [s.kind for s in result.steps] == ["call", "answer"]


async def test_step_limit_ends_the_loop(tmp_path) -> None:
    calls = [_call("calculator", f'{{"expression": "{i} + 1"}}') for i in range(3)]
    result, fake = await _agent(tmp_path, [*calls, "done"], max_steps=3)
    assert [s.kind for s in result.steps] == ["call", "call", "answer"]
    assert "<tools>" not in fake.prompts[2]  # the last step must answer


async def test_agent_uses_the_tools_the_process_holds(tmp_path) -> None:
    result, fake = await _agent(tmp_path, ["Hello."], tools=["clock"])
    assert '"name": "clock"' in fake.prompts[0] and '"name": "calculator"' not in fake.prompts[0]


# -- failing cleanly: a real answer or "could not answer: <reason>", never tool-call JSON -------------


async def test_tool_call_json_as_the_last_reply_is_not_the_answer(tmp_path) -> None:
    cut = '<tool_call>{"name": "calculator", "arguments": {"expression": "15 + 15 + 15 +'
    result, _ = await _agent(tmp_path, [cut, cut], max_steps=2)
    assert result.answer.startswith("could not answer: ") and not result.finished
    assert "{" not in result.answer


async def test_a_paragraph_about_json_after_an_invalid_call_is_not_an_answer(tmp_path) -> None:
    bad = '<tool_call>{"name": "calculator", "arguments": {"expr": 1}}</tool_call>'
    about = "The tool call you made is malformed JSON; the arguments should be an object."
    result, fake = await _agent(tmp_path, [bad, about])
    assert "expr" in fake.prompts[1]  # the model was shown what was wrong
    assert result.answer == "could not answer: the model wrote about the tool-call format instead of answering"
    assert [s.kind for s in result.steps] == ["invalid", "answer"]


async def test_step_limit_without_an_answer_says_why(tmp_path) -> None:
    calls = [_call("calculator", f'{{"expression": "{i} + 1"}}') for i in range(2)]
    result, _ = await _agent(tmp_path, [calls[0], '{"name": "calculator"}'], max_steps=2)
    assert result.answer == "could not answer: the model wrote a tool call where its answer should be"
    assert result.steps[0].result == 1  # the tool's result stays in the steps, not in the answer


async def test_repeated_call_then_call_json_is_not_an_answer(tmp_path) -> None:
    c = _call("clock", "{}")
    result, _ = await _agent(tmp_path, [c, c, c])
    assert result.answer.startswith("could not answer: ")


async def test_an_answer_about_json_stands_when_nothing_failed(tmp_path) -> None:
    result, _ = await _agent(tmp_path, ["JSON is a text format for data."])
    assert result.answer == "JSON is a text format for data." and result.finished


async def test_few_shot_examples_of_the_offered_tools_open_the_prompt(tmp_path) -> None:
    _result, fake = await _agent(tmp_path, ["Hello."], tools=["calculator"])
    assert "A box holds 12 eggs" in fake.prompts[0] and "<tool_response>\n84\n</tool_response>" in fake.prompts[0]
    assert fake.prompts[0].endswith("user: question")  # the examples come before the task
    _result, fake = await _agent(tmp_path, ["Hello."], tools=["clock"])
    assert "12 eggs" not in fake.prompts[0]


REPLIES = st.sampled_from([
    _call("calculator", '{"expression": "2 + 2"}'), _call("calculator", '{"expression": "1 / 0"}'),
    _call("nope", "{}"), _call("calculator", '{"expr": "1"}'), '<tool_call>{"name": "calculator", "argu',
    '{"name": "calculator", "arguments": {"expression": "3"}}', "", "   ", "The answer is 4.",
    "Your JSON was malformed.", '<tool_response>\n4\n</tool_response>', "[1, 2]", "It is 4 o'clock.",
])


class _ScriptedSys:
    """Just what run_agent uses of a Sys: generate through the real tool-call parser, real tools."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)

    async def tools(self) -> list[dict]:
        return [REGISTRY.get("calculator").schema]

    async def generate(self, **kw) -> Completion:
        text = self.replies.pop(0) if self.replies else "Done."
        setup = prepare(Generate(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()}))
        return setup.postprocess(Completion(text=text, finish_reason="stop"))

    async def call_tool(self, name: str, arguments: dict) -> object:
        return await invoke(REGISTRY.get(name), arguments)


@settings(max_examples=60, deadline=None)
@given(replies=st.lists(REPLIES, min_size=1, max_size=5), max_steps=st.integers(1, 4))
async def test_the_answer_is_never_tool_call_json(replies: list[str], max_steps: int) -> None:
    result = await run_agent(_ScriptedSys(replies), "question", max_steps=max_steps)
    assert result.finished or result.answer.startswith("could not answer: ")
    assert "<tool_" not in result.answer and '"name"' not in result.answer and '"arguments"' not in result.answer
    failed = any(s.kind == "invalid" or s.error is not None for s in result.steps[:-1])
    assert not failed or "json" not in result.answer.lower() or result.answer.startswith("could not answer: ")
    assert result.answer.strip() == result.answer and result.answer
