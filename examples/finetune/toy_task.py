"""A toy fine-tuning task: answer every question as `ANSWER: <word>`, and a scorer for it.

    python examples/finetune/toy_task.py make DIR          # DIR/train.jsonl (~200 items), DIR/heldout.jsonl (40)
                                                           # and DIR/heldout-qa.jsonl (the same 40, for llmasos eval --qa)
    python examples/finetune/toy_task.py score MODEL DIR/heldout.jsonl

`score` asks MODEL (a library name, a path, or BASE+ADAPTER_DIR) every held-out question in one batch
through ``LLM.chat`` from one thread each and prints two accuracies: the format (the reply is exactly `ANSWER: <word>`) and
the answer (that word is the expected one, ignoring case). The held-out items come from the same templates
as the training items, with values never seen in training.
"""

from __future__ import annotations

import json
import random
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
             ("light", "dark"), ("old", "new"), ("open", "closed"), ("early", "late"), ("full", "empty"),
             ("hard", "soft"), ("high", "low"), ("long", "short"), ("rich", "poor"), ("wet", "dry"),
             ("strong", "weak"), ("loud", "quiet"), ("clean", "dirty"), ("thick", "thin"), ("near", "far")]
CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Russia", "Moscow"), ("Greece", "Athens"),
            ("Austria", "Vienna"), ("Norway", "Oslo"), ("Peru", "Lima"), ("Ireland", "Dublin"),
            ("Portugal", "Lisbon"), ("Poland", "Warsaw"), ("Kenya", "Nairobi"), ("Cuba", "Havana")]
COLORS = [("banana", "yellow"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("sky", "blue"),
          ("tomato", "red"), ("carrot", "orange"), ("lemon", "yellow"), ("blood", "red"), ("milk", "white"),
          ("leaf", "green"), ("night", "black")]
TEMPLATES = {
    "opposite": ["What is the opposite of {q}?", "Give the opposite of the word '{q}'.", "Opposite of {q}?"],
    "capital": ["What is the capital of {q}?", "Which city is the capital of {q}?", "Name the capital of {q}."],
    "color": ["What color is {q}?", "What is the usual color of {q}?", "Tell me the color of {q}."],
    "sum": ["What is {q}?", "Compute {q}.", "How much is {q}?"],
}
FORMAT = re.compile(r"^ANSWER: (\S+)$")


def items(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held out): every template over every value; the held-out values never occur in training."""
    rng = random.Random(seed)
    pools = {"opposite": OPPOSITES, "capital": CAPITALS, "color": COLORS,
             "sum": [(f"{a} plus {b}", str(a + b)) for a in range(1, 10) for b in range(1, 10)][::3]}
    train, held = [], []
    for kind, pool in pools.items():
        pool = list(pool)
        rng.shuffle(pool)
        n_held = max(2, len(pool) // 5)
        for i, (q, a) in enumerate(pool):
            for template in TEMPLATES[kind]:
                (held if i < n_held else train).append({"question": template.format(q=q), "answer": a})
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held[:40]


def chat_line(item: dict) -> str:
    return json.dumps({"messages": [{"role": "user", "content": item["question"]},
                                    {"role": "assistant", "content": f"ANSWER: {item['answer']}"}]})


def make(folder: Path) -> None:
    train, held = items()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(chat_line(x) + "\n" for x in train))
    (folder / "heldout.jsonl").write_text("".join(chat_line(x) + "\n" for x in held))
    # llmasos eval --qa: exact_match is the reply being exactly `ANSWER: <word>` with the right word
    (folder / "heldout-qa.jsonl").write_text("".join(
        json.dumps({"question": x["question"], "answers": [f"ANSWER: {x['answer']}"]}) + "\n" for x in held))
    print(f"{len(train)} training items in {folder / 'train.jsonl'}, {len(held)} held out in {folder / 'heldout.jsonl'}")


def score(model: str, heldout: Path) -> tuple[float, float]:
    """(format accuracy, answer accuracy) of model on the held-out items, greedy, in one batch."""
    from llmasos import LLM

    rows = [json.loads(line)["messages"] for line in heldout.read_text().splitlines() if line.strip()]
    llm = LLM.from_pretrained(model)
    try:  # one thread per question: the kernel batches their generate calls into shared steps
        with ThreadPoolExecutor(len(rows)) as pool:
            replies = list(pool.map(lambda m: llm.chat(m[:-1], max_tokens=12), rows))
    finally:
        llm.close()
    fmt = ans = 0
    for messages, reply in zip(rows, replies, strict=True):
        match = FORMAT.match(reply.strip())
        fmt += bool(match)
        ans += bool(match) and match.group(1).strip(".").lower() == messages[-1]["content"][8:].lower()
    return fmt / len(rows), ans / len(rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "score":
        f, a = score(sys.argv[2], Path(sys.argv[3]))
        print(f"{sys.argv[2]}: format {f:.0%}, answer {a:.0%}")
    else:
        sys.exit(__doc__)
