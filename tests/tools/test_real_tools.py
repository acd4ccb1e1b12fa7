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


@pytest.mark.parametrize("max_tokens", [24, 64])
async def test_constrained_calls_are_valid_on_the_default_model(real_engine, tmp_path, max_tokens: int) -> None:
    async with Kernel(KernelConfig(engine=real_engine, home=tmp_path)) as k:
        questions = ["What is 17 * 23?", "What time is it in Paris?", "A box holds 15 eggs. How many in 12 boxes?"]
        replies = await generate_all(k, [Generate(messages=({"role": "user", "content": q},),
                                                  tools=("calculator", "clock"), tool_choice="required",
                                                  max_tokens=max_tokens) for q in questions])
        for c in replies:  # every reply a schema-valid call, closed within max_tokens
            assert c.finish_reason == "tool_calls", c.text
            assert c.completion_tokens <= max_tokens
            call = c.tool_calls[0]
            assert call.name in ("calculator", "clock")
            if call.name == "calculator":
                assert isinstance(call.arguments["expression"], str)


async def test_react_solves_arithmetic_on_the_default_model(real_engine, tmp_path) -> None:
    async with Kernel(KernelConfig(engine=real_engine, home=tmp_path)) as k:
        status = await k.run("react", "What is 17 * 23?")
    assert status.ok, status.error
    assert "391" in status.value
