"""Tool calls and the react app on the real default model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

import pytest

from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.calls import Generate

from ..conftest import generate_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_engine():
    from llmasos.engine.hf import HFEngine

    return HFEngine.from_pretrained("smollm2-135m")


async def test_constrained_calls_are_valid_on_the_default_model(real_engine, tmp_path) -> None:
    async with Kernel(KernelConfig(engine=real_engine, home=tmp_path)) as k:
        questions = ["What is 17 * 23?", "What time is it in Paris?", "Add 12 and 30."]
        replies = await generate_all(k, [Generate(messages=({"role": "user", "content": q},),
                                                  tools=("calculator", "clock"), tool_choice="required",
                                                  max_tokens=64) for q in questions])
        calls = 0
        for c in replies:
            # Constrained: a schema-valid call of an offered tool, or (only) a call cut off by max_tokens.
            if c.finish_reason == "length":
                assert c.text.startswith("<tool_call>"), c.text
                continue
            assert c.finish_reason == "tool_calls", c.text
            call = c.tool_calls[0]
            assert call.name in ("calculator", "clock")
            if call.name == "calculator":
                assert isinstance(call.arguments["expression"], str)
            calls += 1
        assert calls >= 2


async def test_react_solves_arithmetic_on_the_default_model(real_engine, tmp_path) -> None:
    async with Kernel(KernelConfig(engine=real_engine, home=tmp_path)) as k:
        status = await k.run("react", "What is 17 * 23?")
    assert status.ok, status.error
    assert "391" in status.value
