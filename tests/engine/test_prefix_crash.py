"""The prefix cache under a real crash, kill and preemption: outputs stay those of a kernel without it.

A kernel in a subprocess, with the cache on, is SIGKILLed while its processes share cached blocks
mid-generation; restarted on the same home, it recovers them from the journal (with an empty cache) and
their final texts equal those of a run with the cache off (greedy). In-process, processes killed while
they hold shared blocks, and others preempted under rr, leave the survivors' texts unchanged and every
block's reference count at zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from llmasos import App
from tests.conftest import make_kernel
from tests.engine.prefix_crash_kernel import PREFIX, QUESTIONS
from tests.engine.test_prefix import refs

SCRIPT = Path(__file__).with_name("prefix_crash_kernel.py")


def _start(home: Path, work: Path, model: Path, cache_tokens: int) -> subprocess.Popen:
    with open(work / "stderr.log", "a") as err:
        return subprocess.Popen([sys.executable, str(SCRIPT), str(home), str(work), str(model), str(cache_tokens)],
                                stdout=subprocess.DEVNULL, stderr=err)


def _finish(home: Path, work: Path, model: Path, cache_tokens: int) -> dict:
    proc = _start(home, work, model, cache_tokens)
    assert proc.wait(90) == 0, (work / "stderr.log").read_text()[-3000:]
    return json.loads((work / "results.json").read_text())


@pytest.mark.timeout(300)
def test_sigkill_mid_generation_with_shared_blocks_recovers_the_uncached_texts(tmp_path: Path,
                                                                                tiny_model_dir: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "home").mkdir(parents=True)
    expected = _finish(plain / "home", plain, tiny_model_dir, 0)
    assert expected["states"] == ["exited"] * len(QUESTIONS) and expected["hits"] == 0

    work = tmp_path / "cached"
    (work / "home").mkdir(parents=True)
    proc = _start(work / "home", work, tiny_model_dir, 4096)
    try:
        end = time.monotonic() + 90
        while not (work / "shared").exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.001)
        assert (work / "shared").exists(), (work / "stderr.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # mid-generation: two or more sequences hold cached blocks
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and not (work / "results.json").exists()

    out = _finish(work / "home", work, tiny_model_dir, 4096)
    assert json.loads((work / "boots.json").read_text())[0] == 0 and out["restored"] > 0
    assert out["states"] == expected["states"]
    assert out["values"] == expected["values"]  # greedy texts, token for token, as without the cache
    assert out["refs"] == 0


texter = App("prefix-kill-texter")


@texter.main
async def _texter(sys, question: str, max_tokens: int) -> str:
    return str(await sys.generate(PREFIX + question, max_tokens=max_tokens))


def _holding(k, pid: int) -> bool:
    """pid's generate has produced a token and holds blocks of the prefix cache."""
    return any(seq.output_ids and seq.engine_state is not None and seq.engine_state.prefix
               for seq in k.get(pid).seqs)


async def _run(tmp_path: Path, engine, kill: tuple[int, ...] = ()) -> list[object]:
    """Six texters under rr with two rows a step (so each is preempted every 3 tokens); kill: the
    indices killed once each is mid-generation holding cached blocks. Their exit values."""
    async with make_kernel(tmp_path, engine=engine, policy="rr", max_batch=2, quantum=3) as k:
        pids = [await k.spawn(texter, q, 16) for q in QUESTIONS]
        if kill:  # once each of them is mid-generation, holding its cached prefix blocks
            with anyio.fail_after(30):
                while not all(_holding(k, pids[i]) for i in kill):
                    await anyio.sleep(0.001)
            assert engine.prefix.stats.shared > 0
            assert all(k.kill(pids[i]) for i in kill)
        return [(await k.wait(p)).value for p in pids]


async def test_kill_and_preemption_of_processes_sharing_blocks_leave_the_others_texts(
        tmp_path: Path, tiny_engine_factory) -> None:
    expected = await _run(tmp_path / "plain", tiny_engine_factory(ignore_eos=True, prefix_cache_tokens=0))
    engine = tiny_engine_factory(ignore_eos=True, prefix_block=8)
    got = await _run(tmp_path / "cached", engine, kill=(1, 4))
    survivors = [i for i in range(len(QUESTIONS)) if i not in (1, 4)]
    assert [got[i] for i in survivors] == [expected[i] for i in survivors]
    assert got[1] is None and got[4] is None  # killed
    assert engine.prefix.stats.hits > 0 and refs(engine) == 0 and engine.prefix.stats.shared == 0
