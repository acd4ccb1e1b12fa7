"""`llmasos finetune BASE DATA.jsonl --out DIR`: train a LoRA adapter on this machine's CPU.

Rule: a thin wrapper over llmasos.toolchain.finetune (imported when the command runs, so importing the
CLI loads no torch): options in, a progress bar with the loss out; Ctrl-C saves the adapter and exits 130.
It has no --url: the daemon's machine does not train; serve the result with `--model BASE+DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from llmasos.cli.options import fail
from llmasos.errors import LlmasosError


def finetune(
    base: Annotated[str, typer.Argument(help="The model to adapt: a library name (smollm2-135m), a path")],
    data: Annotated[Path, typer.Argument(help="JSONL: {\"messages\": [...]} or {\"prompt\", \"completion\"} lines")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the adapter, its manifest and loss.png")],
    epochs: Annotated[int, typer.Option(help="Passes over the training examples")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (warm-up, then linear decay)")] = 5e-4,
    rank: Annotated[int, typer.Option("--rank", "-r", help="LoRA rank")] = 8,
    alpha: Annotated[int, typer.Option(help="LoRA alpha (scale = alpha / rank)")] = 16,
    targets: Annotated[str, typer.Option(help="Comma-separated Linear layers to adapt")] = "q_proj,v_proj,o_proj",
    max_len: Annotated[int, typer.Option("--max-len", help="Tokens per example (longer prompts lose their start)")] = 256,
    val_split: Annotated[float, typer.Option("--val-split", help="Fraction held out for validation loss")] = 0.1,
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between checkpoints")] = 25,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, the order and LoRA's initial weights")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out")] = False,
    register: Annotated[str | None, typer.Option(
        "--register", help="Also add the adapter to the model library under this name")] = None,
) -> None:
    """Fine-tune BASE on DATA with LoRA (peft, CPU) into --out; load the result as BASE+DIR.

    The loss is taken on the answers only. Checkpoints go to DIR/checkpoints every --save-every steps;
    Ctrl-C saves a usable adapter (resume with --resume). docs/toolchain.md has a worked example.
    """
    from llmasos.toolchain import library
    from llmasos.toolchain.finetune import TuneConfig
    from llmasos.toolchain.finetune import finetune as train

    cfg = TuneConfig(base=base, data=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr, rank=rank,
                     alpha=alpha, targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
                     max_len=max_len, val_fraction=val_split, save_every=save_every, max_steps=max_steps,
                     seed=seed)
    try:
        if register:
            library.library.check_name(register)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns) as bar:
            task = bar.add_task("training", total=None, loss="…")

            def on_step(step: int, total: int, loss: float, epoch: int) -> None:
                bar.update(task, completed=step, total=total, loss=f"{loss:.4f}", description=f"epoch {epoch + 1}")

            result = train(cfg, resume=resume, on_step=on_step, on_note=lambda msg: bar.console.print(msg))
        if register:
            library.add(register, out)
    except LlmasosError as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # while the model loads, or while the last save is written
        typer.echo(f"llmasos: interrupted outside the training steps; what was saved in {out} is kept", err=True)
        raise typer.Exit(130) from None
    val = f", validation loss {result.val_loss[-1][1]:.4f}" if result.val_loss else ""
    typer.echo(f"{'interrupted' if result.interrupted else 'trained'}: {result.steps}/{result.total_steps} steps "
               f"in {result.seconds:.0f} s{val}; adapter, manifest and loss.png in {out}")
    name = register or f"{base}+{out}"
    typer.echo(f"use it: llmasos run chat --model {name}" + ("" if not result.interrupted else
               f"   continue: llmasos finetune {base} {data} --out {out} --resume"))
    if result.interrupted:
        raise typer.Exit(130)
