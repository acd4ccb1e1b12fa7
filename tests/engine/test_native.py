"""The native decode step (engine/native.py, llama_decode.c): same results as transformers, or a reason."""

from __future__ import annotations

import ctypes
import gc
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmasos.engine import native, nativelib
from llmasos.engine.kvbatch import BatchKV, LayerBuffers, cache_kv, new_cache

from .test_hf import PROMPTS, drive, make


def _library_or_skip() -> ctypes.CDLL:
    try:
        return native.library()
    except native.NativeUnavailable as exc:  # a machine without a C compiler or AVX2
        pytest.skip(f"native step unavailable here: {exc}")


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """native.library() rebuilt from scratch under a temporary LLMASOS_HOME; restored afterwards."""
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    nativelib._load.cache_clear()
    yield tmp_path
    nativelib._load.cache_clear()


def tiny_llama(**overrides) -> LlamaForCausalLM:
    kw = dict(vocab_size=300, hidden_size=64, intermediate_size=136, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              initializer_range=0.5, tie_word_embeddings=True)
    kw.update(overrides)
    torch.manual_seed(1)
    return LlamaForCausalLM(LlamaConfig(**kw)).eval()


LONG = [(i * 37) % 290 + 5 for i in range(200)]  # 200 columns: the attention splits them among threads


@pytest.mark.parametrize(("shape", "prompts"), [
    (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2),  # head_dim 16: 8-wide value sums
     [[5, 17, 200, 42, 7, 9, 8, 1, 2, 3, 4, 5, 6], [3], [250, 11, 12]]),  # > 8 columns: vector exp
    (dict(hidden_size=192, num_attention_heads=3, num_key_value_heads=1),  # head_dim 64: 32-wide sums
     [[5, 17, 200, 42, 7, 9, 8, 1, 2, 3, 4, 5, 6], [3], [250, 11, 12]]),
    (dict(hidden_size=192, num_attention_heads=6, num_key_value_heads=1),  # six heads a kv head: 3 + 3
     [LONG, [3]]),  # one row's columns split in parts and joined; the padded row's first part empty
    (dict(hidden_size=160, num_attention_heads=10, num_key_value_heads=2, head_dim=16),  # 5 = 3 + 2 heads
     [LONG[:131], LONG[7:9]]),
], ids=["head_dim16", "head_dim64", "long-group6", "long-group5"])
@torch.inference_mode()
def test_step_matches_the_transformers_forward_on_a_padded_batch(shape, prompts) -> None:
    _library_or_skip()
    model = tiny_llama(vocab_size=301, **shape)  # a vocabulary not a multiple of 8 is padded inside
    step = native.NativeLlama(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)  # the same column splits on any machine (two per kv head and row here)
    batch = BatchKV()
    for i, p in enumerate(prompts):
        out = model(input_ids=torch.tensor([p]), cache=new_cache(), use_cache=True)
        batch.merge_one(f"row{i}", cache_kv(out.cache))
    lengths, width = batch.lengths(), batch.width
    next_ids = [99, 4, 300][: len(prompts)]
    rows = len(prompts)
    mask = torch.cat([batch.mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
    # transformers on a copy of the same cache, for reference
    ref_cache = new_cache([(k.clone(), v.clone()) for k, v in cache_kv(batch.cache)])
    ref = model(input_ids=torch.tensor([[t] for t in next_ids]), attention_mask=mask,
                position_ids=torch.tensor([[n] for n in lengths]), cache=ref_cache, use_cache=True)
    try:
        greedy = batch.decode_in_place(lambda keys, values, column: step.decode(
            next_ids, lengths, [width - n for n in lengths], keys, values, column))
    finally:
        torch.set_num_threads(threads)
    got = step.last_logits()
    assert got.shape == (rows, 301)
    # 200 positions of a model with large random weights: both sides' float rounding grows to ~3e-4
    # (the per-head attention of session 3 differed as much); a wrong join would be off by ~0.1-1
    tol = 1e-4 if len(prompts[0]) < 100 else 1e-3
    torch.testing.assert_close(got, ref.logits[:, -1], atol=tol, rtol=tol)
    assert greedy == got.argmax(-1).tolist()  # over the real vocabulary only, never a padding column
    assert batch.width == width + 1 and batch.lengths() == [n + 1 for n in lengths]
    assert torch.equal(batch.mask, mask)  # the appended column joins the mask when it is read
    for (k, v), (rk, rv) in zip(cache_kv(batch.cache), cache_kv(ref.cache), strict=True):
        real = mask.bool()[:, None, :, None]  # padding columns hold whatever; compare real ones
        torch.testing.assert_close(k * real, rk * real, atol=tol / 10, rtol=tol / 10)
        torch.testing.assert_close(v * real, rv * real, atol=tol / 10, rtol=tol / 10)


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_engine_paths_agree_token_for_token(tiny_engine_factory, kv_dtype) -> None:
    """Native and transformers decode steps read one cache (a bf16 one rounded once, when stored)."""
    _library_or_skip()
    fast = tiny_engine_factory(kv_dtype=kv_dtype)
    assert fast.native is not None, fast.native_reason
    slow = tiny_engine_factory(native_decode=False, kv_dtype=kv_dtype)
    # mixed: the batch shrinks to one row (native) after steps of three (transformers), and back
    mixed = tiny_engine_factory(native_max_batch=1, kv_dtype=kv_dtype)
    outputs = []
    for engine in (slow, fast, mixed):
        seqs = [make(engine, p, max_tokens=n) for p, n in zip(PROMPTS, (14, 3, 9, 20), strict=True)]
        late = make(engine, "a late arrival", max_tokens=8)
        drive(engine, seqs, joins={4: [late]})
        outputs.append([s.output_ids for s in (*seqs, late)])
    assert outputs[1] == outputs[0]
    assert outputs[2] == outputs[0]


def test_a_decode_only_step_makes_no_torch_call(tiny_engine_factory) -> None:
    """After a step has streamed the weights every cache is cold and each torch call costs ~0.1 ms:
    a step that only decodes the batch, through the native step, must make none (sampled rows too)."""
    _library_or_skip()
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    engine = tiny_engine_factory()
    seqs = [make(engine, PROMPTS[0], max_tokens=12), make(engine, PROMPTS[1], max_tokens=12)]
    for _ in range(3):  # prefill, then a decode step that makes each layer's cache buffer
        engine.step(seqs)
    with Count() as count:
        events = [e for _ in range(3) for e in engine.step(seqs)]
    assert len(events) == 6 and count.ops == []
    with Count() as count:  # a row that samples reads the step's logits; finishing rows leave
        sampled = make(engine, PROMPTS[2], max_tokens=3, temperature=1.0, seed=3)
        drive(engine, [*seqs, sampled])
    assert count.ops and all(s.finish_reason for s in (*seqs, sampled))


def test_weights_are_one_buffer_on_huge_pages_in_the_order_a_step_reads_them() -> None:
    _library_or_skip()
    step = native.NativeLlama(tiny_llama())
    starts = [t.data_ptr() for t in step._keep]
    assert starts == sorted(starts)
    assert len({t.untyped_storage().data_ptr() for t in step._keep}) == 1
    assert starts[0] % nativelib.HUGE_PAGE == 0
    layer0 = [step.per_layer[k][0].data_ptr() for k in ("attn_norm", "qkv", "o", "mlp_norm", "gate_up", "down")]
    assert layer0 == sorted(layer0) and step.lm_head.data_ptr() == starts[-1]


def test_huge_empty_is_aligned_and_advised_where_the_kernel_has_huge_pages() -> None:
    buf = nativelib.huge_empty(3 * nativelib.HUGE_PAGE // 4 + 5)
    assert buf.numel() == 3 * nativelib.HUGE_PAGE // 4 + 5 and buf.dtype == torch.float32
    assert buf.data_ptr() % nativelib.HUGE_PAGE == 0
    buf.fill_(2.0)
    assert float(buf.sum()) == 2.0 * buf.numel()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():  # a Linux kernel built with transparent huge pages takes the advice
        assert nativelib._advise_huge(buf.data_ptr(), buf.numel() * 4)
    assert not nativelib._advise_huge(buf.data_ptr(), 4096)  # less than one huge page: not asked


@torch.inference_mode()
def test_attached_layers_compute_what_the_linear_layers_did() -> None:
    _library_or_skip()
    model = tiny_llama(vocab_size=301)
    step = native.NativeLlama(model)
    before = {name: m for name, m in model.named_modules() if type(m) is torch.nn.Linear}
    assert step.attach(model) == len(before) == 2 * 7 + 1
    after = dict(model.named_modules())
    for name, linear in before.items():
        swapped = after[name]
        assert isinstance(swapped, native.NativeLinear), name
        for rows in (1, 3, 7, 40):  # one-, two- and four-row passes, and a remainder
            x = torch.randn(2, rows, linear.in_features)
            torch.testing.assert_close(swapped(x), linear(x), atol=1e-4, rtol=1e-4, msg=name)
    assert not any(type(m) is torch.nn.Linear for m in model.modules())  # one copy of the weights


def test_native_engine_generates_what_the_plain_model_generates(tiny_model_dir) -> None:
    _library_or_skip()
    from llmasos.engine.hf import HFEngine

    fast = HFEngine.from_pretrained(tiny_model_dir, prefill_chunk=32)
    plain = HFEngine.from_pretrained(tiny_model_dir, prefill_chunk=32, pack_weights=False, native_decode=False,
                                     kv_dtype=fast.kv_dtype)  # (the default: bf16 with the native step)
    assert fast.native is not None and fast.packed_layers > 0 and fast.kv_dtype == "bf16"
    assert any(isinstance(m, native.NativeLinear) for m in fast.model.modules())
    assert not any(isinstance(m, native.NativeLinear) for m in plain.model.modules())
    long_prompt = " ".join(PROMPTS) * 2  # prefilled in 32-token chunks, through the attached layers
    for prompt in [*PROMPTS, long_prompt]:
        a, b = make(fast, prompt, max_tokens=10), make(plain, prompt, max_tokens=10)
        drive(fast, [a])
        drive(plain, [b])
        assert a.output_ids == b.output_ids, prompt


def test_a_model_it_does_not_cover_falls_back_with_the_reason() -> None:
    _library_or_skip()
    step, why = native.for_model(tiny_llama(attention_bias=True))
    assert step is None and "biases" in why
    step, why = native.for_model(tiny_llama(head_dim=12))
    assert step is None and "multiples of 8" in why


def test_one_step_per_model_even_after_packing() -> None:
    _library_or_skip()
    from llmasos.engine.packed import pack_linears, packing_available

    model = tiny_llama()
    first, _ = native.for_model(model)
    assert first is not None
    if packing_available():
        pack_linears(model)
        assert native.for_model(model)[0] is first  # a second engine on the packed model shares it
        with pytest.raises(native.NativeUnavailable, match="not plain Linear"):
            native.NativeLlama(model)


def test_turned_off_by_the_environment(fresh_library, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMASOS_NATIVE", "0")
    with pytest.raises(native.NativeUnavailable, match="LLMASOS_NATIVE=0"):
        native.library()


def test_no_compiler_is_a_reason_not_a_crash(fresh_library, monkeypatch: pytest.MonkeyPatch,
                                             tiny_model_dir) -> None:
    monkeypatch.setenv("CC", str(fresh_library / "no-such-cc"))
    with pytest.raises(native.NativeUnavailable, match="could not run the C compiler"):
        native.library()
    from llmasos.engine.hf import HFEngine

    engine = HFEngine.from_pretrained(tiny_model_dir)  # a model object of its own: nothing cached
    assert engine.native is None and "C compiler" in engine.native_reason
    seq = make(engine, "still works", max_tokens=4)
    drive(engine, [seq])
    assert len(seq.output_ids) == 4


def test_a_compile_error_is_reported(fresh_library, monkeypatch: pytest.MonkeyPatch) -> None:
    cc = fresh_library / "failing-cc"
    cc.write_text("#!/bin/sh\necho 'llama_decode.c:1: error: something broke' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    with pytest.raises(native.NativeUnavailable, match="something broke"):
        native.library()
    assert not list((fresh_library / "native").glob("*.so"))  # nothing half-written left behind


def test_built_once_then_loaded_from_llmasos_home(fresh_library) -> None:
    stale = fresh_library / "native" / "llama_decode-0000000000000000.so"  # an older version's build
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    _library_or_skip()  # builds under the temporary home
    assert not stale.exists()
    built = list((fresh_library / "native").glob("llama_decode-*.so"))
    assert len(built) == 1
    stamp = os.stat(built[0]).st_mtime_ns
    nativelib._load.cache_clear()
    native.library()
    assert os.stat(built[0]).st_mtime_ns == stamp
    assert list((fresh_library / "native").glob("llama_decode-*.so")) == built


def test_the_steps_argmax_follows_numpy_rules() -> None:
    """Greedy tokens come from the C step: first index on ties, NaN counts as largest (numpy's rules,
    which the transformers path follows), and never one of the zero padding columns after the vocab."""
    lib = _library_or_skip()

    def c_argmax(values: list[float], n: int | None = None) -> int:
        row = torch.tensor(values, dtype=torch.float32)
        return lib.llama_argmax(row.data_ptr(), len(values) if n is None else n)

    rng = torch.Generator().manual_seed(0)
    for n in (1, 7, 8, 9, 301):
        row = torch.randn(n, generator=rng).tolist()
        assert c_argmax(row) == int(np.argmax(row))
    assert c_argmax([1.0, 3.0, 3.0, 2.0] * 5) == 1
    assert c_argmax([1.0] * 20 + [5.0] + [5.0] * 3) == 20  # the tie after the vector part
    nan = float("nan")
    assert c_argmax([1.0] * 10 + [nan] + [9.0, nan]) == 10
    assert c_argmax([9.0, 1.0, 2.0, nan]) == 3  # a NaN in the scalar tail
    assert c_argmax([-3.0] * 301 + [0.0] * 3, n=301) == 0  # padding zeros beyond n never win
    assert c_argmax([float("-inf")] * 9) == 0


def test_checked_cache_buffers_are_remembered_weakly_and_lists_checked_every_call() -> None:
    _library_or_skip()
    step = native.NativeLlama(tiny_llama())
    keys = LayerBuffers(torch.zeros(1, 2, 8, 16) for _ in range(2))
    values = LayerBuffers(torch.zeros(1, 2, 8, 16) for _ in range(2))
    step.decode([1], [0], [0], keys, values, 0)
    checked = step._bound
    step.decode([2], [1], [0], keys, values, 1)
    assert checked is not None and step._bound is checked  # not checked again
    probe = weakref.ref(keys[0])
    del keys, values
    gc.collect()
    assert probe() is None  # a finished batch's cache is not kept alive by the step
    keys = [torch.zeros(1, 2, 8, 16) for _ in range(2)]
    values = [torch.zeros(1, 2, 8, 16) for _ in range(2)]
    step.decode([1], [0], [0], keys, values, 0)
    keys[1] = torch.zeros(1, 2, 16, 8).transpose(2, 3)  # a list can change between calls
    with pytest.raises(ValueError, match="contiguous, of one shape and one dtype"):
        step.decode([2], [1], [0], keys, values, 1)


def test_bad_arguments_are_refused_before_the_c_code_runs() -> None:
    _library_or_skip()
    step = native.NativeLlama(tiny_llama())
    keys = [torch.zeros(1, 2, 4, 16) for _ in range(2)]
    values = [torch.zeros(1, 2, 4, 16) for _ in range(2)]
    with pytest.raises(ValueError, match="cannot take column 4"):
        step.decode([1], [4], [0], keys, values, 4)
    with pytest.raises(ValueError, match="token id out of range"):
        step.decode([300], [1], [0], keys, values, 1)
    with pytest.raises(ValueError, match="contiguous"):
        step.decode([1], [1], [0], [k.transpose(2, 3) for k in keys], values, 1)
    with pytest.raises(ValueError, match="contiguous, of one shape and one dtype"):
        step.decode([1], [1], [0], [keys[0], torch.zeros(1, 2, 3, 16)], values, 1)
    for dtypes in ((torch.bfloat16, torch.float32), (torch.float16, torch.float16), (torch.int16, torch.int16)):
        # keys bf16 and values fp32 would read values as bf16; fp16 and int16 bits are not bf16's
        with pytest.raises(ValueError, match="one dtype, fp32 or bfloat16"):
            step.decode([1], [1], [0], [k.to(dtypes[0]) for k in keys], [v.to(dtypes[1]) for v in values], 1)
    with pytest.raises(ValueError, match="for 2 rows"):
        step.decode([1, 2], [1, 1], [0, 0], keys, values, 1)
    with pytest.raises(ValueError, match="first columns within 0..1"):
        step.decode([1], [1], [2], keys, values, 1)
    with pytest.raises(ValueError, match="for 2 layers"):
        step.decode([1], [1], [0], keys[:1], values, 1)
