"""The model thread: every engine step of a kernel runs on one and the same thread."""

from __future__ import annotations

import threading

import anyio
import pytest

from llmasos import App
from llmasos.engine import worker
from tests.conftest import make_kernel


def test_call_runs_on_the_model_thread_and_inline_from_it():
    assert not worker.on_model_thread()
    assert worker.call(threading.get_ident) == worker.model_thread_id() != threading.get_ident()
    # Nested: a call made from the model thread runs inline instead of deadlocking on itself.
    assert worker.call(worker.call, threading.get_ident) == worker.model_thread_id()


def test_errors_come_back_to_the_caller():
    def boom() -> None:
        raise ValueError("from the model thread")

    with pytest.raises(ValueError, match="from the model thread"):
        worker.call(boom)


async def test_run_keeps_the_event_loop_free():
    gate = threading.Event()

    async def opener() -> None:
        await anyio.sleep(0.05)
        gate.set()  # only possible if the event loop runs while the model thread waits

    async with anyio.create_task_group() as tg:
        tg.start_soon(opener)
        assert await worker.run(gate.wait, 5) is True


async def test_a_cancelled_caller_still_waits_for_the_model_thread():
    """Cancelling a waiter never leaves the engine mid-step behind a caller that thinks it stopped."""
    started, release, done = threading.Event(), threading.Event(), []

    def step() -> str:
        started.set()
        release.wait(5)
        done.append(True)
        return "finished"

    async def releaser() -> None:
        await anyio.to_thread.run_sync(started.wait, 5)
        await anyio.sleep(0.05)
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(releaser)
        with anyio.move_on_after(0.01) as scope:
            assert await worker.run(step) == "finished"
        assert done == [True]  # the wait ended only once the step had
    assert scope.cancel_called


async def test_run_returns_errors_to_the_awaiting_caller():
    def boom() -> None:
        raise KeyError("raised on the model thread")

    with pytest.raises(KeyError, match="raised on the model thread"):
        await worker.run(boom)


asker = App("asker-on-thread")


@asker.main
async def _asker(sys, prompt: str) -> str:
    return str(await sys.generate(prompt, max_tokens=6))


async def test_kernel_steps_the_engine_on_the_model_thread_only(tmp_path, tiny_engine_factory):
    engine = tiny_engine_factory(max_batch=4)
    threads = set()
    step = engine.step

    def recording_step(batch, early=None):
        threads.add(threading.get_ident())
        return step(batch, early)

    engine.step = recording_step
    async with make_kernel(tmp_path, engine=engine) as k:
        pids = [await k.spawn(asker, f"hello {i}") for i in range(3)]
        for pid in pids:
            assert (await k.wait(pid)).state == "exited"
    assert threads == {worker.model_thread_id()}


async def test_kills_free_the_engine_on_the_model_thread_and_nothing_outlives_the_kernel(
        tmp_path, tiny_engine_factory):
    engine = tiny_engine_factory(max_batch=4, ignore_eos=True)
    threads = set()
    abort = engine.abort

    def recording_abort(seq):
        threads.add(threading.get_ident())
        abort(seq)

    engine.abort = recording_abort
    async with make_kernel(tmp_path, engine=engine) as k:
        long_a = await k.spawn(long_writer, "a very long story")
        long_b = await k.spawn(long_writer, "another very long story")
        with anyio.fail_after(10):
            while engine.steps < 3:
                await anyio.sleep(0.01)
        k.kill(long_a)  # mid-generation: its row leaves the batch
        assert (await k.wait(long_a)).state == "killed"
        with anyio.fail_after(10):
            while len(engine.batch) != 1:
                await anyio.sleep(0.01)
        # long_b is still generating when the kernel stops
    assert threads == {worker.model_thread_id()}
    assert len(engine.batch) == 0 and not engine.parked


long_writer = App("long-writer")


@long_writer.main
async def _long_writer(sys, prompt: str) -> str:
    return str(await sys.generate(prompt, max_tokens=200))


def test_capacity_reports_a_count_without_touching_tensors(tiny_engine_factory, monkeypatch):
    """The kernel asks for capacity from its event loop: no torch op may run there."""
    from llmasos.engine.kvbatch import BatchKV
    from tests.engine.test_hf import make

    engine = tiny_engine_factory()
    seq = make(engine, "hello there")
    engine.step([seq])
    held = engine.capacity().resident_tokens

    def no_tensors(self):
        raise AssertionError("capacity() computed from tensors")

    monkeypatch.setattr(BatchKV, "resident_tokens", no_tensors)
    assert engine.capacity().resident_tokens == held == seq.num_tokens - 1
