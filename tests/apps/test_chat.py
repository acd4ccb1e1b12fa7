"""The chat app keeps going whatever it is told (issue 14, finding 4)."""

from __future__ import annotations

from llmasos.engine.fake import FakeEngine
from tests.conftest import make_kernel


async def talk(tmp_path, engine: FakeEngine, lines: list[str], **kwargs) -> tuple[list[str], object]:
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn("chat", **kwargs)
        proc = k.get(pid)
        k.write_stdin(pid, "".join(line + "\n" for line in lines))
        k.close_stdin(pid)
        await proc.done.wait()
        out = "".join(text for _, text in k.output(pid))
        return out.splitlines(), await k.wait(pid)


async def test_a_turn_over_the_context_window_gets_a_one_line_reply_and_the_chat_goes_on(tmp_path):
    engine = FakeEngine(context_window=60)
    engine.enqueue("Hello!")
    replies, status = await talk(tmp_path, engine, ["word " * 200, "hi"], max_tokens=8)
    assert status.state == "exited", status.error
    assert len(replies) == 2
    assert replies[0].startswith("[not answered: that line is too long for the model (")
    assert "context window of 60" in replies[0]
    assert replies[1] == "Hello!"
    assert status.value == 1


async def test_a_conversation_longer_than_the_window_forgets_its_oldest_turns(tmp_path):
    engine = FakeEngine(context_window=60)
    engine.enqueue(*[f"answer {i}" for i in range(8)])
    lines = [f"question number {i} " + "blah " * 8 for i in range(8)]
    replies, status = await talk(tmp_path, engine, lines, max_tokens=8, system="Be brief.")
    assert status.state == "exited", status.error
    assert status.value == 8
    assert replies == [f"answer {i}" for i in range(8)]
    assert engine.prompts[-1].startswith("system: Be brief.")
    assert "question number 0" not in engine.prompts[-1] and "question number 7" in engine.prompts[-1]
