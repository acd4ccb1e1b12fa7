"""The prefix cache on the embedded default model (slow): greedy output equal with and without it."""

from __future__ import annotations

import pytest

from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.hf import HFEngine
from llmasos.engine.prefix import PrefixCache
from tests.engine.test_prefix import QUESTIONS, TOOLS
from tests.engine.test_real_model import run

pytestmark = pytest.mark.slow


def ask(engine: HFEngine) -> list[list[int]]:
    seqs = [Sequence(pid=0, params=SamplingParams(max_tokens=12), messages=[
        {"role": "system", "content": TOOLS * 2}, {"role": "user", "content": q}]) for q in QUESTIONS]
    run(engine, seqs)  # all arrive together
    return [s.output_ids for s in seqs]


def test_shared_system_prompt_same_output_and_mostly_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    """On fp32 activations, where a cached prefix's keys and values differ from a recomputed one's by
    the order of float sums only. (The default decode quantizes activations to int8 on VNNI CPUs, and
    there such a difference can move a rounding and flip a near-tie greedy token: docs/benchmarks.md.)"""
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "avx512")
    engine = HFEngine.from_pretrained("smollm2-135m", prefix_cache_tokens=0)
    expected = ask(engine)
    engine.prefix = PrefixCache(4096, 16)
    assert ask(engine) == expected  # cold: the shared system prompt is prefilled once
    assert ask(engine) == expected  # warm
    assert engine.prefix.stats.hit_rate > 0.6 and engine.prefix.stats.shared == 0
