"""The KV cache's dtype (kv_dtype=, engine/kvbatch.py, llama_decode.c): a bf16 cache is rounded once, when
stored, every attention reads the same stored values, and its results stay close to the fp32 cache's."""

from __future__ import annotations

import pytest
import torch

from llmasos.engine import native
from llmasos.engine.kvbatch import KV_DTYPES, BatchKV, KVDtypeError, cache_kv, check_kv_dtype, new_cache

from .test_hf import PROMPTS, drive, make
from .test_native import LONG, _library_or_skip, tiny_llama

HOSTILE = ("BF16", "fp16", "float16", "bfloat16 ", "", 16, ["bf16"], "x" * 10_000)


def _decode(model, step, prompts, dtype, ids):
    """Prefill prompts into a cache of dtype (the transformers forward), then one native step and the
    same step through transformers on a copy of the cache: (native logits, reference logits, batch, ref
    cache, mask)."""
    batch = BatchKV()
    for i, p in enumerate(prompts):
        out = model(input_ids=torch.tensor([p]), cache=new_cache(dtype=dtype), use_cache=True)
        batch.merge_one(f"row{i}", cache_kv(out.cache))
    lengths, width, rows = batch.lengths(), batch.width, len(prompts)
    mask = torch.cat([batch.mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
    ref = model(input_ids=torch.tensor([[t] for t in ids]), attention_mask=mask,
                position_ids=torch.tensor([[n] for n in lengths]), use_cache=True,
                cache=new_cache([(k.clone(), v.clone()) for k, v in cache_kv(batch.cache)]))
    batch.decode_in_place(lambda keys, values, column: step.decode(
        ids, lengths, [width - n for n in lengths], keys, values, column))
    return step.last_logits().clone(), ref.logits[:, -1], batch, ref.cache, mask


@pytest.mark.parametrize(("shape", "prompts"), [
    (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2), [[5, 17, 200, 42, 7, 9, 8, 1, 2], [3]]),
    (dict(hidden_size=192, num_attention_heads=6, num_key_value_heads=1), [LONG, [3], LONG[:77]]),
], ids=["short", "long-splits"])
@pytest.mark.parametrize("isa", ["avx2", "best"])  # the attention's AVX2 and (where the CPU has it) AVX-512 tiles
@torch.inference_mode()
def test_the_native_step_reads_a_bf16_cache_as_transformers_does(shape, prompts, isa) -> None:
    _library_or_skip()
    model = tiny_llama(vocab_size=301, **shape)
    step = native.NativeLlama(model, isa=None if isa == "best" else isa)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)  # the same column splits on any machine
    try:
        ids = [99, 4, 300][: len(prompts)]
        got, ref, batch, ref_cache, mask = _decode(model, step, prompts, torch.bfloat16, ids)
        got32, ref32, batch32, _, _ = _decode(model, step, prompts, torch.float32, ids)
    finally:
        torch.set_num_threads(threads)
    # Both read the same rounded keys and values: as close as the two paths are on an fp32 cache.
    tol = 1e-4 if len(prompts[0]) < 100 else 1e-3
    torch.testing.assert_close(got, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(got32, ref32, atol=tol, rtol=tol)
    # Against the fp32 cache: bf16 keeps 8 significant bits (relative error <= 2^-9 per value); on this
    # model's large random weights (logits up to ~30) the logits move by up to ~1 % of their range.
    spread = float(got32.abs().max())
    assert float((got - got32).abs().max()) < 0.02 * spread
    assert float((got - got32).abs().max()) > 0  # (the cache really was bf16)
    for (k, v), (rk, rv), (k32, _) in zip(cache_kv(batch.cache), cache_kv(ref_cache), cache_kv(batch32.cache),
                                          strict=True):
        assert k.dtype == v.dtype == rk.dtype == torch.bfloat16 and k32.dtype == torch.float32
        real = mask.bool()[:, None, :, None]
        # the native step's new column is the reference's up to one bf16 rounding step
        torch.testing.assert_close((k.float() * real)[:, :, -1], (rk.float() * real)[:, :, -1], atol=1e-2, rtol=1e-2)
        torch.testing.assert_close((v.float() * real)[:, :, -1], (rv.float() * real)[:, :, -1], atol=1e-2, rtol=1e-2)
    # Layer 0's new key does not depend on the cache: the C rounding is torch's, bit for bit.
    k0, k0_32 = cache_kv(batch.cache)[0][0][:, :, -1], cache_kv(batch32.cache)[0][0][:, :, -1]
    assert torch.equal(k0, k0_32.to(torch.bfloat16))


@torch.inference_mode()
def test_a_transformers_forward_stores_the_cache_dtype_and_reads_what_it_stored() -> None:
    model = tiny_llama()
    cache = new_cache(dtype=torch.bfloat16)
    model(input_ids=torch.tensor([[5, 6, 7, 8]]), cache=cache, use_cache=True)
    (k, v), = cache_kv(cache)[:1]
    assert k.dtype == v.dtype == torch.bfloat16
    # a second chunk appends into the bf16 buffer and attends over the stored, rounded values: the same
    # logits as the whole prompt in one forward (which also attends over rounded values)
    out = model(input_ids=torch.tensor([[9, 10]]), cache=cache, use_cache=True)
    whole = model(input_ids=torch.tensor([[5, 6, 7, 8, 9, 10]]), cache=new_cache(dtype=torch.bfloat16), use_cache=True)
    torch.testing.assert_close(out.logits[:, -1], whole.logits[:, -1], atol=1e-4, rtol=1e-4)
    assert cache_kv(cache)[0][0].dtype == torch.bfloat16 and cache_kv(cache)[0][0].shape[2] == 6
    plain = new_cache()  # no dtype: the model's (fp32), as before
    model(input_ids=torch.tensor([[5, 6]]), cache=plain, use_cache=True)
    assert cache_kv(plain)[0][0].dtype == torch.float32


def test_the_engine_default_and_the_prefix_cache_share_one_dtype(tiny_engine_factory) -> None:
    _library_or_skip()
    bf16, fp32 = tiny_engine_factory(), tiny_engine_factory(kv_dtype="fp32")
    assert bf16.kv_dtype == "bf16" and fp32.kv_dtype == "fp32"
    assert tiny_engine_factory(native_decode=False).kv_dtype == "fp32"  # transformers would widen it each step
    assert tiny_engine_factory(native_decode=False, kv_dtype="bf16").kv_dtype == "bf16"  # asked: as asked
    prompt = " ".join(PROMPTS)  # long enough for whole prefix blocks
    outputs = []
    for engine in (bf16, fp32):
        first, again = make(engine, prompt, max_tokens=12), make(engine, prompt, max_tokens=12)
        drive(engine, [first])
        assert engine.prefix.stats.blocks > 0
        block = next(iter(engine.prefix._blocks.values()))
        assert block.kv[0][0].dtype == KV_DTYPES[engine.kv_dtype]  # blocks held in the cache's dtype
        drive(engine, [again])  # from the prefix cache: the same tokens as computing it
        assert engine.prefix.stats.hits > 0 and again.output_ids == first.output_ids
        outputs.append(first.output_ids)
    # the tiny model's logits are nearly flat (random weights), so bf16 may pick another token; the first
    # few agree
    assert outputs[0][:3] == outputs[1][:3]


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_wrong_kv_dtype_is_refused_everywhere(bad, tiny_engine_factory) -> None:
    from llmasos.api.llm import LLM
    from llmasos.kernel.config import ConfigError, KernelConfig

    with pytest.raises(KVDtypeError, match="kv_dtype must be one of fp32, bf16"):
        check_kv_dtype(bad)
    with pytest.raises(KVDtypeError, match="fp32, bf16"):
        tiny_engine_factory(kv_dtype=bad)
    with pytest.raises(ConfigError, match="kv_dtype is one of fp32, bf16"):
        KernelConfig(kv_dtype=bad)
    with pytest.raises(KVDtypeError, match="fp32, bf16"):
        LLM.from_pretrained(None, kv_dtype=bad)


def test_kernel_config_and_llm_take_a_kv_dtype(tmp_path) -> None:
    from llmasos.api.llm import LLM
    from llmasos.kernel.config import KernelConfig
    from llmasos.kernel.configfile import load_config

    assert KernelConfig().kv_dtype is None and KernelConfig(kv_dtype="fp32").kv_dtype == "fp32"
    assert LLM.from_pretrained(None, kv_dtype="bf16").kv_dtype == "bf16"
    toml = tmp_path / "llmasos.toml"
    toml.write_text('[kernel]\nkv_dtype = "fp32"\n')
    assert load_config(toml).config.kv_dtype == "fp32"
    toml.write_text('[kernel]\nkv_dtype = "int4"\n')
    with pytest.raises(Exception, match="kv_dtype"):
        load_config(toml)


async def test_a_kernel_builds_its_engine_with_the_configured_kv_dtype(tiny_model_dir, tmp_path) -> None:
    _library_or_skip()
    from llmasos.kernel import Kernel, KernelConfig

    kernel = Kernel(KernelConfig(engine=str(tiny_model_dir), kv_dtype="fp32", memory=False, home=tmp_path))
    await kernel.boot()
    try:
        assert kernel.engine.kv_dtype == "fp32"
    finally:
        await kernel.shutdown()
