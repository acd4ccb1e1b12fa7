"""The AVX-512 VNNI paths of the quantized products (quant.c sections 3b, 8+ rows, and 3c, 1-7 rows):
the activations are quantized to int8 per row and 32-value block, then multiplied by the Q4_1 / Q8_0
blocks in integers.

Stated tolerance: the result is exactly the int8 scheme's (emulated here in float64: within 1e-5 of
the largest output, from fp32 accumulation), and within 1.5 % of the largest output of the dequantized
fp32 model's (the activations' rounding; ~0.5 % typically). Skipped where the CPU has no VNNI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmasos.engine import native, quant

from .test_quant import dequantized_llama


def _vnni_or_skip() -> None:
    try:
        best = native.best_isa()
    except native.NativeUnavailable as exc:
        pytest.skip(f"native step unavailable here: {exc}")
    if best != "avx512vnni":
        pytest.skip(f"no AVX-512 VNNI here ({best})")


def int8_scheme(w_rows: np.ndarray, fmt: str, k: int, x: np.ndarray) -> np.ndarray:
    """x @ W.T as the VNNI path computes it: x rounded per row and block to dx * round(x * 127 / max|x|)
    (round half to even, in float32), times the dequantized blocks, summed in float64."""
    xb = x.astype(np.float32).reshape(x.shape[0], k // 32, 32)
    amax = np.abs(xb).max(-1, keepdims=True)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0).astype(np.float32)
    xq = np.rint(xb * inv).astype(np.float64)
    dx = (amax / np.float32(127)).astype(np.float64)
    back = (xq * dx).reshape(x.shape)
    return back @ quant.dequantize(w_rows, fmt, k).astype(np.float64).T


def matmul(fmt: str, isa: str, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    n, k = rows.shape[0], x.shape[1]
    y = np.zeros((x.shape[0], n), np.float32)
    rc = native.library().quant_matmul(quant.FORMAT_CODES[fmt], quant.ISAS.index(isa), rows.ctypes.data, n, k,
                                       x.ctypes.data, x.shape[0], y.ctypes.data, 2, None, 0)
    assert rc == 0
    return y


@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
def test_vnni_products_are_the_int8_scheme_exactly_and_near_the_fp32_model(fmt: str) -> None:
    _vnni_or_skip()
    rng = np.random.default_rng(3)
    # k: 3 blocks (a short pass of section 3c), 8 (whole passes), 9 (both); rows: 1-7 are section 3c
    # (1-4 and 5-7 in two turns), 8+ section 3b (one group, partial groups, a second pass of groups)
    for k in (96, 256, 288):
        w = rng.standard_normal((70, k)).astype(np.float32)
        rows = quant.quantize(w, fmt)
        for count in (1, 2, 3, 4, 5, 7, 8, 16, 17, 64, 65, 130):
            x = rng.standard_normal((count, k)).astype(np.float32) * rng.uniform(0.01, 10, (count, 1)).astype(np.float32)
            x[0, :32] = 0.0  # an all-zero block (scale 0)
            got = matmul(fmt, "avx512vnni", rows, x)
            scale = np.abs(got).max()
            assert np.abs(got - int8_scheme(rows, fmt, k, x)).max() <= 1e-5 * scale, (k, count)
            fp32 = x.astype(np.float64) @ quant.dequantize(rows, fmt, k).astype(np.float64).T
            assert np.abs(got - fp32).max() <= 0.015 * np.abs(fp32).max(), (k, count)


@pytest.mark.parametrize("rows", [5, 20])
@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
@torch.inference_mode()
def test_a_vnni_step_agrees_with_the_fp32_path(fmt: str, rows: int) -> None:
    """5 rows (section 3c) or 20 (a group of 16 and a partial one, section 3b) through the whole step
    on the VNNI path: logits near the AVX-512 fp32 path's on the same blocks, and mostly the same
    greedy token. This random model's weights are large (std 0.5), so the per-product rounding
    compounds over its layers to a few % of the largest logit; the real model's figures (perplexity, greedy match) are docs/benchmarks.md's."""
    _vnni_or_skip()
    from llmasos.engine.kvbatch import LayerBuffers

    model = dequantized_llama(fmt)
    results = {}
    for isa in ("avx512", "avx512vnni"):
        step = native.NativeLlama(model, fmt, isa=isa)
        keys = LayerBuffers(torch.zeros(rows, 2, 8, 16) for _ in range(2))
        values = LayerBuffers(torch.zeros(rows, 2, 8, 16) for _ in range(2))
        for col in range(3):
            greedy = step.decode([(7 * r + col) % 301 for r in range(rows)], [col] * rows,
                                 [min(r % 3, col) for r in range(rows)], keys, values, col)
        results[isa] = (step.last_logits().clone(), greedy)
    (ref, ref_greedy), (got, greedy) = results["avx512"], results["avx512vnni"]
    assert (got - ref).abs().max() <= 0.06 * ref.abs().max()
    assert not torch.equal(got, ref)  # the VNNI path did run (int8 activations round)
    assert sum(a == b for a, b in zip(greedy, ref_greedy)) >= 0.8 * rows, (greedy, ref_greedy)


@torch.inference_mode()
def test_attached_layers_stay_on_fp32_activations_at_any_row_count() -> None:
    """Prefill (the transformers forward over the attached layers) never takes the int8 path: it flipped
    the default model's greedy answers; only the C decode step does."""
    _vnni_or_skip()
    model = dequantized_llama("q4_1")
    before = model.model.layers[0].mlp.down_proj
    step = native.NativeLlama(model, "q4_1")
    assert step.isa == "avx512vnni" and step.attach(model) == 15
    after = model.model.layers[0].mlp.down_proj
    rows = step.per_layer["down"][0].numpy()
    for count in (7, 8, 33):
        x = torch.randn(count, before.in_features)
        torch.testing.assert_close(after(x), before(x), atol=1e-4, rtol=1e-4)
    x = torch.randn(33, before.in_features)  # and the products it skips would have differed
    int8 = torch.from_numpy(int8_scheme(rows, "q4_1", before.in_features, x.numpy())).float()
    assert not torch.allclose(after(x), int8, atol=1e-4, rtol=1e-4)


def test_the_vnni_path_can_be_forced_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _vnni_or_skip()
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "avx512")
    assert native.best_isa() == "avx512"
    assert native.NativeLlama(dequantized_llama("q8_0"), "q8_0").weights.isa == quant.ISAS.index("avx512")
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "avx512vnni")
    assert native.best_isa() == "avx512vnni"
