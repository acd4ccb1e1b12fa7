"""The agent loop and the react app on scripted tool calls."""

from __future__ import annotations

from llmasos import App
from llmasos.engine.fake import FakeEngine
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
