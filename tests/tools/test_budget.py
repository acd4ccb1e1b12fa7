"""Valid by construction at any budget: on the tiny random model, a constrained call always closes
within max_tokens and validates against its schema; a budget too small for any call is refused up front."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.errors import InvalidArguments
from llmasos.tools.calling import parse, prepare, resolve

from ..conftest import generate_all

WORDS = st.sampled_from(["a", "city", "unit", "n", "items", "note", "when", "x_y"])
LEAVES = st.one_of(
    st.builds(lambda lo, hi: {"type": "string", "minLength": lo, **({"maxLength": lo + hi} if hi is not None else {})},
              st.integers(0, 3), st.none() | st.integers(0, 12)),
    st.builds(lambda lo, span: {"type": "integer", **({"minimum": lo, "maximum": lo + span} if lo is not None else {})},
              st.none() | st.integers(-50, 1000), st.integers(0, 10_000)),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
    st.lists(st.sampled_from(["north", "south", "c", "f", "very-long-option"]), min_size=1, max_size=4,
             unique=True).map(lambda e: {"enum": e}),
)


def _object(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.dictionaries(WORDS, children, min_size=1, max_size=3).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)), unique=True).map(
            lambda req: {"type": "object", "properties": props, "required": req}))


SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(
    _object(inner),
    st.builds(lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra},
              inner, st.integers(0, 2), st.integers(0, 3)),
), max_leaves=5)
PARAMS = _object(SCHEMAS)


def _tool(name: str, params: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": params}}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model's ops stall on a busy CPU with more (0.4 s a step, not 0.03)
    yield tok, AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    torch.set_num_threads(threads)


def _run(tok, model, processor, max_tokens: int, greedy: bool, seed: int) -> str:
    """Decode with the tiny model under processor, as the engine does (greedy or sampled)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    step, cache = tok.encode("call a tool"), None
    with torch.no_grad():
        for _ in range(max_tokens):
            res = model(input_ids=torch.tensor([step]), cache=cache, use_cache=True, logits_to_keep=1)
            cache = res.cache
            logits = processor(out, res.logits[0, -1].float())
            arr = logits.numpy().astype(np.float64)
            if greedy:
                t = int(np.argmax(arr))
            else:  # numpy: small torch ops stall on a busy CPU
                p = np.exp(arr - arr.max())
                t = int(rng.choice(len(p), p=p / p.sum()))
            if t == tok.eos_token_id:
                break
            out.append(t)
            step = [t]
    return tok.decode(out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(params=st.lists(PARAMS, min_size=1, max_size=2), extra=st.integers(0, 10), greedy=st.booleans(),
       seed=st.integers(0, 2**16), choice=st.sampled_from(["required", "auto"]))
def test_every_reply_is_a_valid_call_or_an_answer_within_any_budget(tiny, params, extra, greedy, seed, choice) -> None:
    tok, model = tiny
    tools = [_tool(f"t{i}", p) for i, p in enumerate(params)]
    base = Generate(messages=({"role": "user", "content": "go"},), tools=tuple(tools), tool_choice=choice,
                    temperature=0.0 if greedy else 1.0, seed=seed)
    need = prepare(base, tok, max_tokens=4096).min_tokens
    if choice == "auto":
        assert need == 1  # a one-token answer always fits
    else:
        with pytest.raises(InvalidArguments, match=f"takes {need} tokens"):
            prepare(base, tok, max_tokens=need - 1)
    max_tokens = need + extra
    setup = prepare(base, tok, max_tokens=max_tokens)
    text = _run(tok, model, setup.logits_processor, max_tokens, greedy, seed)
    if choice == "auto" and not text.startswith("<"):
        return  # a plain answer
    assert text.startswith("<tool_call>") and text.endswith("</tool_call>"), (max_tokens, text)
    call = json.loads(text[len("<tool_call>"):-len("</tool_call>")])
    schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == call["name"])
    jsonschema.validate(call["arguments"], schema)
    assert set(call) == {"name", "arguments"}
    calls, errors, _ = parse(text, resolve(tools))  # the kernel's parser accepts it too
    assert len(calls) == 1 and not errors


@pytest.mark.parametrize("max_tokens", [16, 24, 32, 48])
def test_calculator_calls_parse_at_tiny_budgets(tiny, max_tokens: int) -> None:
    tok, model = tiny
    call = Generate(messages=({"role": "user", "content": "17*23"},), tools=("calculator", "clock"),
                    tool_choice="required")
    need = prepare(call, tok, max_tokens=4096).min_tokens
    if max_tokens < need:
        with pytest.raises(InvalidArguments, match="too small for a call"):
            prepare(call, tok, max_tokens=max_tokens)
        return
    setup = prepare(call, tok, max_tokens=max_tokens)
    from llmasos.syscalls.types import Completion

    for seed in range(3):
        text = _run(tok, model, setup.logits_processor, max_tokens, False, seed)
        setup = prepare(call, tok, max_tokens=max_tokens)
        done = setup.postprocess(Completion(text=text, finish_reason="length"))
        assert done.finish_reason == "tool_calls", text


async def test_a_budget_below_the_shortest_call_is_refused_through_the_kernel(tiny_engine_factory, tmp_path) -> None:
    engine = tiny_engine_factory()
    async with Kernel(KernelConfig(engine=engine, home=tmp_path)) as k:
        msgs = ({"role": "user", "content": "weather?"},)
        async with k.session("test") as sys:
            with pytest.raises(InvalidArguments, match="shortest valid call takes"):
                await sys.generate(messages=list(msgs), tools=["calculator"], tool_choice="required", max_tokens=8)
        [ok] = await generate_all(k, [Generate(messages=msgs, tools=("calculator",), tool_choice="required",
                                               max_tokens=30, temperature=1.0, seed=3)])
        assert ok.finish_reason == "tool_calls" and ok.tool_calls[0].name == "calculator"


@pytest.mark.parametrize("bad", [-1, 0])
async def test_hostile_max_tokens_with_tools_is_a_typed_error(tiny_engine_factory, tmp_path, bad) -> None:
    engine = tiny_engine_factory()
    async with Kernel(KernelConfig(engine=engine, home=tmp_path)) as k:
        async with k.session("test") as sys:
            with pytest.raises(InvalidArguments, match="max_tokens"):
                await sys.generate(prompt="x", tools=["calculator"], tool_choice="required", max_tokens=bad)


async def test_a_token_budget_too_small_for_a_call_is_quota_exceeded_and_a_cut_one_still_closes(
        tiny_engine_factory, tmp_path) -> None:
    from llmasos import App
    from llmasos.syscalls.errors import QuotaExceeded

    engine = tiny_engine_factory()
    request = {"messages": [{"role": "user", "content": "17*23?"}], "tools": ["calculator"],
               "tool_choice": "required", "max_tokens": 64, "temperature": 1.0, "seed": 5}
    async with Kernel(KernelConfig(engine=engine, home=tmp_path)) as k:
        async with k.session("test") as sys:
            prompt = (await sys.generate(**request)).prompt_tokens
        outcomes = {}
        for extra in (10, 40):
            app = App(f"budget{extra}", tools=["calculator"], token_budget=prompt + extra)

            @app.main
            async def main(sys) -> object:
                try:
                    return (await sys.generate(**request)).finish_reason
                except QuotaExceeded as exc:
                    return f"quota: {exc}"

            outcomes[extra] = (await k.run(app)).value
    assert outcomes[10].startswith("quota: ") and "shortest valid tool call takes" in outcomes[10]
    assert outcomes[40] == "tool_calls"  # cut from 64 to 40 by the budget, and closed within it
