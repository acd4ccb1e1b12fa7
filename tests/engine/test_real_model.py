"""The embedded default model, end to end (marked slow: the first run converts the GGUF, ~40 s)."""

from __future__ import annotations

import time

import pytest

from llmasos.engine import models
from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.hf import HFEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_engine() -> HFEngine:
    return HFEngine.from_pretrained("smollm2-135m")  # converts into $LLMASOS_HOME once


def run(engine: HFEngine, seqs: list[Sequence]) -> None:
    for s in seqs:
        engine.prepare(s)
    active = list(seqs)
    while active:
        for e in engine.step(active):
            if e.finish_reason:
                active.remove(e.seq)
                engine.abort(e.seq)


def ask(question: str, max_tokens: int = 24) -> Sequence:
    return Sequence(pid=0, params=SamplingParams(max_tokens=max_tokens),
                    messages=[{"role": "user", "content": question}])


def test_converted_once_then_loads_fast(real_engine: HFEngine) -> None:
    spec = models.resolve("smollm2-135m")
    assert spec.ready and (spec.path / "model.safetensors").is_file()
    assert (spec.path / "tokenizer.json").is_file() and (spec.path / "config.json").is_file()
    assert not list(spec.path.parent.glob(".*tmp*"))  # no half-written cache left behind
    t0 = time.monotonic()
    model, tokenizer = models.load("smollm2-135m")
    assert time.monotonic() - t0 < 15
    assert str(model.dtype) == "torch.float32" and sum(p.numel() for p in model.parameters()) > 130e6


def test_greedy_answer_is_sensible(real_engine: HFEngine) -> None:
    seq = ask("What is the capital of France?")
    run(real_engine, [seq])
    assert "Paris" in seq.text and seq.finish_reason == "stop"


def test_batched_equals_alone_and_hf_generate(real_engine: HFEngine) -> None:
    questions = ["What is 2+2?", "Name a color.", "Write one word about the sea."]
    solo = [ask(q, 12) for q in questions]
    for s in solo:
        run(real_engine, [s])
    batch = [ask(q, 12) for q in questions]
    run(real_engine, batch)
    assert [s.output_ids for s in batch] == [s.output_ids for s in solo]
    import torch

    ref = real_engine.model.generate(torch.tensor([solo[0].prompt_ids]), max_new_tokens=12, do_sample=False)
    assert ref[0, len(solo[0].prompt_ids):].tolist() == solo[0].output_ids
