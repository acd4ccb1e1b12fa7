"""Quantized weights in the native step (engine/quant.py, quant.c): the dequantized model's results,
on every instruction-set path this CPU has, and the GGUF file's own blocks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmasos.engine import native, quant
from llmasos.engine.kvbatch import BatchKV, cache_kv, new_cache

from .test_hf import PROMPTS, drive, make

ENGINE_DIR = Path(native.__file__).parent
FORMATS = ("q4_1", "q8_0", "bf16")


def _best_or_skip() -> str:
    try:
        return native.best_isa()
    except native.NativeUnavailable as exc:
        pytest.skip(f"native step unavailable here: {exc}")


def _isas() -> list[str]:
    try:
        best = native.best_isa()
    except native.NativeUnavailable:
        return ["scalar"]
    return list(quant.ISAS[: quant.ISAS.index(best) + 1])


def dequantized_llama(fmt: str, **overrides) -> LlamaForCausalLM:
    """A tiny random Llama whose fp32 weights are exactly what its fmt blocks hold (the reference)."""
    kw = dict(vocab_size=301, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              initializer_range=0.5, tie_word_embeddings=True)
    kw.update(overrides)
    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(**kw)).eval()
    head = "q8_0" if fmt == "q4_1" else fmt
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                f = head if "embed" in name or "lm_head" in name else fmt
                p.copy_(torch.from_numpy(quant.dequantize(quant.quantize(p.numpy(), f), f, p.shape[1])))
    return model


# Tolerance, stated: logits of the quantized step within 2e-4 (absolute and relative) of the fp32
# forward of the dequantized model: the same products, summed in another order (the fp32 step's own
# test uses 1e-4 on logits of the same size, ~±10 with these large random weights).
TOL = 2e-4


def _fp32_activation_paths() -> list[tuple[str, str]]:
    """(format, isa) pairs whose products keep fp32 activations: all but VNNI's Q4_1 and Q8_0, which
    quantize them to int8 at any row count (test_quant_vnni.py)."""
    return [(f, i) for i in _isas() for f in FORMATS if not (i == "avx512vnni" and f != "bf16")]


@pytest.mark.parametrize(("fmt", "isa"), _fp32_activation_paths())
@torch.inference_mode()
def test_step_matches_the_dequantized_model(fmt: str, isa: str) -> None:
    _best_or_skip()
    model = dequantized_llama(fmt)
    step = native.NativeLlama(model, fmt, isa=isa)
    prompts = [[5, 17, 200, 42, 7, 9, 8, 1, 2, 3, 4, 5, 6], [3], [250, 11, 12], [7, 8], [9]]  # 5 rows: 4 + 1
    batch = BatchKV()
    for i, p in enumerate(prompts):
        out = model(input_ids=torch.tensor([p]), cache=new_cache(), use_cache=True)
        batch.merge_one(f"row{i}", cache_kv(out.cache))
    lengths, width, rows = batch.lengths(), batch.width, len(prompts)
    next_ids = [99, 4, 300, 0, 150]
    mask = torch.cat([batch.mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
    ref_cache = new_cache([(k.clone(), v.clone()) for k, v in cache_kv(batch.cache)])
    ref = model(input_ids=torch.tensor([[t] for t in next_ids]), attention_mask=mask,
                position_ids=torch.tensor([[n] for n in lengths]), cache=ref_cache, use_cache=True)
    greedy = batch.decode_in_place(lambda keys, values, column: step.decode(
        next_ids, lengths, [width - n for n in lengths], keys, values, column))
    got = step.last_logits()
    assert got.shape == (rows, 301)
    torch.testing.assert_close(got, ref.logits[:, -1], atol=TOL, rtol=TOL)
    assert greedy == got.argmax(-1).tolist()


@pytest.mark.parametrize("fmt", FORMATS)
@torch.inference_mode()
def test_attached_layers_read_the_same_blocks(fmt: str) -> None:
    """On the fp32-activation paths (at most AVX-512; the VNNI path's int8 activations have their own
    tolerance, test_quant_vnni.py), the attached layers' products are the dequantized model's."""
    _best_or_skip()
    isa = _isas()[min(len(_isas()), 3) - 1]
    model = dequantized_llama(fmt)
    step = native.NativeLlama(model, fmt, isa=isa)
    before = {name: m for name, m in model.named_modules() if type(m) is torch.nn.Linear}
    assert step.attach(model) == len(before) == 2 * 7 + 1
    after = dict(model.named_modules())
    for name, linear in before.items():
        assert isinstance(after[name], native.QuantLinear), name
        for rows in (1, 5, 33):
            x = torch.randn(rows, linear.in_features)
            torch.testing.assert_close(after[name](x), linear(x), atol=1e-4, rtol=1e-4, msg=name)


def test_engine_generates_what_the_dequantized_model_generates(tiny_model_dir, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through HFEngine (prefill on QuantLinear layers, decode in the step), greedy text equals the
    plain transformers engine's on the dequantized weights, for every format, on the fp32-activation
    paths (LLMASOS_NATIVE_ISA=avx512 keeps a VNNI CPU off int8 activations)."""
    _best_or_skip()
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "avx512")
    from llmasos.engine.hf import HFEngine

    for fmt in FORMATS:
        fast = HFEngine.from_pretrained(tiny_model_dir, prefill_chunk=32, weights=fmt)
        assert fast.native is not None and fast.native.format == fmt, fast.native_reason
        head = "q8_0" if fmt == "q4_1" else fmt
        plain = HFEngine.from_pretrained(tiny_model_dir, pack_weights=False, native_decode=False,
                                         kv_dtype=fast.kv_dtype)  # (one cache dtype on both sides)
        with torch.no_grad():
            for name, p in plain.model.named_parameters():
                if p.dim() == 2:
                    f = head if "embed" in name or "lm_head" in name else fmt
                    p.copy_(torch.from_numpy(quant.dequantize(quant.quantize(p.numpy(), f), f, p.shape[1])))
        for prompt in [*PROMPTS, " ".join(PROMPTS) * 2]:
            a, b = make(fast, prompt, max_tokens=8), make(plain, prompt, max_tokens=8)
            drive(fast, [a])
            drive(plain, [b])
            assert a.output_ids == b.output_ids, (fmt, prompt)


def test_quantizers_round_trip_and_follow_ggml() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    for fmt, worst in (("q4_1", 1 / 15 / 2), ("q8_0", 1 / 127 / 2), ("bf16", 2.0**-8)):
        rows = quant.quantize(w, fmt)
        assert rows.shape == (5, quant.row_bytes(fmt, 64)) and rows.dtype == np.uint8
        back = quant.dequantize(rows, fmt, 64)
        span = np.abs(w).max() * 2  # a step of the block's range, at most
        assert np.abs(back - w).max() <= worst * span * 1.01
        assert np.array_equal(quant.quantize(back, fmt), rows)  # dequantized blocks quantize to themselves
    block = np.linspace(-1, 2, 32, dtype=np.float32)[None]
    q = quant.quantize(block, "q4_1")[0]
    assert q[4] & 15 == 0 and q[4 + 15] >> 4 == 15  # min -> 0, max -> 15, low nibbles first
    assert quant.quantize(np.full((1, 32), 0.0, np.float32), "q8_0").tolist() == [[0] * 34]


def test_bad_formats_and_sizes_are_refused_with_the_choices() -> None:
    _best_or_skip()
    with pytest.raises(quant.WeightFormatError, match="q4_1, q8_0, bf16, fp32"):
        quant.check_format("int4")
    with pytest.raises(quant.WeightFormatError):
        quant.check_format(None)
    with pytest.raises(quant.WeightFormatError, match="multiple of 32"):
        quant.quantize(np.zeros((2, 48), np.float32), "q4_1")
    from transformers import LlamaConfig as C

    torch.manual_seed(0)
    odd = LlamaForCausalLM(C(vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                             num_attention_heads=3, num_key_value_heads=1)).eval()
    step, why = native.for_model(odd, "q4_1")
    assert step is None and "multiples of 32" in why and "fp32" in why
    assert native.for_model(odd, "fp32")[0] is not None  # the fp32 step still covers it
    with pytest.raises(native.NativeUnavailable, match="instruction set"):
        native.NativeLlama(dequantized_llama("q8_0"), "q8_0", isa="avx1024")


def test_the_environment_forces_the_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _best_or_skip()
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "scalar")
    assert native.best_isa() == "scalar"
    step = native.NativeLlama(dequantized_llama("q4_1"), "q4_1")
    assert step.isa == "scalar" and step.weights.isa == 0
    monkeypatch.setenv("LLMASOS_NATIVE_ISA", "sse9")
    with pytest.raises(native.NativeUnavailable, match="LLMASOS_NATIVE_ISA"):
        native.best_isa()


def test_every_kernel_path_is_clean_under_asan_and_ubsan(tmp_path) -> None:
    """quant.c built with AddressSanitizer and UndefinedBehaviorSanitizer, every format on every
    instruction set this CPU runs, checked against double-precision sums (tests/engine/quant_harness.c)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "harness"
    build = subprocess.run([cc, "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fopenmp", "-O1",
                            "-g", f"-I{ENGINE_DIR}", str(Path(__file__).with_name("quant_harness.c")),
                            str(ENGINE_DIR / "quant.c"), str(ENGINE_DIR / "quant_vnni.c"), "-o", str(exe), "-lm"], capture_output=True, text=True)
    if build.returncode != 0 and "asan" in build.stderr.lower():
        pytest.skip(f"this compiler has no sanitizer runtime: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                          env={"ASAN_OPTIONS": "detect_leaks=1", "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    for isa in _isas():
        for fmt in FORMATS:
            assert f"{isa} {fmt} ok" in done.stdout.replace("\n", " "), lines


def test_kernel_config_and_llm_take_a_weight_format() -> None:
    from llmasos.api.llm import LLM
    from llmasos.kernel.config import ConfigError, KernelConfig

    assert KernelConfig().weights is None and KernelConfig(weights="q4_1").weights == "q4_1"
    for bad in ("Q4_1", "int4; rm -rf /", 4, "x" * 10_000):
        with pytest.raises(ConfigError, match="q4_1, q8_0, bf16, fp32"):
            KernelConfig(weights=bad)
        with pytest.raises(quant.WeightFormatError, match="q4_1, q8_0, bf16, fp32"):
            LLM.from_pretrained(None, weights=bad)
    assert LLM("some-model", weights="bf16").weights == "bf16"


async def test_a_kernel_builds_its_engine_in_the_configured_format(tiny_model_dir, tmp_path) -> None:
    _best_or_skip()
    from llmasos.kernel import Kernel, KernelConfig

    kernel = Kernel(KernelConfig(engine=str(tiny_model_dir), weights="q8_0", memory=False, home=tmp_path))
    await kernel.boot()
    try:
        assert kernel.engine.weights == "q8_0" and kernel.engine.native.format == "q8_0"
    finally:
        await kernel.shutdown()


def test_engine_refuses_an_unknown_format_and_defaults_to_fp32_without_a_gguf(tiny_engine_factory) -> None:
    _best_or_skip()
    for bad in ("int4", 4, ""):
        with pytest.raises(quant.WeightFormatError, match="q4_1, q8_0, bf16, fp32"):
            tiny_engine_factory(weights=bad)
    engine = tiny_engine_factory()  # a transformers directory: nothing shipped quantized
    assert engine.weights == "fp32" and engine.native.format == "fp32"
    assert tiny_engine_factory(weights="fp32").native is engine.native  # one step per model and format


@pytest.mark.slow  # ~35 s here: a sanitized build and a child process loading torch
def test_the_whole_step_is_clean_under_asan_and_ubsan(tmp_path) -> None:
    """llama_decode.c and quant.c together, built with the sanitizers and driven from Python (libasan
    preloaded): every weight format on every instruction set this CPU runs, on fp32 and bf16 KV caches
    (tests/engine/asan_step.py)."""
    _best_or_skip()
    gcc = shutil.which("gcc")
    libs = [subprocess.run([gcc, f"-print-file-name={lib}"], capture_output=True, text=True, check=False).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")] if gcc else []
    if not libs or not all(Path(lib).is_absolute() and Path(lib).exists() for lib in libs):
        pytest.skip("gcc's sanitizer runtimes are not installed")
    import os
    import sys

    env = {**os.environ, "LLMASOS_HOME": str(tmp_path), "LD_PRELOAD": " ".join(libs),
           "ASAN_OPTIONS": "detect_leaks=0", "CC": gcc}  # (CPython's own allocations are not ours)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("asan_step.py"))], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for isa in _isas():
        for fmt in FORMATS:
            assert f"{fmt} {isa} ok" in done.stdout, done.stdout
    assert f"fp32 {_isas()[-1]} ok" in done.stdout


def test_an_adapter_on_a_gguf_model_never_decodes_from_the_base_files_blocks(tmp_path):
    """BASE+ADAPTER merges the adapter into the weights: the native step must read those (fp32 by
    default, or re-quantized when asked), never the base GGUF's own blocks."""
    import json

    from llmasos.engine import hf

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m",
                                                             "peft_type": "LORA"}))
    assert str(hf._gguf_source("smollm2-135m")).endswith(".gguf")  # the base alone: its file's blocks
    assert hf._gguf_source(f"smollm2-135m+{adapter}") is None


def test_the_gguf_blocks_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    import numpy as np

    from llmasos.engine import hf, quant

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    src = hf._gguf_source("smollm2-135m")
    first = quant.gguf_matrices(src, 9, 3)
    (cached,) = (tmp_path / "models" / "blocks").iterdir()
    assert cached.stat().st_mode & 0o077 == 0  # private to the user, like everything under LLMASOS_HOME
    again = quant.gguf_matrices(src, 9, 3)
    assert again.keys() == first.keys() and all(
        again[k][0] == first[k][0] and np.array_equal(again[k][1], first[k][1]) for k in first)
    cached.write_bytes(b"not a zip file")
    rebuilt = quant.gguf_matrices(src, 9, 3)
    assert np.array_equal(rebuilt["embed"][1], first["embed"][1]) and cached.stat().st_size > 1000
