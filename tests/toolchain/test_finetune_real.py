"""On the real model: a short fine-tune teaches the toy task's answer format (`ANSWER: <word>`) on
held-out questions the base model never answers in that format. Slow: ~30 s on two cores."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llmasos.toolchain.finetune import TuneConfig, finetune

TOY = Path(__file__).resolve().parents[2] / "examples" / "finetune" / "toy_task.py"


def _toy():
    spec = importlib.util.spec_from_file_location("toy_task", TOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_short_finetune_raises_format_accuracy_on_held_out_items(tmp_path: Path) -> None:
    toy = _toy()
    toy.make(tmp_path)
    heldout = tmp_path / "heldout.jsonl"
    before = toy.score("smollm2-135m", heldout)
    result = finetune(TuneConfig(base="smollm2-135m", data=tmp_path / "train.jsonl", out=tmp_path / "adapter",
                                 epochs=1, lr=2e-3, max_steps=10, batch_size=4))  # (7 steps reach 92 %)
    after = toy.score(f"smollm2-135m+{tmp_path / 'adapter'}", heldout)
    print(f"\nformat / answer accuracy on 40 held-out items: before {before[0]:.0%} / {before[1]:.0%}, "
          f"after {result.steps} steps ({result.seconds:.0f} s) {after[0]:.0%} / {after[1]:.0%}; "
          f"validation loss {result.val_loss}")
    assert after[0] >= before[0] + 0.5
