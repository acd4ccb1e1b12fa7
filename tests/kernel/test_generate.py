"""The generate syscall on the scripted engine: batching across processes, streaming, errors."""

from __future__ import annotations

import threading

import anyio
import pytest

from llmasos import App
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import EngineError, InvalidArguments
from tests.conftest import make_kernel

asker = App("asker")


@asker.main
async def _asker(sys, prompt: str, max_tokens: int = 50, stop: str = "") -> dict:
    c = await sys.generate(prompt, max_tokens=max_tokens, stop=stop or None)
    return {"text": str(c), "finish": c.finish_reason, "prompt": c.prompt_tokens, "out": c.completion_tokens}


async def test_concurrent_generates_share_engine_steps(tmp_path):
    engine = FakeEngine(responder=lambda seq: "one two three four")
    async with make_kernel(tmp_path, engine=engine) as k:
        pids = [await k.spawn(asker, f"q{i}") for i in range(8)]
        results = [(await k.wait(p)).value for p in pids]
    assert all(r["text"] == "one two three four" for r in results)
    # All eight sequences ran in the same forward steps: 4 steps, not 32.
    assert len(engine.batches) == 4
    assert all(sorted(b) == sorted(pids) for b in engine.batches)


async def test_late_arrival_joins_the_running_batch(tmp_path):
    engine = FakeEngine(step_delay=0.01, responder=lambda seq: "w " * 20)
    async with make_kernel(tmp_path, engine=engine) as k:
        first = await k.spawn(asker, "first")
        with anyio.fail_after(5):
            while len(engine.batches) < 5:
                await anyio.sleep(0.005)
        second = await k.spawn(asker, "second")
        await k.wait(first)
        await k.wait(second)
    joined = [b for b in engine.batches if sorted(b) == sorted([first, second])]
    assert joined, "the late sequence never shared a step with the running one"
    assert engine.batches[0] == [first]


async def test_usage_is_accounted_per_process(tmp_path):
    engine = FakeEngine()
    engine.enqueue("a b c")
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn(asker, "three word prompt")
        proc = k.get(pid)
        status = await k.wait(pid)
    assert status.value == {"text": "a b c", "finish": "stop", "prompt": 3, "out": 3}
    assert proc.usage.prompt_tokens == 3 and proc.usage.completion_tokens == 3
    assert proc.usage.syscalls == 1


async def test_max_tokens_and_stop_strings(tmp_path):
    engine = FakeEngine()
    engine.enqueue("one two three four five", "alpha beta. gamma delta")
    async with make_kernel(tmp_path, engine=engine) as k:
        r1 = (await k.run(asker, "x", 2)).value
        r2 = (await k.run(asker, "y", 50, ".")).value
    assert r1["text"] == "one two " and r1["finish"] == "length"
    assert r2["text"] == "alpha beta" and r2["finish"] == "stop"


async def test_context_overflow_names_both_numbers(tmp_path):
    engine = FakeEngine(context_window=10)
    async with make_kernel(tmp_path, engine=engine) as k:
        status = await k.run(asker, "a b c d e f g h", 5)
    assert status.state == "crashed"
    assert "ContextOverflow" in status.error and "8 tokens" in status.error and "max_tokens is 5" in status.error


streamer = App("streamer")


@streamer.main
async def _streamer(sys) -> list:
    pieces = []
    reply = sys.generate(messages=[{"role": "user", "content": "hi"}], stream=True)
    async for text in reply:
        pieces.append(text)
        await sys.write(text)
    return [pieces, reply.completion.text, reply.completion.finish_reason]


async def test_streaming_yields_tokens_as_produced(tmp_path):
    engine = FakeEngine()
    engine.enqueue("Hello there, friend")
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn(streamer)
        status = await k.wait(pid)
    pieces, text, finish = status.value
    assert pieces == ["Hello ", "there, ", "friend"]
    assert text == "Hello there, friend" and finish == "stop"
    assert engine.prompts[-1] == "user: hi"


class _Broken(RuntimeError):
    pass


async def test_engine_failure_is_an_error_in_the_process_not_a_kernel_crash(tmp_path):
    engine = FakeEngine()
    engine.enqueue(_Broken("device lost"))
    catcher = App("catcher")

    @catcher.main
    async def main(sys) -> str:
        try:
            await sys.generate("x")
        except EngineError as exc:
            return str(exc)
        return "no error"

    async with make_kernel(tmp_path, engine=engine) as k:
        assert "device lost" in (await k.run(catcher)).value
        engine.enqueue("still alive")
        assert (await k.run(asker, "again")).value["text"] == "still alive"


async def test_bad_generate_arguments(tmp_path):
    bad = App("bad")

    @bad.main
    async def main(sys, which: str) -> str:
        try:
            if which == "both":
                await sys.generate("x", messages=[{"role": "user", "content": "y"}])
            elif which == "none":
                await sys.generate()
            elif which == "tokens":
                await sys.generate("x", max_tokens=-1)
            elif which == "temp":
                await sys.generate("x", temperature=-0.5)
        except InvalidArguments as exc:
            return str(exc)
        return "accepted"

    async with make_kernel(tmp_path) as k:
        assert "exactly one of a prompt or messages" in (await k.run(bad, "both")).value
        assert "exactly one of a prompt or messages" in (await k.run(bad, "none")).value
        assert "max_tokens must be a whole number of at least 1" in (await k.run(bad, "tokens")).value
        assert "temperature must be a finite number >= 0" in (await k.run(bad, "temp")).value


async def test_a_face_generates_as_a_request_process_through_the_chokepoint(tmp_path):
    engine = FakeEngine()
    engine.enqueue("face reply")
    async with make_kernel(tmp_path, engine=engine) as k:
        assert not hasattr(k, "submit")  # no door into the model beside the syscall
        with k.tracer.subscribe(None) as events:
            async with k.session("tester") as sys:
                listed = [p for p in k.ps() if p.pid == sys.pid]
                completion = await sys.generate("hi")
            event = await events.receive()
        assert listed and listed[0].app == "tester" and listed[0].state == "running"
        assert sys.pid not in k.processes  # reaped when the request ended
    assert completion.text == "face reply"
    assert event.pid == sys.pid and event.call.name == "generate" and event.error is None


async def test_switching_policy_at_run_time(tmp_path):
    async with make_kernel(tmp_path) as k:
        assert k.policy == "fifo"
        with pytest.raises(ValueError, match="unknown scheduling policy"):
            k.set_policy("lottery")


async def test_switching_policy_mid_generation_keeps_every_sequence(tmp_path):
    engine = FakeEngine(step_delay=0.005, responder=lambda seq: "w " * 30)
    async with make_kernel(tmp_path, engine=engine, max_batch=2) as k:
        pids = [await k.spawn(asker, f"q{i}") for i in range(4)]
        with anyio.fail_after(5):
            while len(engine.batches) < 5:
                await anyio.sleep(0.005)
        k.set_policy("rr")
        assert k.policy == "rr"
        results = [(await k.wait(p)).value for p in pids]
    assert all(r["out"] == 30 for r in results)


counter = App("counter")


@counter.main
async def _counter(sys, prompt: str, max_tokens: int, mark: str = "") -> int:
    n = 0
    async for _ in sys.generate(prompt, max_tokens=max_tokens, stream=True):
        n += 1
        if n == 1 and mark:
            FIRST_TOKEN[mark].set()
    return n


FIRST_TOKEN: dict[str, threading.Event] = {}  # mark -> set on that process's first token


async def test_newcomer_gets_its_first_token_before_the_batch_decodes(tmp_path, tiny_engine_factory):
    """TTFT under load is prefill only: the running batch's decode of that step comes after."""
    engine = tiny_engine_factory(max_batch=8, ignore_eos=True)
    FIRST_TOKEN["short"] = first = threading.Event()
    armed, waited = threading.Event(), []
    decode = engine._decode

    def decode_after_newcomer(events):
        # Once armed, the first decode that follows a prefill waits (up to 5 s) for the newcomer's
        # first token: it only comes in time if it was delivered before this decode.
        if armed.is_set() and events and not waited:
            waited.append(first.wait(5))
        decode(events)

    engine._decode = decode_after_newcomer
    async with make_kernel(tmp_path, engine=engine) as k:
        long = await k.spawn(counter, "a long story", 150)
        with anyio.fail_after(10):
            while engine.steps < 3:
                await anyio.sleep(0.01)
        armed.set()
        short = await k.spawn(counter, "hi", 4, "short")
        assert (await k.wait(short)).value == 4
        assert (await k.wait(long)).value == 150
    assert waited == [True]
