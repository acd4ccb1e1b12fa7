"""Runs the app on llmasos's scripted FakeEngine: no model is loaded."""

from __future__ import annotations

from llmasos import Kernel
from llmasos.engine.fake import FakeEngine
from hello_store.app import app


async def test_hello_store_asks_the_model_and_returns_its_wish(tmp_path):
    engine = FakeEngine()
    engine.enqueue("Have a bright day.")
    async with Kernel(engine=engine, home=tmp_path) as kernel:
        status = await kernel.run(app, "Ada")
    assert status.state == "exited", status.error
    assert status.value == "Have a bright day."
    assert "wish for Ada" in engine.prompts[0]
