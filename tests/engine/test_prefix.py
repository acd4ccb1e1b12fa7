"""The prefix cache (engine/prefix.py): shared prompt prefixes are prefilled once, and greedy output with
the cache equals output without it, token for token."""

from __future__ import annotations

import re

import pytest
import torch

from llmasos.engine.base import Sequence
from llmasos.engine.hf import HFEngine
from llmasos.engine.prefix import PrefixCache, shared_prefix
from llmasos.kernel.config import ConfigError, KernelConfig
from llmasos.kernel.configfile import ConfigFileError, load_config
from llmasos.kernel.sched import SchedLimits
from tests.engine.test_hf import drive, make

TOOLS = ("You are an agent. You may call these tools: calculator(expression) evaluates arithmetic; "
         "clock() tells the time; search(query) looks things up. Answer with one tool call. ")
QUESTIONS = ["What is 17 times 23?", "What time is it?", "Who wrote Hamlet?", "x", "2+2", "Why?"]


def outputs(engine: HFEngine, prompts: list[str], together: bool = True, **params) -> list[list[int]]:
    """Greedy output of each prompt, all started in one step (together) or one after the other."""
    if together:
        seqs = [make(engine, p, **params) for p in prompts]
        drive(engine, seqs)
        return [s.output_ids for s in seqs]
    out = []
    for p in prompts:
        seq = make(engine, p, **params)
        drive(engine, [seq])
        out.append(seq.output_ids)
    return out


def refs(engine: HFEngine) -> int:
    return sum(b.refs for b in engine.prefix._blocks.values())


@pytest.mark.parametrize("native", [True, False], ids=["native", "transformers"])
@pytest.mark.parametrize("chunk", [256, 16], ids=["group", "chunked"])
def test_greedy_output_is_the_same_with_and_without_the_cache(tiny_engine_factory, native: bool, chunk: int) -> None:
    prompts = [TOOLS + q for q in QUESTIONS] + ["an unshared prompt", TOOLS]
    off = tiny_engine_factory(prefix_cache_tokens=0, native_decode=native, prefill_chunk=chunk)
    expected = outputs(off, prompts, together=False)
    assert off.prefix.stats.hits == 0 and off.capacity().resident_tokens == 0
    on = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8, native_decode=native, prefill_chunk=chunk)
    assert outputs(on, prompts, together=False) == expected  # each after the first finds the tool prompt cached
    assert outputs(on, prompts, together=True) == expected  # arrivals together, the cache already warm
    assert on.prefix.stats.hits > 0
    fresh = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8, native_decode=native, prefill_chunk=chunk)
    assert outputs(fresh, prompts, together=True) == expected  # arrivals together, a cold cache
    assert refs(on) == refs(fresh) == 0  # finished sequences hold nothing


@pytest.mark.parametrize("block", [1, 5, 16])
def test_mid_block_boundaries_and_a_prompt_equal_to_the_cached_prefix(tiny_engine_factory, block: int) -> None:
    prompts = [TOOLS, TOOLS, TOOLS[:-7], TOOLS + "Q", TOOLS[:40], TOOLS[:40] + " and"]
    expected = outputs(tiny_engine_factory(prefix_cache_tokens=0), prompts, together=False)
    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=block)
    assert outputs(engine, prompts, together=False) == expected
    # The second copy of TOOLS found all its full blocks but the one holding its last token.
    n = len(make(engine, TOOLS).prompt_ids)
    assert engine.prefix.stats.hits >= (n - 1) // block * block


def test_concurrent_arrivals_prefill_the_common_prefix_once(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8)
    calls = []
    model = engine.model
    forward = model.forward

    def counting(*args, **kw):
        calls.append(int(kw["input_ids"].numel()))
        return forward(*args, **kw)

    model.forward = counting
    try:
        seqs = [make(engine, TOOLS + q, max_tokens=2) for q in QUESTIONS]
        engine.step(seqs)  # every one prefills in this step
    finally:
        del model.forward
    n = len(seqs[0].prompt_ids)
    common = (min(len(s.prompt_ids) for s in seqs) - 1) // 8 * 8
    # one forward pass for the shared blocks, one for the suffixes: nowhere near 6 x the whole prompt
    assert len(calls) == 2 and calls[0] == common
    assert calls[1] < len(seqs) * (n - common + 8)
    assert all(s.output_ids for s in seqs)
    assert engine.prefix.stats.hits == len(seqs) * common
    assert engine.prefix.stats.shared == common // 8  # every shared block is held by all six
    for s in seqs:
        engine.abort(s)
    assert refs(engine) == 0


def test_abort_mid_prefill_and_under_preemption_releases_references(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8, prefill_chunk=8)
    warm = make(engine, TOOLS, max_tokens=1)
    drive(engine, [warm])
    a, b = make(engine, TOOLS + "A long question that takes several chunks to prefill, yes"), make(engine, TOOLS + "b")
    engine.step([a])  # a: its cached prefix, then one chunk of its own
    assert a.engine_state.prefilling and a.engine_state.prefix
    engine.step([b])  # b runs, a stays parked mid-prefill
    engine.abort(a)
    assert all(blk.refs <= 1 for blk in engine.prefix._blocks.values())
    engine.abort(b)
    assert refs(engine) == 0


@pytest.mark.parametrize("resident", [65536, 100], ids=["parked", "dropped-and-recomputed"])
def test_preemption_parking_and_recompute_keep_the_output(tiny_engine_factory, resident: int) -> None:
    """rr with a batch of two parks the others (and at a low resident limit drops their caches, which
    are then recomputed from the prefix cache): the output stays the same."""
    def run(engine: HFEngine) -> list[Sequence]:
        seqs = [make(engine, TOOLS + q, max_tokens=10) for q in QUESTIONS]
        drive(engine, seqs, policy="rr", limits=SchedLimits(max_batch=2, quantum=3))
        return seqs

    expected = [s.output_ids for s in run(tiny_engine_factory(prefix_cache_tokens=0))]
    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8, max_resident_tokens=resident)
    seqs = run(engine)
    assert [s.output_ids for s in seqs] == expected
    assert engine.prefix.stats.hits > 0 and refs(engine) == 0
    assert any(s.engine_state.recomputes for s in seqs) == (resident < 1000)


def test_the_cache_counts_as_resident_and_is_evicted_first(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=8, max_resident_tokens=100)
    prompts = [f"{i} " * 30 for i in range(4)]  # distinct prompts, ~30 tokens each
    expected = outputs(tiny_engine_factory(prefix_cache_tokens=0), prompts, together=False)
    assert outputs(engine, prompts, together=False) == expected
    cap = engine.capacity()
    assert cap.resident_tokens == engine.prefix.tokens <= 100  # only the cache is left, within the limit
    assert cap.prefix is not None and cap.prefix.evicted > 0 and cap.prefix.tokens == engine.prefix.tokens


def test_eviction_is_lru_leaves_first_and_never_a_referenced_block() -> None:
    kv = [(torch.zeros(1, 1, 12, 2), torch.zeros(1, 1, 12, 2))]
    cache = PrefixCache(max_tokens=8, block=4)
    a = cache.insert(list(range(12)), kv, [])  # only two of the three blocks fit
    assert len(a) == 2 and cache.tokens == 8
    b = cache.insert([9] * 12, kv, [])  # everything is referenced: nothing is evicted, nothing added
    assert b == [] and cache.tokens == 8
    cache.release(a)
    c = cache.insert([9] * 12, kv, [])  # a's leaf goes first, then its root
    assert len(c) == 2 and cache.match(list(range(12))) == [] and cache.stats.evicted == 2
    cache.release(c)
    assert cache.shrink(100) == 8 and cache.tokens == 0
    with pytest.raises(AssertionError):
        cache.release(c)


def test_match_never_covers_the_last_token() -> None:
    kv = [(torch.zeros(1, 1, 8, 2), torch.zeros(1, 1, 8, 2))]
    cache = PrefixCache(max_tokens=64, block=4)
    cache.release(cache.insert(list(range(8)), kv, []))
    assert len(cache.match(list(range(8)))) == 1
    assert len(cache.match(list(range(9)))) == 2
    assert cache.match([1]) == [] and cache.match([]) == []


def test_cached_says_what_match_would_cover_without_touching_recency(tiny_engine_factory) -> None:
    """The scheduler's hint (Engine.cached_tokens) counts what a prefill would skip, and changes nothing."""
    kv = [(torch.zeros(1, 1, 12, 2), torch.zeros(1, 1, 12, 2))]
    cache = PrefixCache(max_tokens=64, block=4)
    cache.release(cache.insert(list(range(12)), kv, []))
    cache.release(cache.insert([7] * 12, kv, []))  # the most recently used chain
    order = list(cache._blocks)
    assert cache.cached(list(range(12))) == 8 and cache.cached(list(range(13))) == 12
    assert cache.cached([0, 1, 2, 9, 9]) == 0 and cache.cached([]) == 0
    assert list(cache._blocks) == order  # a hint: the LRU order is unchanged
    assert PrefixCache(max_tokens=0, block=4).cached(list(range(12))) == 0

    engine = tiny_engine_factory(prefix_cache_tokens=4096, prefix_block=4)
    drive(engine, [make(engine, TOOLS + QUESTIONS[0])])
    again = make(engine, TOOLS + QUESTIONS[1])
    assert engine.cached_tokens(again) == len(engine.prefix.match(again.prompt_ids)) * 4 > 0
    again.output_ids.append(1)  # a resumed sequence kept its own cache: nothing to discount
    assert engine.cached_tokens(again) == 0


@pytest.mark.parametrize("kw", [{"max_tokens": -1}, {"max_tokens": "4096"}, {"max_tokens": True},
                                {"max_tokens": 64, "block": 0}, {"max_tokens": 64, "block": 2.5}])
def test_bad_sizes_are_refused(kw) -> None:
    with pytest.raises(ValueError, match="prefix cache"):
        PrefixCache(**kw)


def test_engine_and_kernel_config_refuse_bad_sizes(tiny_engine_factory, tmp_path) -> None:
    with pytest.raises(ValueError, match="prefix cache max_tokens"):
        tiny_engine_factory(prefix_cache_tokens=-5)
    with pytest.raises(ValueError, match="prefix cache block"):
        tiny_engine_factory(prefix_block=0)
    for field, value in (("prefix_cache_tokens", -1), ("prefix_cache_tokens", "big"), ("prefix_block", 0)):
        with pytest.raises(ConfigError, match=field):
            KernelConfig(home=tmp_path, **{field: value})
    assert KernelConfig(home=tmp_path, prefix_cache_tokens=0).prefix_cache_tokens == 0  # 0: off


@pytest.mark.parametrize("text, says", [
    ("prefix_cache_tokens = -1", "[kernel] prefix_cache_tokens must be an integer >= 0"),
    ("prefix_cache_tokens = 'lots'", "prefix_cache_tokens"),
    ("prefix_block = 0", "[kernel] prefix_block must be a positive integer"),
])
def test_the_config_file_refuses_bad_sizes(tmp_path, text: str, says: str) -> None:
    path = tmp_path / "llmasos.toml"
    path.write_text(f"[kernel]\n{text}\n")
    with pytest.raises(ConfigFileError, match=re.escape(says)):
        load_config(path)
    path.write_text("[kernel]\nprefix_cache_tokens = 0\nprefix_block = 32\n")
    config = load_config(path).config
    assert (config.prefix_cache_tokens, config.prefix_block) == (0, 32)


def test_a_budget_under_one_block_turns_the_cache_off(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefix_cache_tokens=4, prefix_block=8)
    outputs(engine, [TOOLS, TOOLS], together=False)
    assert not engine.prefix.enabled and engine.prefix.tokens == 0 and engine.prefix.stats.hits == 0


def test_the_shared_prefix_of_arrivals_is_the_one_that_saves_most() -> None:
    a, b, c = [1] * 9 + [2], [1] * 9 + [3], [7] * 20
    assert shared_prefix([a, b, c], 4) == [1] * 8  # two of three share two blocks; the odd one out
    assert shared_prefix([a, c], 4) == []  # nothing shared
    assert shared_prefix([[1] * 8, [1] * 8], 4) == [1] * 4  # never a prompt's last token
    many = [[5] * 4 + [i] * 8 for i in range(6)]
    assert shared_prefix(many + [a, b], 4) == [5] * 4  # 5 x 4 tokens saved beat 1 x 8
