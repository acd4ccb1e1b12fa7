"""Fine-tuning data: JSONL files of chat conversations or prompt/completion pairs, checked and tokenized.

Rule: a bad file fails before any model loads, with the line number and what the line should look like;
the loss is taken on the answer only (the last assistant message, or the completion), never on the
prompt; prompts are tokenized exactly as the engine tokenizes a chat (``apply_chat_template`` with a
generation prompt, no extra special tokens), so what is trained is what is served.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmasos.errors import LlmasosError

ROLES = ("system", "user", "assistant", "tool")
IGNORE = -100  # the label torch's cross-entropy skips: prompt and padding tokens
FORMAT_HELP = ('each line is {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
               '"content": "..."}]} or {"prompt": "...", "completion": "..."}')


class FinetuneError(LlmasosError):
    """A fine-tune could not start, go on, or be resumed."""


class BadDataset(FinetuneError):
    """A fine-tuning data file is missing, empty or has a line that is not a training example."""


@dataclass(frozen=True, slots=True)
class Example:
    """One training example: the prompt (chat messages or plain text) and the answer to learn."""

    line: int
    completion: str
    messages: tuple[dict[str, str], ...] | None = None  # chat format: everything before the answer
    prompt: str | None = None  # prompt/completion format


def read_jsonl(path: Path) -> list[Example]:
    """Every example in a JSONL file; BadDataset naming the first bad line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BadDataset(f"no such data file: {path} ({FORMAT_HELP})")
    examples = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise BadDataset(f"{path}:{number}: not UTF-8 text") from None
            if text:
                examples.append(_example(path, number, text))
    if not examples:
        raise BadDataset(f"{path} holds no examples; {FORMAT_HELP}")
    return examples


def _example(path: Path, number: int, text: str) -> Example:
    where = f"{path}:{number}"
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise BadDataset(f"{where}: not JSON ({exc}); {FORMAT_HELP}") from None
    if not isinstance(obj, dict):
        raise BadDataset(f"{where}: expected a JSON object, got {type(obj).__name__}; {FORMAT_HELP}")
    if "messages" in obj:
        return _chat(where, number, obj["messages"])
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            raise BadDataset(f"{where}: the completion is empty: there is nothing to learn")
        return Example(number, completion, prompt=prompt)
    raise BadDataset(f"{where}: found the fields {sorted(obj)[:8]}; {FORMAT_HELP} (strings)")


def _chat(where: str, number: int, messages: Any) -> Example:
    if not isinstance(messages, list) or len(messages) < 2:
        raise BadDataset(f"{where}: 'messages' must be a list of at least a user and an assistant message")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadDataset(f"{where}: message {i} must be {{\"role\": one of {', '.join(ROLES)}, "
                             f"\"content\": a string}}")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "assistant" or not clean[-1]["content"].strip():
        raise BadDataset(f"{where}: the last message must be the assistant's answer (non-empty), the one to learn")
    return Example(number, clean[-1]["content"], messages=tuple(clean[:-1]))


def split(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation), shuffled by seed; validation gets round(fraction * n) examples, at least one
    when the fraction is positive and there are two or more examples."""
    if not 0 <= val_fraction < 1:
        raise FinetuneError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(val_fraction * len(order)))) if val_fraction > 0 else 0
    return order[n_val:], order[:n_val]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode(example: Example, tokenizer: Any, max_len: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one example, at most max_len tokens: the prompt's labels are IGNORE; a
    long prompt loses its start first, then a long answer its end."""
    if example.messages is not None:
        text = tokenizer.apply_chat_template(list(example.messages), add_generation_prompt=True, tokenize=False)
        prompt = tokenizer.encode(text, add_special_tokens=False)
    else:
        prompt = tokenizer.encode(example.prompt or "", add_special_tokens=True)
    answer = tokenizer.encode(example.completion, add_special_tokens=False)
    if tokenizer.eos_token_id is not None:
        answer.append(tokenizer.eos_token_id)
    answer = answer[:max_len - 1] if len(answer) >= max_len else answer
    keep = max_len - len(answer)
    prompt = prompt[len(prompt) - keep:] if len(prompt) > keep else prompt
    return prompt + answer, [IGNORE] * len(prompt) + answer


def batches(encoded: list[tuple[list[int], list[int]]], size: int, seed: int) -> list[list[int]]:
    """The indices of encoded, shuffled by seed and cut into batches of size (the last may be short)."""
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    return [order[i:i + size] for i in range(0, len(order), size)]


def collate(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """A right-padded batch: input_ids, attention_mask and labels (padding labelled IGNORE)."""
    import torch

    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, (x, y) in enumerate(items):
        ids[row, :len(x)] = torch.tensor(x)
        mask[row, :len(x)] = 1
        labels[row, :len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
