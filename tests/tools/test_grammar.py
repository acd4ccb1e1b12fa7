"""Constrained decoding: a random model's output is always a valid call (or, with "auto", plain text)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.calls import Generate

from ..conftest import generate_all
from llmasos.tools.calling import resolve
from llmasos.tools.grammar import ToolCallProcessor, apply_bitmask, call_schema, lark_grammar

UNIT = {"type": "function", "function": {"name": "weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"unit": {"enum": ["c", "f"]}, "rain": {"type": "boolean"}},
    "required": ["unit", "rain"], "additionalProperties": False}}}
SWITCH = {"type": "function", "function": {"name": "switch", "parameters": {
    "type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"], "additionalProperties": False}}}


def test_call_schema_lists_each_tool() -> None:
    schema = call_schema([UNIT, SWITCH])
    assert [o["properties"]["name"]["const"] for o in schema["anyOf"]] == ["weather", "switch"]
    assert "start: call\n" in lark_grammar([UNIT], "required")
    assert "ANSWER" in lark_grammar([UNIT], "auto")


def test_apply_bitmask_keeps_only_set_bits() -> None:
    mask = torch.zeros(2, dtype=torch.int32)
    mask[0] = 0b101  # tokens 0 and 2
    logits = torch.zeros(40)
    out = apply_bitmask(logits, mask)
    assert torch.isfinite(out).nonzero().flatten().tolist() == [0, 2]


def _decode(tokenizer, processor: ToolCallProcessor, seed: int, steps: int = 60) -> str:
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    for _ in range(steps):
        logits = processor(out, torch.randn(len(tokenizer), generator=gen) * 5)
        token = int(torch.argmax(logits))
        if token == tokenizer.eos_token_id:
            break
        out.append(token)
    return tokenizer.decode(out)


@pytest.mark.parametrize("seed", range(5))
def test_random_logits_still_give_a_valid_call(tiny_model_dir, seed: int) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = _decode(tok, ToolCallProcessor(tok, lark_grammar([UNIT, SWITCH], "required")), seed)
    assert text.startswith("<tool_call>") and text.endswith("</tool_call>")
    call = json.loads(text[len("<tool_call>"):-len("</tool_call>")])
    assert call["name"] in ("weather", "switch")
    assert set(call["arguments"]) == ({"unit", "rain"} if call["name"] == "weather" else {"on"})


async def test_constrained_through_the_kernel_in_one_batch(tiny_engine_factory, tmp_path) -> None:
    engine = tiny_engine_factory(max_batch=8)
    async with Kernel(KernelConfig(engine=engine, home=tmp_path)) as k:
        msgs = ({"role": "user", "content": "weather?"},)
        calls = [Generate(messages=msgs, tools=(UNIT, SWITCH), tool_choice="required", max_tokens=60,
                          temperature=1.0, seed=i) for i in range(4)]
        plain = Generate(messages=msgs, max_tokens=8)  # an unconstrained neighbour
        results = (await generate_all(k, [*calls, plain]))[:4]
    for c in results:
        assert c.finish_reason == "tool_calls", c.text
        assert c.tool_calls[0].name in ("weather", "switch")


async def test_auto_gives_a_call_or_text_not_starting_a_call(tiny_engine_factory, tmp_path) -> None:
    engine = tiny_engine_factory()
    async with Kernel(KernelConfig(engine=engine, home=tmp_path)) as k:
        for seed in range(3):
            [c] = await generate_all(k, [Generate(prompt="hi", tools=(SWITCH,), tool_choice="auto",
                                                  max_tokens=12, temperature=1.0, seed=seed)])
            assert c.tool_calls or not c.text.startswith("<")


def test_registered_tool_schemas_compile(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    offered = [o.schema for o in resolve(["calculator", "clock", "files"])]
    p = ToolCallProcessor(tok, lark_grammar(offered, "auto"))
    p([], torch.zeros(len(tok)))
    assert p.error is None


def _steer(tokenizer, processor: ToolCallProcessor, wanted: str, steps: int = 80) -> str:
    """Greedy decoding by a 'model' that wants to write wanted: its next token gets the top logit, and
    the processor decides what is allowed."""
    target = tokenizer.encode(wanted, add_special_tokens=False)
    out: list[int] = []
    for _ in range(steps):
        logits = torch.zeros(len(tokenizer))
        logits[tokenizer.eos_token_id] = 1.0
        if len(out) < len(target):
            logits[target[len(out)]] = 10.0
        token = int(torch.argmax(processor(out, logits)))
        if token == tokenizer.eos_token_id:
            break
        out.append(token)
    return tokenizer.decode(out)


@pytest.mark.parametrize("wanted", [
    'The answer is <tool_call>{"name": "switch", "arguments": {"on": true}}</tool_call>',
    'ok<<tool_call>{"name": "switch", "arguments": {"on": true',
    "I will call <tool_call>",
])
def test_auto_answer_never_opens_a_call_mid_text(tiny_model_dir, wanted: str) -> None:
    """Under "auto" a plain answer that would open <tool_call> mid-text is steered off it: the reply is a
    plain answer with no call attempt in it (parse finds neither a call nor an invalid one)."""
    from transformers import AutoTokenizer

    from llmasos.tools.calling import parse

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = _steer(tok, ToolCallProcessor(tok, lark_grammar([UNIT, SWITCH], "auto")), wanted)
    assert "<tool_call>" not in text and text.startswith(wanted.split("<")[0])
    assert parse(text, resolve([UNIT, SWITCH])) == ([], [], text)


def test_auto_answer_may_still_mention_angle_brackets(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    wanted = "3 < 4 and <tool_cal> is no call"
    assert _steer(tok, ToolCallProcessor(tok, lark_grammar([SWITCH], "auto")), wanted) == wanted


def test_auto_call_at_the_start_is_still_allowed(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    wanted = '<tool_call>{"name": "switch", "arguments": {"on": true}}</tool_call>'
    assert _steer(tok, ToolCallProcessor(tok, lark_grammar([SWITCH], "auto")), wanted) == wanted


@pytest.mark.parametrize(("seed", "question", "made", "starts"), [
    (0, "Eli buys 3 pens at 14 dollars each and pays with 58 dollars. How much change?", "3 * 14 + 58", "58"),
    (1, "Eli buys 3 pens at 14 dollars each and pays with 58 dollars. How much change?", "3 * 14 + 58", "58"),
    (2, "A holiday lasts 18 weeks and 2 days. How many days is that?", "18 * 7", "18 * 7 + 2"),
    (3, "A lease runs for 10 years and 6 months. How many months is that?", "10 * 6", "10"),
    (4, "Ana had 40 cards and gave away 12 and then 9. How many are left?", "12 + 9", "40 - (12 + 9)"),
])
def test_a_repair_schema_forces_its_start_whatever_the_model_prefers(tiny_model_dir, seed: int, question: str,
                                                                      made: str, starts: str) -> None:
    """react's repair narrows the calculator's pattern; under it even random logits write a call whose
    expression starts as the repair says and is still one the calculator takes."""
    from transformers import AutoTokenizer

    from llmasos.apps.react import repair_call
    from llmasos.syscalls.types import ToolCall
    from llmasos.tools.builtin.calculator import ARITHMETIC

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    schema = repair_call(question, ToolCall("1", "calculator", {"expression": made}))
    text = _decode(tok, ToolCallProcessor(tok, lark_grammar([schema], "required"), 120), seed, steps=120)
    call = json.loads(text[len("<tool_call>"):-len("</tool_call>")])
    expression = call["arguments"]["expression"]
    pattern = schema["function"]["parameters"]["properties"]["expression"]["pattern"]
    assert expression.replace(" ", "").startswith(starts.replace(" ", "")), expression
    assert re.match(pattern, expression), expression
    assert re.match(ARITHMETIC, expression)  # a well-formed expression, as the calculator's own pattern says
