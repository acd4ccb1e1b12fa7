"""A tool call carries only the keys its schema names (issue 14, finding 11).

JSON Schema allows unlisted keys unless ``additionalProperties`` says otherwise, and OpenAI clients send
schemas without it; the model then filled calls with keys nobody asked for (``"format": "en-US"``). Object
schemas that list their properties are closed before the grammar is compiled and the call is checked.
And tool_choice="auto" lets the model start a call: whether it does is the model's choice (see
docs/tools.md on the default model).
"""

from __future__ import annotations

import json

import pytest
import torch

from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.errors import InvalidArguments
from llmasos.tools.calling import parse, resolve
from llmasos.tools.grammar import (
    OPEN,
    ToolCallProcessor,
    closed,
    lark_grammar,
    ll_tokenizer,
)

from ..conftest import generate_all

# As an OpenAI client sends it: no additionalProperties anywhere.
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"},
        "when": {"type": "object", "properties": {"day": {"type": "string"}}}}}}}
PICK = {"type": "function", "function": {"name": "pick", "parameters": {  # random logits end its strings
    "type": "object", "required": ["city"], "properties": {"city": {"enum": ["Paris", "Berlin"]},
                                                          "rain": {"type": "boolean"}}}}}


def test_object_schemas_are_closed_unless_they_say_otherwise() -> None:
    schema = {"type": "object", "properties": {
        "place": {"type": "object", "properties": {"city": {"type": "string"}}},
        "tags": {"type": "object"},  # a free-form map: no properties listed
        "extra": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "either": {"anyOf": [{"type": "object", "properties": {"a": {}}}, {"type": "string"}]},
        "both": {"allOf": [{"type": "object", "properties": {"a": {}}}, {"properties": {"b": {}}}]},
    }, "$defs": {"Point": {"type": "object", "properties": {"x": {}}}}}
    out = closed(schema)
    props = out["properties"]
    assert out["additionalProperties"] is False and props["place"]["additionalProperties"] is False
    assert "additionalProperties" not in props["tags"]
    assert props["extra"]["additionalProperties"] == {"type": "string"}
    assert props["items"]["items"]["additionalProperties"] is False
    assert props["either"]["anyOf"][0]["additionalProperties"] is False
    assert all("additionalProperties" not in part for part in props["both"]["allOf"])  # each is only a part
    assert out["$defs"]["Point"]["additionalProperties"] is False
    assert "additionalProperties" not in schema and "additionalProperties" not in schema["properties"]["place"]
    assert closed({"type": "object", "properties": {}, "patternProperties": {"^x": {}}}).get(
        "additionalProperties") is None


def test_a_call_with_keys_the_schema_does_not_name_is_refused() -> None:
    [offered] = resolve([WEATHER])
    ok = f'{OPEN}{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}</tool_call>'
    extra = f'{OPEN}{{"name": "get_weather", "arguments": {{"city": "Paris", "format": "en-US"}}}}</tool_call>'
    assert [c.arguments for c in parse(ok, [offered])[0]] == [{"city": "Paris"}]
    calls, errors, _ = parse(extra, [offered])
    assert calls == [] and errors == ["get_weather takes no arguments named format"]


def test_the_grammar_refuses_keys_the_schema_does_not_name(tiny_model_dir) -> None:
    import llguidance
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ll = ll_tokenizer(tok, len(tok))
    schemas = [o.schema for o in resolve([WEATHER])]

    def accepts(text: str) -> bool:
        m = llguidance.LLMatcher(ll, lark_grammar(schemas, "required"))
        return m.consume_tokens(tok.encode(text, add_special_tokens=False)) and not m.is_error()

    assert accepts('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "when": {"day": "mon"}}}')
    assert not accepts('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "format"')
    assert not accepts('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "when": {"day": "mon", "x"')


def test_auto_lets_the_model_start_a_call(tiny_model_dir) -> None:
    """Under "auto" a model whose first choice is "<" writes a whole, valid call."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    processor = ToolCallProcessor(tok, lark_grammar([o.schema for o in resolve([PICK])], "auto"))
    lt = tok.encode("<", add_special_tokens=False)[0]
    gen = torch.Generator().manual_seed(0)
    out: list[int] = []
    for step in range(80):
        logits = torch.randn(len(tok), generator=gen) * 5
        if step == 0:
            logits[lt] = 100.0  # the model chooses to call
        token = int(torch.argmax(processor(out, logits)))
        if token == tok.eos_token_id:
            break
        out.append(token)
    text = tok.decode(out)
    assert processor.error is None and text.startswith(OPEN) and text.endswith("</tool_call>"), text
    call = json.loads(text[len(OPEN):-len("</tool_call>")])
    assert call["name"] == "pick" and call["arguments"]["city"] in ("Paris", "Berlin")
    assert set(call["arguments"]) <= {"city", "rain"}


async def test_a_tool_whose_parameters_are_not_a_schema_is_refused(tmp_path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        for bad in ("x", 5, [1]):
            tool = {"type": "function", "function": {"name": "f", "parameters": bad}}
            async with k.session("test") as sys:
                with pytest.raises(InvalidArguments, match="the parameters of tool 'f' are a JSON Schema object"):
                    await sys._trap(Generate(prompt="hi", tools=(tool,), max_tokens=4))
        deep: dict = {"type": "object", "properties": {}}
        for _ in range(5000):
            deep = {"type": "object", "properties": {"a": deep}}
        with pytest.raises(InvalidArguments, match="the parameters of tool 'f' nest too deeply"):
            resolve([{"type": "function", "function": {"name": "f", "parameters": deep}}])


@pytest.mark.slow
async def test_required_calls_on_the_default_model_carry_only_schema_keys(tmp_path) -> None:
    from llmasos.engine.hf import HFEngine

    clock = {"type": "function", "function": {"name": "get_time", "description": "The local time in a city",
                                              "parameters": {"type": "object", "required": ["city"],
                                                             "properties": {"city": {"type": "string"}}}}}
    async with Kernel(KernelConfig(engine=HFEngine.from_pretrained("smollm2-135m"), home=tmp_path)) as k:
        asks = [Generate(messages=({"role": "user", "content": q},), tools=(clock, WEATHER), tool_choice="required",
                         max_tokens=48, temperature=1.0, seed=seed)
                for q in ("What time is it in Tokyo?", "What is the weather in Paris?") for seed in range(4)]
        replies = await generate_all(k, asks)
    calls = [c.tool_calls[0] for c in replies if c.tool_calls]
    assert len(calls) >= 4, [c.text for c in replies]
    for call in calls:
        allowed = {"get_time": {"city"}, "get_weather": {"city", "when"}}[call.name]
        assert set(call.arguments) <= allowed, call
