"""Shared test fixtures.

Every test runs with LLMASOS_HOME pointing at a throwaway folder (kept under .cache/ between local
runs, so the converted default model is reused) and with the hub switched off. The home is set, not
defaulted: a user's own $LLMASOS_HOME (their database, pids and token) is never touched by the tests, and
subprocesses the tests start inherit the test home. A user's $LLMASOS_URL and $LLMASOS_API_TOKEN are
dropped too, so that no test talks to their daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
TEST_HOME = Path(__file__).resolve().parent.parent / ".cache" / "test-home"
os.environ["LLMASOS_HOME"] = str(TEST_HOME)  # (never the user's: see the module's docstring)
for _var in ("LLMASOS_URL", "LLMASOS_API_TOKEN"):  # nor their daemon
    os.environ.pop(_var, None)

import anyio  # noqa: E402
import pytest  # noqa: E402

from llmasos.engine.fake import FakeEngine  # noqa: E402
from llmasos.kernel import Kernel, KernelConfig  # noqa: E402
from llmasos.syscalls.calls import Generate  # noqa: E402
from llmasos.syscalls.types import Completion  # noqa: E402


def make_kernel(tmp_path: Path, engine: object | None = None, **overrides: object) -> Kernel:
    """A kernel on the scripted FakeEngine with its home (database, jails) in tmp_path."""
    return Kernel(KernelConfig(engine=engine if engine is not None else FakeEngine(), home=tmp_path,
                               **overrides))


async def generate_all(kernel: Kernel, calls: list[Generate], face: str = "test") -> list[Completion]:
    """Run generate calls concurrently, each as its own request process (so they batch together)."""
    results: list[Completion | None] = [None] * len(calls)

    async def one(i: int, call: Generate) -> None:
        async with kernel.session(face) as sys:
            results[i] = await sys._trap(call)

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(one, i, call)
    return results  # type: ignore[return-value]


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


# == engine: the tiny random Llama (owned by the engine tests; other tests may use it) ===============
# `tiny_model_dir` is a directory loadable by HFEngine.from_pretrained: a random 2-layer Llama (hidden
# 64, weights spread wide so greedy decoding does not collapse into one repeated token) with the real
# SmolLM2 tokenizer and a 256-token window. The tokenizer is extracted from the GGUF once into
# $LLMASOS_HOME (about 7 s on a fresh machine), then reused.

TINY_CONTEXT = 256


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmasos.engine.models import tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=TINY_CONTEXT,
        initializer_range=0.5, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_engine_factory(tiny_model_dir: Path):
    """Build HFEngines over one shared copy of the tiny model: ``tiny_engine_factory(max_batch=...)``."""
    from llmasos.engine.hf import HFEngine

    base = HFEngine.from_pretrained(tiny_model_dir)

    def build(**kw: object) -> HFEngine:
        return HFEngine(base.model, base.tokenizer, name="tiny", **kw)

    return build
