"""HFEngine on the tiny random Llama: batching must never change what a sequence produces."""

from __future__ import annotations

import pytest
import torch

from llmasos.engine.base import Engine, SamplingParams, Sequence
from llmasos.engine.hf import HFEngine
from llmasos.kernel.sched import SchedLimits, make_scheduler
from llmasos.syscalls.errors import ContextOverflow

PROMPTS = [
    "Hello there, how are you today?",
    "x",
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest "
    "where nobody will ever find it again, not even the hunters with their very good dogs.",
    "1 2 3",
]


def make(engine: HFEngine, prompt: str | None = None, *, messages=None, pid: int = 0, **params) -> Sequence:
    params.setdefault("max_tokens", 12)
    seq = Sequence(pid=pid, params=SamplingParams(**params), prompt=prompt, messages=messages)
    engine.prepare(seq)
    return seq


def drive(engine: HFEngine, seqs: list[Sequence], joins: dict[int, list[Sequence]] | None = None,
          policy: str | None = None, limits: SchedLimits | None = None) -> list:
    """Step until every sequence finished; with a policy, a scheduler picks each batch."""
    sched = make_scheduler(policy, limits) if policy else None
    active: list[Sequence] = []
    events = []
    pending = dict(joins or {})
    for s in seqs:
        sched.add(s) if sched is not None else active.append(s)
    n = 0
    while active or pending or (sched is not None and len(sched)):
        for s in pending.pop(n, []):
            sched.add(s) if sched is not None else active.append(s)
        batch = sched.schedule(engine.capacity()) if sched is not None else list(active)
        n += 1
        if not batch:
            continue
        for e in engine.step(batch):
            events.append(e)
            if e.finish_reason:
                (sched.remove if sched is not None else active.remove)(e.seq)
                engine.abort(e.seq)
        if sched is not None:
            sched.on_step(batch)
        assert n < 500
    return events


def alone(engine: HFEngine, prompt: str, **params) -> Sequence:
    seq = make(engine, prompt, **params)
    drive(engine, [seq])
    return seq


def test_is_an_engine(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    assert isinstance(engine, Engine)
    assert engine.threaded and engine.context_window == 256
    assert engine.count_tokens("hello world") == 2


def test_batched_equals_alone_token_for_token(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefill_chunk=16)  # the long prompt is prefilled in chunks
    solo = [alone(engine, p).output_ids for p in PROMPTS]
    seqs = [make(engine, p) for p in PROMPTS]
    drive(engine, seqs)
    assert [s.output_ids for s in seqs] == solo
    assert all(len(s.output_ids) == 12 for s in seqs)
    assert engine.capacity().resident_tokens == engine.prefix.tokens  # only the prefix cache stays


def test_joining_mid_batch(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    solo = [alone(engine, p).output_ids for p in PROMPTS]
    seqs = [make(engine, p) for p in PROMPTS]
    drive(engine, seqs[:2], joins={3: [seqs[2]], 5: [seqs[3]]})
    assert [s.output_ids for s in seqs] == solo


def test_abort_frees_the_cache_at_once(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    a, b = make(engine, PROMPTS[0], max_tokens=30), make(engine, PROMPTS[2], max_tokens=30)
    for _ in range(4):
        engine.step([a, b])
    both = engine.capacity().resident_tokens
    assert both == a.num_tokens - 1 + b.num_tokens - 1 + engine.prefix.tokens
    engine.abort(b)
    assert engine.capacity().resident_tokens == a.num_tokens - 1 + engine.prefix.tokens
    engine.abort(b)  # idempotent
    engine.step([a])
    engine.abort(a)
    assert engine.capacity().resident_tokens == engine.prefix.tokens and len(engine.batch) == 0


def test_preempted_sequence_keeps_its_cache(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    solo = [alone(engine, p, max_tokens=24).output_ids for p in PROMPTS]
    seqs = [make(engine, p, pid=i, max_tokens=24) for i, p in enumerate(PROMPTS)]
    drive(engine, seqs, policy="rr", limits=SchedLimits(max_batch=2, quantum=3))
    assert [s.output_ids for s in seqs] == solo
    assert all(s.engine_state.recomputes == 0 for s in seqs)


def test_over_resident_limit_drops_and_recomputes(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(max_resident_tokens=60, prefill_chunk=32)
    solo = [alone(engine, p, max_tokens=24).output_ids for p in PROMPTS]
    seqs = [make(engine, p, pid=i, max_tokens=24) for i, p in enumerate(PROMPTS)]
    drive(engine, seqs, policy="rr", limits=SchedLimits(max_batch=2, quantum=3))
    assert [s.output_ids for s in seqs] == solo
    assert sum(s.engine_state.recomputes for s in seqs) > 0


def test_long_prompt_is_chunked(tiny_engine_factory) -> None:
    engine = tiny_engine_factory(prefill_chunk=8)
    short, long = make(engine, "hi", max_tokens=20), make(engine, PROMPTS[2], max_tokens=4)
    engine.step([short])
    rounds = 0
    while True:
        events = engine.step([short, long])
        rounds += 1
        if long.output_ids:  # the last chunk gives its first token
            assert {e.seq for e in events} == {short, long}
            break
        assert [e.seq for e in events] == [short]  # the short one decodes while the long one prefills
    assert rounds == -(-len(long.prompt_ids) // 8)


def test_stop_strings_end_the_reply_before_them(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    full = alone(engine, PROMPTS[0], max_tokens=20).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip() and stop in full
    seq = make(engine, PROMPTS[0], max_tokens=20, stop=(stop, "never-appears"))
    events = drive(engine, [seq])
    assert seq.text == full[: full.find(stop)]
    assert seq.finish_reason == "stop" and events[-1].finish_reason == "stop"
    assert "".join(e.text for e in events) == seq.text


def test_max_tokens_gives_length(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    seq = make(engine, PROMPTS[1], max_tokens=5)
    events = drive(engine, [seq])
    assert len(seq.output_ids) == 5 and seq.finish_reason == "length"
    assert [e.finish_reason for e in events] == [None] * 4 + ["length"]


def test_eos_ends_the_reply_and_logits_processor_is_honoured(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    eos = engine.tokenizer.eos_token_id
    seen = []

    def force(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        seen.append(list(output_ids))
        forced = torch.full_like(logits, -float("inf"))
        forced[eos if len(output_ids) == 3 else 28] = 0.0  # 28 is ","
        return forced

    other = make(engine, PROMPTS[0], max_tokens=6)
    seq = make(engine, PROMPTS[0], max_tokens=10, logits_processor=force)
    drive(engine, [other, seq])
    assert seq.output_ids == [28, 28, 28, eos]
    assert seq.text == ",,," and seq.finish_reason == "stop"
    assert seen == [[], [28], [28, 28], [28, 28, 28]]
    assert other.output_ids == alone(engine, PROMPTS[0], max_tokens=6).output_ids


def test_sampling_with_a_seed_is_reproducible(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    kw = dict(max_tokens=16, temperature=1.0, top_p=0.9, seed=1234)
    first = alone(engine, PROMPTS[0], **kw).output_ids
    assert alone(engine, PROMPTS[0], **kw).output_ids == first
    seqs = [make(engine, PROMPTS[3]), make(engine, PROMPTS[0], **kw)]
    drive(engine, seqs)
    assert seqs[1].output_ids == first  # its own generator: the batch does not change it
    assert alone(engine, PROMPTS[0], **{**kw, "seed": 99}).output_ids != first
    greedy = alone(engine, PROMPTS[0], max_tokens=16).output_ids
    assert first != greedy


def test_chat_template_is_applied(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    seq = make(engine, messages=[{"role": "user", "content": "hi"}])
    text = engine.tokenizer.decode(seq.prompt_ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    drive(engine, [seq])
    assert len(seq.output_ids) == 12


def test_context_overflow_states_both_numbers(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    prompt = "word " * 200
    n = engine.count_tokens(prompt)
    with pytest.raises(ContextOverflow) as err:
        make(engine, prompt, max_tokens=100)
    assert f"prompt is {n} tokens" in str(err.value) and "max_tokens is 100" in str(err.value)
    assert "256" in str(err.value)
    seq = make(engine, prompt, max_tokens=100, truncate=True)
    assert len(seq.prompt_ids) == 156
    messages = [{"role": "user", "content": "word " * 120}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "the last question"}]
    seq = make(engine, messages=messages, max_tokens=100, truncate=True)
    assert "the last question" in engine.tokenizer.decode(seq.prompt_ids)
    assert len(seq.prompt_ids) <= 156


def test_every_policy_gives_the_same_greedy_text(tiny_engine_factory) -> None:
    engine = tiny_engine_factory()
    solo = [alone(engine, p, max_tokens=10).output_ids for p in PROMPTS]
    for policy in ("fifo", "rr", "priority", "fair"):
        seqs = [make(engine, p, pid=i, max_tokens=10, ) for i, p in enumerate(PROMPTS)]
        for i, s in enumerate(seqs):
            s.priority = -i
        drive(engine, seqs, policy=policy, limits=SchedLimits(max_batch=2, quantum=2))
        assert [s.output_ids for s in seqs] == solo, policy
