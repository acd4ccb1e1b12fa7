"""Budgets that hold (issue 13, finding 5): tokens reserved up front and enforced per token, carved
out of the parent's, wall-time and model-time budgets, and the partial reply of a cut generate."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from llmasos import App
from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import InvalidArguments, PermissionDenied, QuotaExceeded
from tests.api.conftest import serving
from tests.api.test_openai import sse
from tests.conftest import make_kernel


def _long(seq) -> str:
    return "w " * 500


# -- tokens: reserved up front -------------------------------------------------------------------

burst = App("burst", token_budget=30)


@burst.main
async def _burst(sys, n: int) -> dict:
    got: list[int] = []
    refused: list[str] = []

    async def one() -> None:
        try:
            c = await sys.generate("hi", max_tokens=20)
            got.append(c.prompt_tokens + c.completion_tokens)
        except QuotaExceeded as exc:
            refused.append(str(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return {"got": got, "refused": refused}


async def test_concurrent_generates_cannot_together_exceed_the_token_budget(tmp_path):
    engine = FakeEngine(responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        pid = await k.spawn(burst, 5)
        proc = k.get(pid)
        status = await k.wait(pid)
    assert status.state == "exited", status.error
    assert sum(status.value["got"]) <= 30 and sum(status.value["got"]) == 30
    assert status.value["refused"] and "no tokens left" in status.value["refused"][0]
    assert proc.usage.prompt_tokens + proc.usage.completion_tokens == 30
    assert proc.reserved == 0  # every reservation was released


async def test_the_stream_stops_at_the_token_budget_even_for_an_unreserved_sequence(tmp_path):
    engine = FakeEngine(responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False, request_caps={"token_budget": 10}) as k:
        async with k.session("test") as sys:
            proc = k.processes[sys.pid]
            seq = Sequence(proc.pid, SamplingParams(max_tokens=100), prompt="hi")
            engine.prepare(seq)
            c = await k.llm.submit(proc, seq).collect()  # straight to the loop, past start_generate
            assert c.finish_reason == "budget" and c.prompt_tokens + c.completion_tokens == 10
            assert proc.usage.prompt_tokens + proc.usage.completion_tokens == 10


# -- tokens: carved out of the parent's ------------------------------------------------------------

tree = App("tree", can_spawn=True)


@tree.main
async def _tree(sys, depth: int) -> int:
    """Spawn 3 children (to depth), generate as much as allowed, and return the tokens the subtree used."""
    kids = []
    if depth:
        for _ in range(3):
            try:
                kids.append(await sys.spawn(tree, depth - 1))
            except (PermissionDenied, QuotaExceeded):
                pass
    used = 0
    try:
        c = await sys.generate("go", max_tokens=1000)
        used += c.prompt_tokens + c.completion_tokens
    except QuotaExceeded:
        pass
    for pid in kids:
        status = await sys.wait(pid)
        used += status.value or 0
    return used


async def test_a_process_tree_cannot_exceed_its_roots_token_budget(tmp_path):
    engine = FakeEngine(responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        status = await k.wait(await k.spawn(tree, 3, caps={"token_budget": 20, "can_spawn": True}))
    assert status.state == "exited", status.error
    assert 0 < status.value <= 20
    produced = sum(len(s) for s in engine.batches)  # one token per sequence per step
    prompts = len(engine.prompts)  # each prompt ("go") is one token
    assert produced + prompts <= 20


parent = App("parent", can_spawn=True, token_budget=30)
small = App("small")


@small.main
async def _small(sys) -> str:
    return (await sys.generate("a", max_tokens=100)).text


@parent.main
async def _parent(sys, ask: int | None) -> dict:
    out: dict = {}
    try:
        pid = await sys.spawn(small, caps=None if ask is None else {"token_budget": ask})
    except PermissionDenied as exc:
        return {"refused": str(exc)}
    out["child"] = (await sys.wait(pid)).value
    c = await sys.generate("b", max_tokens=100)
    out["parent"] = (c.completion_tokens, c.finish_reason, c.text)
    return out


async def test_a_child_budget_is_carved_from_the_parent_and_the_unused_part_comes_back(tmp_path):
    engine = FakeEngine()
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        engine.enqueue("x y z", "w " * 100)
        out = (await k.run(parent, None)).value
        # the child (given all 30 left) used 1 + 3; the 26 it did not use came back: 1 prompt + 25 tokens
        assert out["child"] == "x y z"
        assert out["parent"][:2] == (25, "budget") and out["parent"][2] == "w " * 25
        refused = (await k.run(parent, 31)).value["refused"]
        assert "token_budget=31" in refused and "30" in refused


async def test_a_spent_parent_gives_its_children_only_what_is_left(tmp_path):
    spender = App("spender", can_spawn=True, token_budget=20)

    @spender.main
    async def main(sys) -> dict:
        await sys.generate("a", max_tokens=15)  # 1 + 15 of 20
        pid = await sys.spawn(small)
        granted = [p for p in await sys.ps() if p.pid == pid][0].caps["token_budget"]
        return {"granted": granted, "child": (await sys.wait(pid)).value}

    engine = FakeEngine(responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        status = await k.run(spender)
    assert status.state == "exited", status.error
    assert status.value == {"granted": 4, "child": "w " * 3}  # 4 were left: the child's prompt and 3 tokens


# -- wall time and model time --------------------------------------------------------------------

async def test_a_wall_time_budget_kills_the_process_with_a_quota_reason(tmp_path):
    sleeper = App("sleeper", can_spawn=True, time_budget=0.3)

    @sleeper.main
    async def main(sys, spawn: bool) -> None:
        if spawn:
            await sys.spawn(sleeper, False, caps={"time_budget": 100})
        await sys.sleep(30)

    async with make_kernel(tmp_path, memory=False) as k:
        t0 = time.monotonic()
        pid = await k.spawn(sleeper, True)
        while not (kids := [p for p in k.ps() if p.ppid == pid]):
            await anyio.sleep(0.005)
        (child,) = kids
        assert child.caps["time_budget"] <= 0.3  # a child's deadline never passes its parent's
        status = await k.wait(pid, timeout=5)
        child_status = await k.wait(child.pid, timeout=5)
        assert time.monotonic() - t0 < 3
    for s in (status, child_status):
        assert s.state == "killed" and "QuotaExceeded" in s.error and "time_budget" in s.error


async def test_a_request_process_out_of_time_gets_the_partial_reply_then_quota_exceeded(tmp_path):
    engine = FakeEngine(step_delay=0.02, responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False, request_caps={"time_budget": 0.3}) as k:
        async with k.session("test") as sys:
            c = await sys.generate("hi", max_tokens=200)
            assert c.finish_reason == "budget" and 0 < c.completion_tokens < 200 and c.text
            with pytest.raises(QuotaExceeded, match="time_budget"):
                await sys.generate("hi")


async def test_a_model_time_budget_cuts_the_stream_and_refuses_the_next_generate(tmp_path):
    thinker = App("thinker", model_time_budget=0.1)

    @thinker.main
    async def main(sys) -> dict:
        chunks = []
        stream = sys.generate("hi", max_tokens=200, stream=True)
        async for text in stream:
            chunks.append(text)
        try:
            await sys.generate("again")
            again = "ran"
        except QuotaExceeded as exc:
            again = str(exc)
        return {"chunks": len(chunks), "finish": stream.completion.finish_reason, "again": again}

    engine = FakeEngine(step_delay=0.02, responder=_long)
    async with make_kernel(tmp_path, engine=engine, memory=False) as k:
        status = await k.run(thinker)
    assert status.state == "exited", status.error
    assert status.value["finish"] == "budget" and 3 <= status.value["chunks"] < 20
    assert "model_time_budget" in status.value["again"]


# -- the partial reply over HTTP, and hostile caps ---------------------------------------------------


async def test_an_openai_reply_cut_by_the_budget_is_length_with_the_partial_text(tmp_path):
    engine = FakeEngine(responder=_long)
    async with serving(tmp_path, engine=engine, request_caps={"token_budget": 6}) as s:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
        r = (await s.http.post("/v1/chat/completions", json=body)).json()
        assert r["choices"][0]["finish_reason"] == "length" and r["choices"][0]["message"]["content"] == "w " * 4
        events = await sse(s.http, "/v1/chat/completions", {**body, "stream": True})
        deltas = [e["choices"][0] for e in events[:-1] if e["choices"]]
        assert "".join(d["delta"].get("content", "") for d in deltas) == "w " * 4
        assert deltas[-1]["finish_reason"] == "length" and events[-1] == "[DONE]"


@pytest.mark.parametrize("caps", [
    {"token_budget": True}, {"time_budget": math.nan}, {"time_budget": -1}, {"time_budget": "5"},
    {"model_time_budget": math.inf}, {"model_time_budget": False},
])
async def test_hostile_budget_caps_are_refused(tmp_path, caps):
    async with make_kernel(tmp_path, memory=False) as k:
        with pytest.raises(InvalidArguments):
            await k.spawn(small, caps=caps)

