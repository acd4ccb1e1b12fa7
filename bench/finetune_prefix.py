"""One fine-tuning step with and without the shared prompt prefix (toolchain/finetune.py, answer_loss).

Run: ``python bench/finetune_prefix.py [--batches 8,16] [--repeats 5]``. The model, LoRA settings and
data are the smollm2-135m-tools recipe's (toolchain/build.py): LoRA on the top 15 layers, the react
prompts of its training problems. Each repeat times a forward and backward pass of the same batch
both ways, one after the other (the order alternates), so a swing in the machine's speed hits both;
the table gives the median and the range of the repeats, and the ratio of the medians. Before the
timings, both ways' loss and gradients are compared (they must agree to float rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import _common  # noqa: F401  (sys.path, offline flags)
import torch

from llmasos.toolchain import build, finetune, tunedata
from llmasos.toolchain.finetune import TuneConfig, answer_loss, shared_prefix


@contextmanager
def sharing(on: bool) -> Iterator[None]:
    """answer_loss with the shared prefix (on) or without it (a minimum no batch reaches)."""
    minimum = finetune.SHARED_MIN
    finetune.SHARED_MIN = minimum if on else 1 << 30
    try:
        yield
    finally:
        finetune.SHARED_MIN = minimum


def step(model: object, batch: dict, share: bool) -> tuple[float, float]:
    """(seconds, loss) of one forward and backward pass."""
    with sharing(share):
        t0 = time.perf_counter()
        loss = answer_loss(model, batch)
        loss.backward()
        seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds, float(loss.detach())


def grads(model: object, batch: dict, share: bool) -> list[torch.Tensor]:
    with sharing(share):
        answer_loss(model, batch).backward()
    out = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="8,16", help="batch sizes to time")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    recipe = build.RECIPES["smollm2-135m-tools"]
    rows = build.training_rows(replace(recipe, problems=64))
    t = recipe.tune
    cfg = TuneConfig(base=recipe.base, data="-", out="-", rank=t["rank"], alpha=t["alpha"], dropout=0.0,
                     targets=t["targets"], top_layers=t["top_layers"])
    model, tok = finetune._model(cfg, None)
    model.train()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        examples = tunedata.read_jsonl(data)
    encoded = [tunedata.encode(e, tok, t["max_len"]) for e in examples]
    print(f"smollm2-135m, LoRA rank {t['rank']} on the top {t['top_layers']} layers, torch threads "
          f"{torch.get_num_threads()}, {args.repeats} repeats each")
    print("| batch | tokens (padded) | shared prefix | plain step s (median, range) | shared step s (median, range) "
          "| speed-up | loss plain / shared |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(b) for b in args.batches.split(",")):
        batch = tunedata.collate(encoded[:size], pad)
        plain_g, shared_g = grads(model, batch, False), grads(model, batch, True)
        worst = max(float((a - b).abs().max() / (a.abs().max() + 1e-12)) for a, b in zip(plain_g, shared_g))
        times: dict[bool, list[float]] = {False: [], True: []}
        losses: dict[bool, float] = {}
        step(model, batch, True)  # warm-up
        for r in range(args.repeats):
            for share in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, losses[share] = step(model, batch, share)
                times[share].append(seconds)
        p, s = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {size} | {batch['input_ids'].numel()} | {shared_prefix(batch)} | {p:.2f} ({min(times[False]):.2f}-"
              f"{max(times[False]):.2f}) | {s:.2f} ({min(times[True]):.2f}-{max(times[True]):.2f}) | {p / s:.2f}x "
              f"| {losses[False]:.4f} / {losses[True]:.4f} (largest relative gradient gap {worst:.1e}) |")


if __name__ == "__main__":
    main()
