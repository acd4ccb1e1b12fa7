"""`mem PID` shows the conversation of apps that pass their own messages (chat, react): issue 14, finding 8."""

from __future__ import annotations

import anyio

from tests.tools.test_agent import _call


async def test_mem_shows_a_chats_conversation_after_three_exchanges(shell_at) -> None:
    async with shell_at() as sh:
        sh.engine.enqueue("Paris.", "Madrid.", "Rome.")
        await sh.run("spawn chat", r"\[1\] chat")
        sh.kernel.write_stdin(1, "capital of France?\ncapital of Spain?\ncapital of Italy?\n")
        with anyio.fail_after(5):
            while "Rome." not in "".join(t for _, t in sh.kernel.output(1)):
                await anyio.sleep(0.01)
        await sh.ready()
        sh.line("mem 1")
        await sh.expect(r"context of 1")
        shown = await sh.settle()
        for text in ("system", "capital of France", "Paris.", "capital of Spain", "Madrid.", "capital of Italy",
                     "Rome."):
            assert text in shown, shown
        assert "no context messages" not in shown
        assert "its last model call" in shown


async def test_mem_shows_what_react_said_to_the_model_and_its_tools(shell_at) -> None:
    async with shell_at() as sh:
        sh.engine.enqueue(_call("calculator", '{"expression": "17 * 23"}'), "17 * 23 is 391.")
        await sh.run("spawn react 'What is 17 * 23?'", r"\[1\] exited: '17 \* 23 is 391.'")
        await sh.ready()
        sh.line("mem 1")
        await sh.expect(r"context of 1")
        shown = await sh.settle()
        for text in ("What is 17 * 23?", "-> calculator", "391", "17 * 23 is 391."):
            assert text in shown, shown
