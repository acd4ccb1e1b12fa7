"""oneDNN-packed Linear layers and the in-place KV cache: faster, and the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmasos.engine.hf import HFEngine
from llmasos.engine.kvbatch import BatchKV, SlackLayer, cache_kv, new_cache
from llmasos.engine.packed import PackedLinear, pack_linears, packing_available
from tests.engine.test_hf import PROMPTS, alone

needs_onednn = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN")


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 24), (7, 24), (3, 5, 24)])
def test_packed_linear_computes_what_linear_computes(bias, shape):
    torch.manual_seed(0)
    linear = nn.Linear(24, 40, bias=bias)
    packed = PackedLinear(linear)
    x = torch.randn(*shape)
    with torch.inference_mode():
        assert packed(x).shape == linear(x).shape
        torch.testing.assert_close(packed(x), linear(x), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_pack_linears_swaps_fp32_layers_only():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)))
    assert pack_linears(model) == 2
    assert isinstance(model[0], PackedLinear) and isinstance(model[2][0], PackedLinear)
    assert pack_linears(model) == 2  # idempotent: counts what it holds
    half = nn.Sequential(nn.Linear(8, 8).to(torch.bfloat16))
    assert pack_linears(half) == 0 and type(half[0]) is nn.Linear


@needs_onednn
def test_packed_engine_generates_what_the_plain_model_generates(tiny_model_dir):
    packed = HFEngine.from_pretrained(tiny_model_dir, native_decode=False)  # native: test_native.py
    plain = HFEngine.from_pretrained(tiny_model_dir, pack_weights=False, native_decode=False)
    assert packed.packed_layers > 0 and plain.packed_layers == 0
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    for prompt in PROMPTS:
        assert alone(packed, prompt).output_ids == alone(plain, prompt).output_ids, prompt


def test_slack_layer_appends_in_place_and_equals_concatenation():
    torch.manual_seed(0)
    layer = SlackLayer()
    first = torch.randn(2, 3, 5, 4)
    keys, _ = layer.update(first, first + 1)
    assert keys is first  # the prefill's tensors are kept, not copied
    expected = first
    buffers = set()
    for _ in range(SlackLayer.SLACK + 10):  # past the first buffer's room: it grows once
        new = torch.randn(2, 3, 1, 4)
        keys, values = layer.update(new, new + 1)
        expected = torch.cat([expected, new], dim=-2)
        torch.testing.assert_close(keys, expected, rtol=0, atol=0)
        torch.testing.assert_close(values, expected + 1, rtol=0, atol=0)
        buffers.add(keys.untyped_storage().data_ptr())
    assert len(buffers) == 2  # appends reuse the buffer; only growth reallocates
    assert layer.get_seq_length() == expected.shape[-2]


def test_slack_layer_adopts_keys_replaced_from_outside():
    layer = SlackLayer()
    base = torch.randn(3, 2, 4, 4)
    layer.update(base, base)
    layer.update(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4))
    layer.keys, layer.values = layer.keys[[0, 2]], layer.values[[0, 2]]  # rows leave the batch
    keys, _ = layer.update(torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert keys.shape == (2, 2, 6, 4)
    torch.testing.assert_close(keys[:, :, :4], base[[0, 2]], rtol=0, atol=0)
    assert bool((keys[:, :, 5] == 1).all())


def test_batch_cache_rows_leave_and_join_across_in_place_appends():
    batch = BatchKV()
    kv = [(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)) for _ in range(2)]
    batch.merge_one("a", kv)
    cache = batch.cache
    for _ in range(3):  # decode steps write into the slack
        for i, layer in enumerate(cache.layers):
            layer.update(torch.full((1, 2, 1, 4), float(i)), torch.full((1, 2, 1, 4), float(i)))
    batch.mask = torch.ones(1, 6, dtype=torch.long)
    batch.merge_one("b", [(torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)) for _ in range(2)])
    assert batch.rows == ["a", "b"] and batch.lengths() == [6, 2]
    row_a = batch.extract(0)
    torch.testing.assert_close(row_a[0][0][:, :, :3], kv[0][0], rtol=0, atol=0)
    assert bool((row_a[1][0][:, :, 3:] == 1.0).all())
    assert [k.shape[2] for k, _ in cache_kv(new_cache(row_a))] == [6, 6]


def test_slack_layer_folds_appended_columns_in_only_when_read():
    layer = SlackLayer()
    base = torch.randn(1, 2, 3, 4)
    layer.update(base, base)
    n = layer.reserve(2)
    view = layer._keys
    kbuf, vbuf = layer.buffers()
    for step in range(2):  # what native decode does: write a column, extend, reserve again
        kbuf[:, :, n + step] = float(step + 1)
        vbuf[:, :, n + step] = -float(step + 1)
        layer.extend(1)
        assert layer.reserve(1) == n + step + 1
    assert layer._keys is view  # no views were built for the appended columns yet
    keys, values = layer.keys, layer.values  # reading folds them in
    assert keys.shape[-2] == values.shape[-2] == 5 == layer.get_seq_length()
    torch.testing.assert_close(keys[:, :, :3], base, rtol=0, atol=0)
    assert bool((keys[:, :, 3] == 1).all()) and bool((values[:, :, 4] == -2).all())
    layer.keys, layer.values = keys[:, :, 1:], values[:, :, 1:]  # replaced from outside: adopted
    assert layer.reserve(1) == 4 and layer.keys.shape[-2] == 4
