"""A batch no request can poison: sampling arguments are checked at the syscall, and a sequence that
still fails inside a step fails alone while the others in its batch finish (issue 13, finding 2 and
the max_tokens=0 / seed=2**70 parts of finding 12)."""

from __future__ import annotations

import math

import anyio
import pytest

from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.errors import EngineError, InvalidArguments
from tests.api.conftest import serving
from tests.conftest import make_kernel

# -- at the syscall ----------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"seed": 2**70}, {"seed": -1}, {"seed": 1.5}, {"seed": True},
    {"temperature": math.nan}, {"temperature": math.inf}, {"temperature": -1e-9}, {"temperature": 1e300},
    {"temperature": "hot"}, {"top_p": math.nan}, {"top_p": 0}, {"stop": (None,)}, {"stop": (1,)},
    {"stop": ("",)}, {"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": 2.0},
])
def test_sampling_params_refuse_what_could_poison_a_batch(fields):
    with pytest.raises(InvalidArguments):
        SamplingParams(**fields)


def test_a_tiny_temperature_is_greedy():
    assert SamplingParams(temperature=1e-40).temperature == 0.0
    assert SamplingParams(temperature=1e-3).temperature == 1e-3
    assert SamplingParams(seed=2**63 - 1).seed == 2**63 - 1


async def test_max_tokens_zero_is_an_error_not_the_default(tmp_path):
    engine = FakeEngine(responder=lambda seq: "w " * 300)
    async with make_kernel(tmp_path, engine=engine) as k:
        async with k.session("test") as sys:
            with pytest.raises(InvalidArguments, match="max_tokens"):
                await sys.generate("hi", max_tokens=0)
            assert (await sys.generate("hi")).completion_tokens == k.config.default_max_tokens  # None: default
    assert engine.batches and all(len(b) == 1 for b in engine.batches)  # the refused call never ran


async def test_hostile_sampling_arguments_over_http_are_client_errors_not_500(tmp_path):
    async with serving(tmp_path) as s:
        for extra in ({"seed": 2**70}, {"temperature": 1e300}, {"max_tokens": 0}, {"stop": [1]}):
            r = await s.http.post("/v1/chat/completions",
                                  json={"messages": [{"role": "user", "content": "hi"}], **extra})
            assert r.status_code in (400, 422), (extra, r.text)  # 422: refused by the request schema
            assert r.json()["error"]["code"] == "InvalidArguments"
        s.engine.enqueue("still fine")
        r = await s.http.post("/v1/chat/completions",
                              json={"messages": [{"role": "user", "content": "hi"}], "temperature": 1e-40})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "still fine"


# -- inside a step: the FakeEngine's per-sequence failure hook ------------------------------------


async def test_one_failing_sequence_is_dropped_from_the_step_and_the_others_finish(tmp_path):
    engine = FakeEngine(responder=lambda seq: f"reply to {seq.prompt} " * 3,
                        fail=lambda seq: ValueError("poisoned row") if seq.prompt == "poison" else None)
    prompts = ["a", "b", "poison", "c", "d"]
    results: dict[str, object] = {}
    async with make_kernel(tmp_path, engine=engine) as k:

        async def one(prompt: str) -> None:
            async with k.session("test") as sys:
                try:
                    results[prompt] = (await sys._trap(Generate(prompt=prompt, max_tokens=50))).text
                except EngineError as exc:
                    results[prompt] = exc

        async with anyio.create_task_group() as tg:
            for p in prompts:
                tg.start_soon(one, p)
    assert isinstance(results["poison"], EngineError) and "poisoned row" in str(results["poison"])
    assert "the other requests in its batch went on" in str(results["poison"])
    for p in "abcd":
        assert results[p] == f"reply to {p} " * 3
    assert max(len(b) for b in engine.batches) == 4  # the innocent four shared their steps


# -- inside a step: the transformers engine, a logits processor that raises --------------------------


def _run(engine, seqs: list[Sequence], steps: int = 64) -> list[Sequence]:
    for seq in seqs:
        engine.prepare(seq)
    live = list(seqs)
    for _ in range(steps):
        if not live:
            break
        events = engine.step(live)
        live = [s for s in live if s not in {e.seq for e in events if e.finish_reason}]
    return seqs


def test_a_raising_logits_processor_fails_only_its_row(tiny_engine_factory):
    def boom(ids: list[int], logits):
        if len(ids) >= 2:
            raise RuntimeError("grammar bug")
        return logits

    alone = _run(tiny_engine_factory(), [Sequence(0, SamplingParams(max_tokens=8), prompt="Hello there")])[0]
    engine = tiny_engine_factory()
    good, bad, tiny = _run(engine, [
        Sequence(1, SamplingParams(max_tokens=8), prompt="Hello there"),
        Sequence(2, SamplingParams(max_tokens=8, logits_processor=boom), prompt="Hello there"),
        Sequence(3, SamplingParams(max_tokens=8, temperature=1e-40), prompt="Hello there"),
    ])
    assert bad.finish_reason == "error" and len(bad.output_ids) == 2
    assert good.output_ids == alone.output_ids and good.text == alone.text  # untouched by its neighbour
    assert tiny.output_ids == alone.output_ids  # a tiny temperature decodes greedily
    assert len(engine.batch) == 0 and not engine.parked  # nothing of the failed row is left behind


async def test_a_raising_logits_processor_fails_only_its_request_in_the_kernel(tmp_path, tiny_engine_factory):
    def boom(ids: list[int], logits):
        raise RuntimeError("grammar bug")

    engine = tiny_engine_factory()
    alone = _run(tiny_engine_factory(), [Sequence(0, SamplingParams(max_tokens=6), prompt="Once upon")])[0]
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        seqs = [Sequence(0, SamplingParams(max_tokens=6, logits_processor=boom if i == 1 else None),
                         prompt="Once upon") for i in range(3)]
        for seq in seqs:
            engine.prepare(seq)
        streams = [k.llm.submit(None, seq) for seq in seqs]
        out: list[object] = [None] * 3

        async def collect(i: int) -> None:
            try:
                out[i] = await streams[i].collect()
            except EngineError as exc:
                out[i] = exc

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(collect, i)
    assert isinstance(out[1], EngineError) and "grammar bug" in str(out[1])
    for i in (0, 2):
        assert out[i].text == alone.text and out[i].finish_reason == alone.finish_reason
