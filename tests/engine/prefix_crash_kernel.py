"""A kernel daemon for the prefix cache's SIGKILL test: processes that share a long prompt prefix.

Usage: ``python prefix_crash_kernel.py HOME WORKDIR TINY_MODEL_DIR CACHE_TOKENS``. The kernel builds the
tiny model's engine itself (so KernelConfig's prefix_cache_tokens reaches it; 0: no cache). The first boot
spawns the texters; a boot after a SIGKILL restores them from HOME's journal and starts none. WORKDIR/shared
appears once two sequences hold the same cached blocks (the moment the test kills it); when every root
process has ended, WORKDIR/results.json holds their values, the cache's counters and what recovery restored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent.parent))

from llmasos import App, Kernel, KernelConfig  # noqa: E402
from llmasos.memory import codec  # noqa: E402

PREFIX = ("You are an agent. You may call these tools: calculator(expression) evaluates arithmetic; "
          "clock() tells the time; search(query) looks things up. Answer with one tool call. ") * 2
QUESTIONS = ["What is 17 times 23?", "What time is it?", "Who wrote Hamlet?", "How far is the moon?",
             "Why is the sky blue?", "2+2"]

texter = App("prefix-crash-texter")


@texter.main
async def _texter(sys, question: str) -> list[str]:
    """Two generates over the shared prefix: the second continues from the first's text, so a kill
    between them replays the first from the journal and reruns the second."""
    first = str(await sys.generate(PREFIX + question, max_tokens=24))
    second = str(await sys.generate(PREFIX + question + first, max_tokens=24))
    return [first, second]


async def main(home: Path, work: Path, model: str, cache_tokens: int) -> None:
    config = KernelConfig(engine=model, home=home, prefix_cache_tokens=cache_tokens, prefix_block=8)
    async with Kernel(config) as k:
        engine = k.models.get().engine
        store = k.memory.store
        boots = json.loads((work / "boots.json").read_text()) if (work / "boots.json").exists() else []
        (work / "boots.json").write_text(json.dumps([*boots, len(k.recovery.restored)]))
        started = len(await store.processes(parents=[0]))
        for question in QUESTIONS[started:]:
            await k.spawn(f"{HERE}:texter", question)
        await k.memory.flush()
        while True:
            if engine.prefix.stats.shared:
                (work / "shared").touch()
            roots = await store.processes(parents=[0])
            if all(r.state not in ("ready", "running", "waiting") for r in roots):
                break
            await anyio.sleep(0.002)
        out = {
            "values": [codec.loads(r.exit_value) for r in sorted(roots, key=lambda r: r.pid)],
            "states": [r.state for r in roots],
            "refs": sum(b.refs for b in engine.prefix._blocks.values()),
            "hits": engine.prefix.stats.hits,
            "restored": len(k.recovery.restored),
        }
    tmp = work / "results.tmp"
    tmp.write_text(json.dumps(out))
    tmp.replace(work / "results.json")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
