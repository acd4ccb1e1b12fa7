"""The memory syscalls, each through a real kernel: key-value, notes, chat and context."""

from __future__ import annotations

from dataclasses import replace

from llmasos import App, Kernel
from llmasos.syscalls.errors import PermissionDenied, QuotaExceeded

from .conftest import config


def _app(body, **manifest):
    app = App("t", **manifest)
    app.main(body)
    return app


async def test_set_get_delete_keys(home):
    async with Kernel(config(home)) as kernel:
        async def main(sys):
            await sys.memory.set("b", [1, (2, 3)])
            await sys.memory.set("a", {"x": None})
            await sys.memory.set("a", {"x": 1})  # overwrite
            got = [await sys.memory.get("a"), await sys.memory.get("b"), await sys.memory.get("zz", 7)]
            keys = await sys.memory.keys()
            gone = [await sys.memory.delete("a"), await sys.memory.delete("a")]
            return got, keys, gone, await sys.memory.keys()
        status = await kernel.run(_app(main))
        assert status.value == ([{"x": 1}, [1, (2, 3)], 7], ["a", "b"], [True, False], ["b"])


async def test_keys_filter_by_prefix(home):
    async with Kernel(config(home)) as kernel:
        async def main(sys):
            for k in ("user.name", "user.age", "task"):
                await sys.memory.set(k, 1)
            return await sys.memory.keys("user.")
        assert (await kernel.run(_app(main))).value == ["user.age", "user.name"]


async def test_namespaces_are_isolated_between_processes(home):
    async with Kernel(config(home)) as kernel:
        async def writer(sys):
            await sys.memory.set("secret", sys.pid)
            return await sys.memory.get("secret")

        async def reader(sys):
            return await sys.memory.get("secret", "none"), await sys.memory.keys()
        assert (await kernel.run(_app(writer))).value is not None
        assert (await kernel.run(_app(reader))).value == ("none", [])


async def test_another_namespace_needs_the_capability(home):
    async with Kernel(config(home)) as kernel:
        async def main(sys):
            try:
                await sys.memory.set("k", 1, namespace="team")
            except PermissionDenied as exc:
                return str(exc)
            return "allowed"
        proc = kernel.start_process(_app(main))
        proc.caps = replace(proc.caps, memory=frozenset())
        status = await kernel.wait(proc.pid)
        assert "may not use memory namespace 'team'" in status.value


async def test_a_granted_namespace_is_shared(home):
    async with Kernel(config(home)) as kernel:
        async def writer(sys):
            await sys.memory.set("plan", "ship it", namespace="team")

        async def reader(sys):
            return await sys.memory.get("plan", namespace="team")
        await kernel.run(_app(writer, memory=["team"]))
        assert (await kernel.run(_app(reader, memory=["team"]))).value == "ship it"


async def test_remember_and_search_rank_notes(home):
    async with Kernel(config(home)) as kernel:
        async def main(sys):
            await sys.memory.remember("the weather in Paris is rainy", tags=["weather"])
            await sys.memory.remember("Paris is the capital of France; Paris has museums", tags=["geo"])
            await sys.memory.remember("bananas are yellow")
            hits = await sys.memory.search("Paris museums", k=5)
            return [(h.text, h.tags) for h in hits], await sys.memory.search("nothing matches", k=5)
        hits, none = (await kernel.run(_app(main))).value
        assert [h[0] for h in hits] == ["Paris is the capital of France; Paris has museums",
                                        "the weather in Paris is rainy"]
        assert hits[0][1] == ("geo",) and none == []


async def test_chat_keeps_a_persistent_context(home):
    async with Kernel(config(home)) as kernel:
        async def main(sys):
            first = await sys.chat("hello", system="be brief")
            second = await sys.chat("again")
            return first.text, second.text, await sys.context()
        first, second, context = (await kernel.run(_app(main))).value
        assert first == "echo: system: be brief\nuser: hello"
        assert second.startswith("echo: system: be brief\nuser: hello\nassistant: echo:")
        assert [(m["role"], m["kind"]) for m in context] == [
            ("system", "turn"), ("user", "turn"), ("assistant", "turn"), ("user", "turn"),
            ("assistant", "turn")]
        assert all(m["tokens"] > 0 for m in context)


async def test_memory_writes_are_durable_across_kernels(home):
    async def main(sys):
        await sys.memory.set("k", "v", namespace="shared")
    async with Kernel(config(home)) as k:
        await k.run(_app(main, memory=["shared"]))

    async def read(sys):
        return await sys.memory.get("k", namespace="shared")
    async with Kernel(config(home)) as k:
        assert (await k.run(_app(read, memory=["shared"]))).value == "v"


async def test_a_kernel_without_memory_says_so(home):
    async def main(sys):
        try:
            await sys.memory.get("k")
        except Exception as exc:
            return type(exc).__name__
    async with Kernel(config(home, memory=False)) as k:
        assert (await k.run(_app(main))).value == "NotSupported"
    assert not (home / "llmasos.db").exists()


async def test_an_in_memory_database_works(tmp_path):
    async def main(sys):
        await sys.memory.set("k", 1)
        return await sys.memory.get("k")
    async with Kernel(config(tmp_path, database="sqlite+aiosqlite:///:memory:")) as k:
        assert (await k.run(_app(main))).value == 1


async def test_chat_counts_against_the_token_budget(home):
    async def main(sys):
        turns = 0
        try:
            while turns < 50:
                await sys.chat(f"turn {turns}", max_tokens=8)
                turns += 1
        except QuotaExceeded as exc:
            return turns, str(exc), len(await sys.context())
    async with Kernel(config(home)) as kernel:
        status = await kernel.run(_app(main, token_budget=40))
    turns, message, context = status.value
    assert 0 < turns < 50 and "40-token budget" in message
    assert context == 2 * turns  # the refused chat appended nothing
