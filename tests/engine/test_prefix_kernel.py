"""The prefix cache through the kernel: processes share a prompt prefix, kill releases what they held,
stats and `top` show it, and KernelConfig's fields reach the engine it builds."""

from __future__ import annotations

import anyio

from llmasos import App
from llmasos.client.local import LocalClient
from llmasos.shell.top import Snapshot, render, to_ansi
from tests.conftest import make_kernel
from tests.engine.test_prefix import TOOLS, refs

agent = App("agent")


@agent.main
async def _agent(sys, question: str, max_tokens: int) -> list[int]:
    c = await sys.generate(TOOLS + question, max_tokens=max_tokens)
    return [c.prompt_tokens, c.completion_tokens]


async def test_processes_share_a_prefix_and_kill_releases_it(tmp_path, tiny_engine_factory) -> None:
    engine = tiny_engine_factory(ignore_eos=True, prefix_block=8)
    async with make_kernel(tmp_path, engine=engine) as k:
        pids = [await k.spawn(agent, f"question {i}?", 80) for i in range(6)]
        with anyio.fail_after(20):
            while engine.prefix.stats.shared == 0:  # the six hold the tool prompt's blocks together
                await anyio.sleep(0.01)
        stats = await LocalClient(k).stats()
        assert stats.prefix_blocks > 0 and stats.prefix_shared > 0 and stats.prefix_hit_rate > 0.5
        assert stats.prefix_tokens == stats.prefix_blocks * 8
        frame = to_ansi(render(Snapshot(stats, []), None), 120, color=False)
        assert f"shared prefixes: {stats.prefix_blocks} blocks ({stats.prefix_tokens} tokens)" in frame
        assert all(k.kill(pid) for pid in pids[:3])  # killed mid-generation, holding blocks
        for pid in pids[3:]:
            await k.wait(pid)
        for pid in pids[:3]:
            await k.wait(pid)
    assert refs(engine) == 0  # neither the killed nor the finished hold a block


async def test_kernel_config_reaches_the_engine_it_builds(tmp_path, tiny_model_dir) -> None:
    async with make_kernel(tmp_path, engine=str(tiny_model_dir), prefix_cache_tokens=0, prefix_block=4) as k:
        pid = await k.spawn(agent, "why?", 3)
        assert (await k.wait(pid)).value[1] >= 1
        engine = k.models.get().engine
        assert engine.prefix.max_tokens == 0 and engine.prefix.block == 4 and engine.prefix.tokens == 0
        stats = await LocalClient(k).stats()
        assert stats.prefix_blocks == 0 and stats.prefix_hit_rate == 0
        assert "shared prefixes" not in to_ansi(render(Snapshot(stats, []), None), 120, color=False)


texter = App("prefix-texter")


@texter.main
async def _texter(sys, question: str, max_tokens: int) -> str:
    return str(await sys.generate(TOOLS + question, max_tokens=max_tokens))


async def test_recovery_refills_an_empty_cache_and_gives_the_same_text(tmp_path, tiny_engine_factory) -> None:
    """The cache is memory only: the kernel that recovers the processes (here after a shutdown that left
    them live, as a crash does) has a new engine with an empty cache, and the texts are those of a
    kernel without a cache."""
    questions = [f"question {i}?" for i in range(4)]
    async with make_kernel(tmp_path / "plain", engine=tiny_engine_factory(ignore_eos=True, prefix_cache_tokens=0)) as k:
        pids = [await k.spawn(texter, q, 40) for q in questions]
        expected = [(await k.wait(p)).value for p in pids]
    first = tiny_engine_factory(ignore_eos=True, prefix_block=8)
    async with make_kernel(tmp_path / "home", engine=first) as k:
        pids = [await k.spawn(texter, q, 40) for q in questions]
        with anyio.fail_after(20):
            while first.prefix.stats.shared == 0:
                await anyio.sleep(0.01)
    second = tiny_engine_factory(ignore_eos=True, prefix_block=8)
    async with make_kernel(tmp_path / "home", engine=second) as k:
        assert [(await k.wait(p)).value for p in pids] == expected
    assert second.prefix.stats.hits > 0 and refs(second) == 0
