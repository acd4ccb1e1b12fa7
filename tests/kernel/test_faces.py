"""The seed's faces are request processes: an ``LLM`` call and an ``Application`` route request each
show up in ps and strace while they run, and are charged to ``KernelConfig.request_caps``."""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest

from llmasos import LLM, Application, KernelConfig
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import QuotaExceeded
from llmasos.syscalls.types import Completion
from tests.conftest import make_kernel


def _poll(fn, timeout: float = 5.0):
    """fn() until it returns something truthy (from a plain thread)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = fn()
        if found:
            return found
        time.sleep(0.002)
    raise AssertionError(f"nothing after {timeout}s")


def _next_or_none(events):
    try:
        return events.receive_nowait()
    except anyio.WouldBlock:
        return None


def test_generate_text_is_a_traced_llm_request_process_within_the_request_budget():
    engine = FakeEngine(step_delay=0.02)
    model = LLM(engine=engine, config=KernelConfig(engine=engine, memory=False,
                                                   request_caps={"token_budget": 6}))
    try:
        engine.enqueue("ready")
        assert model.generate_text("warm up", max_length=5) == "ready"  # boots the private kernel
        runtime = model._runtime
        kernel = runtime.kernel
        events = runtime.portal.call(kernel.tracer.subscribe, None)

        engine.enqueue("one two three four five six seven eight nine ten")
        replies: list[str] = []
        worker = threading.Thread(target=lambda: replies.append(model.generate_text("hi", max_length=100)))
        worker.start()
        (row,) = _poll(lambda: [p for p in runtime.portal.call(kernel.ps) if p.app == "llm"])
        worker.join(10)
        assert row.ppid == 0 and row.state in ("running", "waiting") and row.waiting_on in (None, "llm")
        assert row.caps["token_budget"] == 6
        # the prompt ("hi") takes 1 token of the 6: the reply is cut at 5, though 100 were asked for
        assert replies == ["one two three four five "]
        assert runtime.portal.call(kernel.ps, True) == []  # reaped once answered

        traced = []
        while (event := runtime.portal.call(_next_or_none, events)) is not None:
            traced.append(event)
        (event,) = [e for e in traced if e.pid == row.pid]
        assert event.call.name == "generate" and event.call.max_tokens == 100 and event.error is None
        assert isinstance(event.result, Completion)
        assert event.result.finish_reason == "budget" and event.result.completion_tokens == 5
        assert event.result.prompt_tokens + event.result.completion_tokens == 6

        # a prompt alone over the budget is refused before the model runs, and said so
        steps = len(engine.batches)
        with pytest.raises(QuotaExceeded, match=r"6-token budget, and this prompt alone takes 10"):
            model.generate_text("word " * 10, max_length=5)
        assert runtime.portal.call(kernel.ps, True) == []
        assert len(engine.batches) == steps  # the model never ran for it
        runtime.portal.call(events.close)
    finally:
        model.close()


async def test_an_application_request_is_a_session_process_whose_route_is_its_traced_child(tmp_path):
    engine = FakeEngine(step_delay=0.02, responder=lambda seq: "w " * 50)
    model = LLM(engine=engine)
    app = Application(model, name="shop")

    @app.route("/ask")
    def ask(question):
        return model.generate_text(question, max_length=100)

    async with make_kernel(tmp_path, engine=engine, request_caps={"token_budget": 8}) as k:
        transport = httpx.ASGITransport(app=app.asgi(k))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            with k.tracer.subscribe(None) as events:
                done: list[httpx.Response] = []

                async def ask_once() -> None:
                    done.append(await client.get("/ask", params={"question": "What is an OS?"}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask_once)
                    with anyio.fail_after(5):
                        while not (route := [p for p in k.ps(all=True) if p.app == "shop.ask"]):
                            await anyio.sleep(0.002)
                        while route[0].waiting_on != "llm":  # the route's generate is under way
                            await anyio.sleep(0.002)
                            route = [p for p in k.ps(all=True) if p.app == "shop.ask"]
                    table = {p.pid: p for p in k.ps(all=True)}
                traced = []
                while (event := _next_or_none(events)) is not None:
                    traced.append(event)

            (route,) = route
            session = table[route.ppid]  # the route runs as the child of the request's session process
            assert session.app == "shop" and session.waiting_on == "child" and session.ppid == 0
            assert route.caps["token_budget"] == 8 and session.caps["token_budget"] == 8
            (r,) = done
            # 4 prompt tokens ("What is an OS?") of the 8: the reply is cut at 4 tokens
            assert r.status_code == 200 and r.text == "w w w w "
            assert [e.call.name for e in traced if e.pid == session.pid] == ["spawn", "wait"]
            (gen,) = [e for e in traced if e.pid == route.pid]
            assert gen.call.name == "generate" and gen.call.prompt == "What is an OS?" and gen.error is None
            assert gen.result.finish_reason == "budget" and gen.result.completion_tokens == 4
            assert k.ps(all=True) == []  # both reaped once answered

            # a question alone over the budget: the route's generate is refused (it crashes), a 500
            # that names the quota; the model never runs for it
            steps = len(engine.batches)
            r = await client.get("/ask", params={"question": "word " * 9})
            assert r.status_code == 500
            body = r.json()
            assert body["state"] == "crashed"
            assert body["error"].startswith("llmasos.syscalls.errors.QuotaExceeded: process ")
            assert "8-token budget, and this prompt alone takes 9" in body["error"]
            assert len(engine.batches) == steps
            assert k.ps(all=True) == []
