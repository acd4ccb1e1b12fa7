"""The default model's shipped Q4_1 blocks in the native step against its dequantized fp32 model
(marked slow: three real engines, ~40 s)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from llmasos.engine import models, native, quant
from llmasos.engine.hf import HFEngine
from llmasos.engine.native import QuantLinear

from .test_quant_vnni import int8_scheme
from .test_real_model import ask, run

pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "Name three primary colours.",
           "How many legs does a spider have?", "Explain what a CPU does in one sentence.",
           "Give me a synonym for happy.", "What is 12 plus 7?", "Say hello in Spanish."]


@pytest.fixture(scope="module")
def engines() -> tuple[HFEngine, HFEngine]:
    try:
        native.library()
    except native.NativeUnavailable as exc:
        pytest.skip(f"native step unavailable here: {exc}")
    # the second is the default: the file's own format, Q4_1, on fp32 activations (AVX-512 at most);
    # both on an fp32 KV cache: rounding keys to bf16 turns the products' last-bit differences into
    # whole bf16 steps (test_a_bf16_kv_cache_keeps_the_greedy_text compares the cache dtypes)
    os.environ["LLMASOS_NATIVE_ISA"] = "avx512"
    try:
        return (HFEngine.from_pretrained("smollm2-135m", weights="fp32", kv_dtype="fp32"),
                HFEngine.from_pretrained("smollm2-135m", kv_dtype="fp32"))
    finally:
        del os.environ["LLMASOS_NATIVE_ISA"]


@pytest.fixture(scope="module")
def vnni() -> HFEngine:
    """The default engine where the CPU has AVX-512 VNNI: prefill and batches of 8+ rows on int8
    activations."""
    if native.best_isa() != "avx512vnni":
        pytest.skip("no AVX-512 VNNI here")
    return HFEngine.from_pretrained("smollm2-135m")


def test_q4_1_reads_the_files_own_blocks(engines: tuple[HFEngine, HFEngine]) -> None:
    fp32, q = engines
    assert fp32.weights == "fp32" and fp32.native is not None and fp32.native.format == "fp32"
    assert q.weights == "q4_1" and q.native.format == "q4_1" and q.native.head_format == "q8_0"
    spec = models.resolve("smollm2-135m")
    shipped = quant.gguf_matrices(spec.source, 9, 3)
    step_qkv = q.native.per_layer["qkv"][0].numpy()
    assert np.array_equal(step_qkv[:576], shipped["layers.0.q_proj"][1])
    assert np.array_equal(q.native.per_layer["down"][29].numpy(), shipped["layers.29.down_proj"][1])
    assert np.array_equal(q.native.embed.numpy(), shipped["embed"][1])  # the tied head, Q8_0 as shipped
    assert q.native.embed.numel() == 49152 * 612  # 34 bytes per 32 weights, not a dequantized copy


def test_logits_and_greedy_text_match_the_fp32_model(engines: tuple[HFEngine, HFEngine]) -> None:
    fp32, q = engines
    # One decode step after the same prompt: logits within 2e-3 (the fp32 model is the GGUF
    # dequantized; the products differ only in the order of their sums; logits span about ±30).
    outs = _first_logits(engines)
    torch.testing.assert_close(outs[1], outs[0], atol=2e-3, rtol=1e-4)
    # Greedy text on a fixed prompt set: the share of prompts whose 32 tokens are identical.
    same = _greedy_matches(fp32, q)
    print(f"greedy match rate q4_1 vs fp32: {same}/{len(PROMPTS)}")
    assert same >= len(PROMPTS) - 1  # a near-tie may flip one continuation; more is a defect


def test_the_vnni_path_keeps_the_models_perplexity(engines: tuple[HFEngine, HFEngine], vnni: HFEngine) -> None:
    """int8 activations (the decode step's batches of 8+ rows): the shipped blocks' own products to the
    int8 scheme's rounding, and the perplexity of a fixed text, with every layer forced onto them, within
    1 % of the fp32-activation path's (measured 33.27 against 33.14). Greedy text is not compared token
    for token: over 32 tokens this small model's continuations flip on such differences (2 of 10 prompts
    identical), which is why prefill stays on fp32 activations (docs/benchmarks.md)."""
    exact = engines[1]
    assert vnni.native.isa == "avx512vnni" and vnni.weights == "q4_1"
    layers = [m for m in vnni.model.modules() if isinstance(m, QuantLinear)]
    assert {m.isa for m in layers} == {quant.ISAS.index("avx512")}  # prefill: fp32 activations
    rows = vnni.native.per_layer["gate_up"][3].numpy()
    x = np.random.default_rng(0).standard_normal((40, 576)).astype(np.float32)
    try:
        for m in layers:
            m.isa = quant.ISAS.index("avx512vnni")
        got = vnni.model.model.layers[3].mlp.gate_proj(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, int8_scheme(rows[:1536], "q4_1", 576, x), atol=1e-4, rtol=1e-4)
        assert _perplexity(vnni) <= 1.01 * _perplexity(exact)
    finally:
        for m in layers:
            m.isa = quant.ISAS.index("avx512")


TEXT = ("There were four of us - George, and William Samuel Harris, and myself, and Montmorency. We were "
        "sitting in my room, smoking, and talking about how bad we were - bad from a medical point of view "
        "I mean, of course. We were all feeling seedy, and we were getting quite nervous about it.")


@torch.inference_mode()
def _first_logits(engines: tuple[HFEngine, ...]) -> list[torch.Tensor]:
    """Each engine's logits of one decode step after the first prompt."""
    outs = []
    for engine in engines:
        seq = ask(PROMPTS[0], max_tokens=2)
        run(engine, [seq])
        outs.append(engine.native.last_logits()[0].clone())
    return outs


def _greedy_matches(one: HFEngine, other: HFEngine) -> int:
    """How many of the fixed prompts get the same 32 greedy tokens on both engines."""
    same = 0
    for prompt in PROMPTS:
        a, b = ask(prompt, max_tokens=32), ask(prompt, max_tokens=32)
        run(one, [a])
        run(other, [b])
        same += a.output_ids == b.output_ids
    return same


def _perplexity(engine: HFEngine) -> float:
    ids = torch.tensor([engine.tokenizer.encode(TEXT, add_special_tokens=False)])
    logits = engine.model(input_ids=ids).logits[0, :-1].float()
    return float(torch.exp(torch.nn.functional.cross_entropy(logits, ids[0, 1:])))


def test_a_bf16_kv_cache_keeps_the_greedy_text(engines: tuple[HFEngine, HFEngine]) -> None:
    """The default engine's bf16 KV cache against the same weights on an fp32 cache: logits of one decode
    step close, and greedy text equal on the fixed prompt set."""
    _, q = engines
    bf16 = HFEngine(q.model, q.tokenizer, name=q.name, weights=q.weights, kv_dtype="bf16")
    assert bf16.native is q.native and bf16.kv_dtype == "bf16" and q.kv_dtype == "fp32"
    outs = _first_logits((q, bf16))
    diff = float((outs[1] - outs[0]).abs().max())
    print(f"bf16 against fp32 KV: largest logit difference {diff:.4f} (logits span ±{float(outs[0].abs().max()):.1f})")
    assert 0 < diff < 0.25
    same = _greedy_matches(q, bf16)
    print(f"greedy match rate bf16 vs fp32 KV: {same}/{len(PROMPTS)}")
    assert same >= len(PROMPTS) - 1  # a near-tie may flip one continuation; more is a defect
