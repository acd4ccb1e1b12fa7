"""Context paging: with a tiny window, old turns move to notes and a model-written summary leads."""

from __future__ import annotations

from llmasos import App, Kernel
from llmasos.engine.fake import FakeEngine
from llmasos.kernel.paging import SUMMARY_PROMPT

from .conftest import config


def _responder(seq):
    if seq.prompt and seq.prompt.startswith(SUMMARY_PROMPT):
        return "the user counted turns"
    return "ok noted"


async def test_old_turns_are_paged_to_notes_under_a_summary(home):
    app = App("talker")

    @app.main
    async def main(sys):
        for i in range(8):
            await sys.chat(f"turn {i} about apples and pears", max_tokens=8)
        return await sys.context(), await sys.memory.search("turn 0 apples", k=20)

    engine = FakeEngine(context_window=80, responder=_responder)
    async with Kernel(config(home, engine=engine)) as k:
        status = await k.run(app)
    assert status.ok, status.error
    context, notes = status.value
    assert context[0]["kind"] == "summary"
    assert context[0]["content"] == "Summary of the earlier conversation: the user counted turns"
    assert sum(m["tokens"] for m in context[:-1]) + 8 <= 80  # the last prompt fit the window
    assert context[-1] == {"role": "assistant", "content": "ok noted", "tokens": context[-1]["tokens"],
                           "kind": "turn"}
    paged = [n.text for n in notes]
    assert "user: turn 0 about apples and pears" in paged  # still searchable
    assert all("context" in n.tags for n in notes)
    kept = [m["content"] for m in context[1:] if m["role"] == "user"]
    assert kept and kept[-1] == "turn 7 about apples and pears"
    assert not set(kept) & {p.removeprefix("user: ") for p in paged}
    assert any(p.startswith(SUMMARY_PROMPT) for p in engine.prompts)


async def test_a_context_that_fits_is_not_paged(home):
    app = App("short")

    @app.main
    async def main(sys):
        await sys.chat("hi", max_tokens=8)
        return await sys.context()

    async with Kernel(config(home, engine=FakeEngine(context_window=4096))) as k:
        context = (await k.run(app)).value
    assert [m["kind"] for m in context] == ["turn", "turn"]
