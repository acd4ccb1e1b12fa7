"""generate with tools: offered in the prompt, parsed into Completion.tool_calls (FakeEngine: unconstrained)."""

from __future__ import annotations

import pytest

from llmasos import App
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import InvalidArguments, PermissionDenied
from llmasos.tools.calling import parse, resolve, to_template_messages
from tests.conftest import make_kernel

CALC = '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'


def _asker(tools: list[str] | None = None) -> App:
    app = App("asker", tools=["calculator", "clock"])

    @app.main
    async def main(sys, offered: list, choice: object = None) -> object:
        try:
            return await sys.generate(messages=[{"role": "user", "content": "2+2?"}], tools=offered,
                                      tool_choice=choice)
        except (InvalidArguments, PermissionDenied) as exc:
            return exc

    return app


async def _ask(tmp_path, reply: str, offered: list, choice: object = None) -> tuple[object, FakeEngine]:
    fake = FakeEngine()
    fake.enqueue(reply)
    async with make_kernel(tmp_path, fake) as k:
        status = await k.run(_asker(), offered, choice)
        assert status.ok, status.error
        return status.value, fake


async def test_a_call_becomes_tool_calls(tmp_path) -> None:
    c, fake = await _ask(tmp_path, CALC, ["calculator"])
    assert c.finish_reason == "tool_calls" and c.text == ""
    (call,) = c.tool_calls
    assert (call.name, call.arguments) == ("calculator", {"expression": "2 + 2"}) and call.id
    assert "<tools>" in fake.prompts[0] and '"name": "calculator"' in fake.prompts[0]


async def test_a_plain_answer_stays_text(tmp_path) -> None:
    c, _ = await _ask(tmp_path, "It is 4.", ["calculator"])
    assert (c.text, c.tool_calls, c.finish_reason) == ("It is 4.", (), "stop")


async def test_unconstrained_call_to_a_tool_not_offered_is_not_a_call(tmp_path) -> None:
    reply = '<tool_call>{"name": "clock", "arguments": {}}</tool_call>'
    c, _ = await _ask(tmp_path, reply, ["calculator"])
    assert c.tool_calls == () and "clock" in c.text


async def test_unconstrained_call_with_bad_arguments_is_not_a_call(tmp_path) -> None:
    reply = '<tool_call>{"name": "calculator", "arguments": {"expr": "1"}}</tool_call>'
    c, _ = await _ask(tmp_path, reply, ["calculator"])
    assert c.tool_calls == ()


async def test_tool_choice_none_offers_nothing(tmp_path) -> None:
    c, fake = await _ask(tmp_path, CALC, ["calculator"], "none")
    assert c.tool_calls == () and "<tools>" not in fake.prompts[0]


async def test_tool_choice_names_one_tool(tmp_path) -> None:
    c, fake = await _ask(tmp_path, CALC, ["calculator", "clock"], "calculator")
    assert c.tool_calls[0].name == "calculator"
    assert '"name": "clock"' not in fake.prompts[0]
    c, _ = await _ask(tmp_path, CALC, ["calculator"], {"type": "function", "function": {"name": "calculator"}})
    assert c.tool_calls


@pytest.mark.parametrize("choice", ["sometimes", "files", 3])
async def test_bad_tool_choice_is_invalid(tmp_path, choice: object) -> None:
    err, _ = await _ask(tmp_path, CALC, ["calculator"], choice)
    assert isinstance(err, InvalidArguments)


async def test_offering_a_tool_not_held_is_denied(tmp_path) -> None:
    err, _ = await _ask(tmp_path, CALC, ["files"])
    assert isinstance(err, PermissionDenied) and "files" in str(err)


async def test_schema_dicts_can_be_offered(tmp_path) -> None:
    schema = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
    c, _ = await _ask(tmp_path, '<tool_call>{"name": "lookup", "arguments": {"q": "x"}}</tool_call>', [schema])
    assert c.tool_calls[0].arguments == {"q": "x"}


def test_parse_forms_and_errors() -> None:
    offered = resolve(["calculator"])
    calls, errors, rest = parse('{"name": "calculator", "parameters": {"expression": "1"}}', offered)
    assert calls and not errors and rest == ""
    calls, errors, _ = parse("<tool_call>{not json</tool_call>", offered)
    assert not calls and "not valid JSON" in errors[0]
    calls, errors, _ = parse('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', offered)
    assert not calls and "no tool named 'rm'" in errors[0]


def test_tool_messages_render_as_plain_turns() -> None:
    msgs = to_template_messages([
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ])
    assert msgs[0] == {"role": "assistant",
                       "content": '<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}</tool_call>'}
    assert msgs[1] == {"role": "user", "content": "<tool_response>\n1\n</tool_response>"}
