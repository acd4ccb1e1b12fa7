"""`llmasos finetune`: train a LoRA adapter for a library model on the CPU, with peft.

Rule: the output folder is always a usable adapter once training has begun: peft's adapter files, a
manifest (``llmasos-adapter.json``: the base model, the data's hash, steps and losses) and ``loss.png``
are written at every epoch's end, at the end, and when Ctrl-C stops a run; checkpoints (adapter,
optimizer, scheduler and random state) every ``save_every`` steps let ``resume=True`` continue at the
same step with the same data order. The adapter loads as ``BASE+DIR`` through ``engine.models``, which
merges it into the base weights.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.engine import adapters, models
from llmasos.toolchain import tunedata
from llmasos.toolchain.tunedata import FinetuneError

MANIFEST = adapters.ADAPTER_MANIFEST
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


@dataclass(slots=True)
class TuneConfig:
    """One fine-tune: what to train, on what, and how. The defaults train a few hundred short examples
    in a few minutes on two cores."""

    base: str
    data: Path
    out: Path
    epochs: int = 2
    batch_size: int = 8
    lr: float = 5e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "v_proj", "o_proj")
    max_len: int = 256
    top_layers: int | None = None  # LoRA on the last N decoder layers only (backward stops below them)
    val_fraction: float = 0.1
    save_every: int = 25  # steps between checkpoints
    max_steps: int | None = None  # stop early (tests, smoke runs)
    seed: int = 0

    def validate(self) -> None:
        for name, low, high in (("epochs", 1, 1000), ("batch_size", 1, 1024), ("rank", 1, 1024),
                                ("alpha", 1, 1 << 16), ("max_len", 8, 1 << 16), ("save_every", 1, 1 << 30)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise FinetuneError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            raise FinetuneError(f"lr must be in (0, 1], got {self.lr!r}")
        if not 0 <= self.dropout < 1:
            raise FinetuneError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.max_steps is not None and not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise FinetuneError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if self.top_layers is not None and not (isinstance(self.top_layers, int)
                                                and not isinstance(self.top_layers, bool) and self.top_layers >= 1):
            raise FinetuneError(f"top_layers must be a positive integer, got {self.top_layers!r}")
        if not self.targets or not all(isinstance(t, str) and t.isidentifier() for t in self.targets):
            raise FinetuneError(f"targets must name Linear layers such as q_proj,v_proj; got {self.targets!r}")


@dataclass(slots=True)
class TuneResult:
    """How a fine-tune went: where the adapter is, steps done, losses, and whether Ctrl-C stopped it."""

    out: Path
    steps: int
    total_steps: int
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per step
    val_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per evaluation
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return str(self.out)


OnStep = Callable[[int, int, float, int], None]  # (step, total, loss, epoch)


def finetune(cfg: TuneConfig, *, resume: bool = False, on_step: OnStep | None = None,
             on_note: Callable[[str], None] | None = None) -> TuneResult:
    """Train a LoRA adapter on cfg.data into cfg.out (see the module docstring); Ctrl-C saves and returns
    a result with interrupted=True."""
    import torch

    cfg.validate()
    note = on_note or (lambda _msg: None)
    examples = tunedata.read_jsonl(cfg.data)  # a bad file fails before the model loads
    train, val = tunedata.split(examples, cfg.val_fraction, cfg.seed)
    data_hash = tunedata.file_hash(cfg.data)
    out = Path(cfg.out)
    state = _resume_state(out, cfg, data_hash) if resume else _fresh(out)
    torch.manual_seed(cfg.seed)
    model, tokenizer = _model(cfg, state)
    enc_train = [tunedata.encode(e, tokenizer, cfg.max_len) for e in train]
    enc_val = [tunedata.encode(e, tokenizer, cfg.max_len) for e in val]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
    total = min(per_epoch * cfg.epochs, cfg.max_steps or 1 << 62)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / max(1, total)))
    result = TuneResult(out, 0, total)
    if state is not None:
        _load_training_state(state, optimizer, schedule, result)
    note(f"{len(train)} training and {len(val)} validation examples, {per_epoch} steps an epoch, "
         f"{total} steps" + (f"; resuming at step {result.steps}" if result.steps else ""))
    started = time.monotonic() - (state or {}).get("seconds", 0.0)
    model.train()
    try:
        while result.steps < total:
            epoch = result.steps // per_epoch
            order = tunedata.batches(enc_train, cfg.batch_size, cfg.seed + epoch)
            for idx in order[result.steps - epoch * per_epoch:]:
                batch = tunedata.collate([enc_train[i] for i in idx], pad)
                loss = answer_loss(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                result.train_loss.append((result.steps, float(loss.detach())))
                if on_step is not None:
                    on_step(result.steps, total, float(loss.detach()), epoch)
                if result.steps >= total:
                    break
                if result.steps % cfg.save_every == 0:
                    _checkpoint(model, optimizer, schedule, result, cfg, data_hash, started)
            if enc_val:
                result.val_loss.append((result.steps, _val_loss(model, enc_val, cfg.batch_size, pad)))
                note(f"epoch {epoch + 1}: validation loss {result.val_loss[-1][1]:.4f}")
            _checkpoint(model, optimizer, schedule, result, cfg, data_hash, started)
            if result.steps < total:
                _save(model, result, cfg, data_hash, started)
    except KeyboardInterrupt:
        result.interrupted = True
        note(f"interrupted at step {result.steps}: saving the adapter")
        _checkpoint(model, optimizer, schedule, result, cfg, data_hash, started)
    _save(model, result, cfg, data_hash, started)
    return result


def _fresh(out: Path) -> None:
    if (out / CHECKPOINTS).is_dir() or (out / MANIFEST).is_file():
        raise FinetuneError(f"{out} already holds a fine-tune: pass --resume to continue it, "
                            "or choose another --out")
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise FinetuneError(f"{out} is not empty; choose a new or empty folder for --out")


def _model(cfg: TuneConfig, state: dict[str, Any] | None) -> tuple[Any, Any]:
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError:
        raise FinetuneError("fine-tuning needs peft: pip install peft") from None
    base, tokenizer = models.load(cfg.base)
    if state is not None:
        with adapters.quiet_peft():
            return PeftModel.from_pretrained(base, str(state["dir"]), is_trainable=True), tokenizer
    present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [t for t in cfg.targets if t not in present]
    if missing:
        raise FinetuneError(f"{cfg.base} has no layers named {', '.join(missing)}; "
                            f"its Linear layers include q_proj, k_proj, v_proj, o_proj, up_proj, down_proj")
    layers = None
    if cfg.top_layers is not None:
        count = int(getattr(base.config, "num_hidden_layers", 0) or 0)
        if cfg.top_layers < count:  # (as many as the model has, or more: all of them)
            layers = list(range(count - cfg.top_layers, count))
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.targets), layers_to_transform=layers, task_type="CAUSAL_LM")
    with adapters.quiet_peft():
        return get_peft_model(base, lora), tokenizer


SHARED_MIN = 32  # a batch whose rows open with at least this many equal prompt tokens runs them once


def shared_prefix(batch: dict[str, Any]) -> int:
    """How many leading tokens every row of the batch has in common and none is trained on: the
    system prompt and the tools that every example of a tool-calling data set repeats. A prefix
    stops one token before the first trained one (its last hidden state predicts that token)."""
    import torch

    ids, labels = batch["input_ids"], batch["labels"]
    if ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(dim=0)
    first_trained = int((labels != tunedata.IGNORE).any(dim=0).float().argmax())
    equal = int(torch.cumprod(same.long(), 0).sum())
    return max(0, min(equal, first_trained - 1, ids.shape[1] - 1))


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """The mean cross-entropy over the answer tokens, as transformers' own loss, but the output layer
    (49152 x 576 for SmolLM2: a fifth of the model's work) runs on the answer positions only, and a
    prompt prefix every row shares runs once, its keys and values repeated for the rows (gradients
    flow through them): a tool-calling example is mostly its system prompt, so a batch of 8 costs
    about what 3 did (bench in docs/toolchain.md)."""
    import torch.nn.functional as F

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    ids, labels = batch["input_ids"], batch["labels"]
    shared = shared_prefix(batch)
    if shared >= SHARED_MIN:
        opened = inner.model(input_ids=ids[:1, :shared], use_cache=True)
        cache = opened.cache
        cache.batch_repeat_interleave(ids.shape[0])
        hidden = inner.model(input_ids=ids[:, shared:], attention_mask=batch["attention_mask"],
                             cache=cache, use_cache=True).last_hidden_state
        labels = labels[:, shared:]
    else:
        hidden = inner.model(input_ids=ids, attention_mask=batch["attention_mask"]).last_hidden_state
    target = labels[:, 1:]
    keep = target != tunedata.IGNORE
    logits = inner.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def _val_loss(model: Any, encoded: list[tuple[list[int], list[int]]], size: int, pad: int) -> float:
    """The mean loss per answer token over the validation examples."""
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), size):
            batch = tunedata.collate(encoded[i:i + size], pad)
            n = int((batch["labels"][:, 1:] != tunedata.IGNORE).sum())
            total += float(answer_loss(model, batch)) * n
            tokens += n
    model.train()
    return total / max(1, tokens)


# -- saving and resuming --------------------------------------------------------------------------------


def _manifest(result: TuneResult, cfg: TuneConfig, data_hash: str, started: float) -> dict[str, Any]:
    base = cfg.base
    if Path(base).exists():
        base = str(Path(base).resolve())
    hyper = {k: v for k, v in asdict(cfg).items() if k not in ("base", "data", "out")}
    hyper["targets"] = list(cfg.targets)
    return {"base": base, "data": str(Path(cfg.data).resolve()), "data_sha256": data_hash,
            "steps": result.steps, "total_steps": result.total_steps, "interrupted": result.interrupted,
            "seconds": round(time.monotonic() - started, 1), "hyperparameters": hyper,
            "train_loss": [[s, round(v, 5)] for s, v in result.train_loss],
            "val_loss": [[s, round(v, 5)] for s, v in result.val_loss], "saved": time.time()}


def _save(model: Any, result: TuneResult, cfg: TuneConfig, data_hash: str, started: float) -> None:
    """The adapter, its manifest and the loss curve, in cfg.out (each file replaced whole)."""
    out = Path(cfg.out)
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = _manifest(result, cfg, data_hash, started)
    _save_adapter(model, tmp, manifest["base"])
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for item in tmp.iterdir():
        item.replace(out / item.name)
    tmp.rmdir()
    result.seconds = time.monotonic() - started
    plot_losses(result, out / "loss.png")


def _save_adapter(model: Any, folder: Path, base: str) -> None:
    """peft's adapter files; the embeddings are not trained, so peft need not ask a hub about them."""
    for lora in model.peft_config.values():
        lora.base_model_name_or_path = base
    model.save_pretrained(folder, save_embedding_layers=False)


def _checkpoint(model: Any, optimizer: Any, schedule: Any, result: TuneResult, cfg: TuneConfig,
                data_hash: str, started: float) -> Path:
    import torch

    root = Path(cfg.out) / CHECKPOINTS
    dest = root / f"step-{result.steps:07d}"
    if dest.is_dir():
        return dest
    tmp = root / f".step-{result.steps:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = _manifest(result, cfg, data_hash, started)
    _save_adapter(model, tmp, manifest["base"])
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "rng": torch.get_rng_state()}, tmp / "training.pt")
    (tmp / MANIFEST).write_text(json.dumps(manifest) + "\n")
    tmp.replace(dest)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _resume_state(out: Path, cfg: TuneConfig, data_hash: str) -> dict[str, Any] | None:
    """The newest checkpoint in out, checked against this run's base and data; None when there is none."""
    found = sorted(p for p in (out / CHECKPOINTS).glob("step-*") if p.is_dir()) if out.is_dir() else []
    if not found:
        raise FinetuneError(f"nothing to resume in {out}: no checkpoints; start without --resume")
    latest = found[-1]
    manifest = json.loads((latest / MANIFEST).read_text())
    if manifest.get("data_sha256") != data_hash:
        raise FinetuneError(f"{cfg.data} is not the file the run in {out} was trained on (its hash differs); "
                            "resume with the same data, or start a new run in another --out")
    return {**manifest, "dir": latest}


def _load_training_state(state: dict[str, Any], optimizer: Any, schedule: Any, result: TuneResult) -> None:
    import torch

    saved = torch.load(Path(state["dir"]) / "training.pt", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    torch.set_rng_state(saved["rng"])
    result.steps = int(state["steps"])
    result.train_loss = [(int(s), float(v)) for s, v in state.get("train_loss", [])]
    result.val_loss = [(int(s), float(v)) for s, v in state.get("val_loss", [])]


def plot_losses(result: TuneResult, path: Path) -> Path | None:
    """The loss curve (training per step, validation per epoch) as a PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if result.train_loss:
        steps, losses = zip(*result.train_loss)
        ax.plot(steps, losses, lw=1, alpha=0.5 if len(losses) >= 40 else 1, label="training (per step)")
        k = len(losses) // 20
        if k > 1:
            smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1])
                      for i in range(len(losses))]
            ax.plot(steps, smooth, lw=2, label=f"training (mean of {k} steps)")
    if result.val_loss:
        ax.plot(*zip(*result.val_loss), "o-", lw=2, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per answer token)")
    ax.set_title(f"{result.out.name}: {result.steps}/{result.total_steps} steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
