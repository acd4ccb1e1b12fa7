"""The react agent on the default model over the shipped evaluation sets: this tree against a baseline.

Run: ``python bench/agent_accuracy.py --sample 30 --baseline /work/main`` (a sample of each set; the
baseline is another checkout of llmasos, e.g. main before the tool-calling fixes). Each code runs in
its own process (``--child``), both at once, over the same items; the table gives accuracy, answers that are an
explicit "could not answer", mean agent steps and mean tokens (prompt + completion) per question,
and after/before ratios. The agent is react's: calculator and clock, first step a required call,
max_steps=4, max_tokens=96. An answer is correct when a number in it equals the item's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "llmasos" / "toolchain" / "data" / "eval"
SETS = {"wordproblems": EVAL / "wordproblems.jsonl", "expressions": EVAL / "expressions.jsonl"}
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def correct(answer: str, want: float) -> bool:
    numbers = [float(n) for n in _NUM.findall(answer.replace(",", ""))]
    return any(abs(n - want) <= 1e-6 + 1e-9 * abs(want) for n in numbers)


async def child(items: list[dict[str, Any]], max_steps: int, max_tokens: int) -> list[dict[str, Any]]:
    """Run the agent on every item in one kernel (all questions batch together); one record each."""
    import anyio

    from llmasos import App
    from llmasos.engine.hf import HFEngine
    from llmasos.kernel import Kernel, KernelConfig
    from llmasos.tools.agent import run_agent

    app = App("bench-react", tools=["calculator", "clock"])

    class Counting:
        """The process's Sys, counting the tokens of its generates."""

        def __init__(self, sys: Any) -> None:
            self.sys, self.tokens = sys, 0

        async def generate(self, **kw: Any) -> Any:
            c = await self.sys.generate(**kw)
            self.tokens += c.prompt_tokens + c.completion_tokens
            return c

        async def call_tool(self, *a: Any, **kw: Any) -> Any:
            return await self.sys.call_tool(*a, **kw)

        async def tools(self) -> Any:
            return await self.sys.tools()

    @app.main
    async def main(sys: Any, question: str) -> dict[str, Any]:
        counting = Counting(sys)
        r = await run_agent(counting, question, max_steps=max_steps, max_tokens=max_tokens, first_choice="required")
        return {"answer": r.answer, "steps": len(r.steps), "tokens": counting.tokens,
                "finished": getattr(r, "finished", True)}

    engine = await anyio.to_thread.run_sync(HFEngine.from_pretrained, "smollm2-135m")
    out = []
    async with Kernel(KernelConfig(engine=engine, max_batch=64, home=Path(tempfile.mkdtemp()))) as k:
        pids = [await k.spawn(app, item["question"]) for item in items]
        for pid, item in zip(pids, items):
            status = await k.wait(pid)
            rec = status.value if status.ok else {"answer": f"crashed: {status.error}", "steps": 0, "tokens": 0,
                                                 "finished": False}
            rec["ok"] = correct(str(rec["answer"]), item["answer"])
            out.append({"set": item.get("set"), "question": item["question"], "want": item["answer"], **rec})
    return out


def run_codes(codes: list[tuple[str, Path]], items_file: Path,
              args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Run each code's child at once (the same items, the same CPU share), then read their results."""
    t0 = time.perf_counter()
    procs = {}
    for label, code in codes:
        env = {**os.environ, "PYTHONPATH": str(code)}
        procs[label] = subprocess.Popen(
            [sys.executable, __file__, "--child", str(items_file), "--max-steps", str(args.max_steps),
             "--max-tokens", str(args.max_tokens)], env=env, cwd=code, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    results = {}
    for label, code in codes:
        out, err = procs[label].communicate()
        if procs[label].returncode != 0:
            raise SystemExit(f"{code}: the child failed\n{err[-3000:]}")
        results[label] = json.loads(out.strip().splitlines()[-1])
        print(f"{label}: {code} (done after {time.perf_counter() - t0:.0f}s)")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=30, help="items from each set (seeded sample)")
    ap.add_argument("--baseline", type=Path, default=None, help="another llmasos checkout to compare with")
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--show", type=int, default=4, help="wrong answers to print per set and code")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        import anyio

        items = json.loads(args.child.read_text())
        print(json.dumps(anyio.run(child, items, args.max_steps, args.max_tokens)))
        return
    rng = random.Random(0)
    items = []
    for name, path in SETS.items():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        items += [{**r, "set": name} for r in rng.sample(rows, min(args.sample, len(rows)))]
    items_file = Path(tempfile.mkdtemp()) / "items.json"
    items_file.write_text(json.dumps(items))
    codes = ([("before", args.baseline.resolve())] if args.baseline else []) + [("after", ROOT)]
    results = run_codes(codes, items_file, args)
    print(f"\nreact agent on smollm2-135m, {args.sample} items per set, max_steps={args.max_steps}, "
          f"max_tokens={args.max_tokens}:")
    print(f"  {'set':<13} {'code':<7} {'correct':>8} {'could not':>10} {'steps':>6} {'tokens':>7}   correct vs before")
    for name in SETS:
        base = None
        for label, _code in codes:
            rows = [r for r in results[label] if r["set"] == name]
            acc = sum(r["ok"] for r in rows) / len(rows)
            failed = sum(str(r["answer"]).startswith("could not answer") for r in rows)
            steps = sum(r["steps"] for r in rows) / len(rows)
            tokens = sum(r["tokens"] for r in rows) / len(rows)
            base = acc if label == "before" else base
            ratio = f"{acc / base:.2f}x" if base else "-"
            print(f"  {name:<13} {label:<7} {acc:>8.0%} {failed:>10} {steps:>6.2f} {tokens:>7.0f}   {ratio}")
    for label, _code in codes:
        for name in SETS:
            wrong = [r for r in results[label] if r["set"] == name and not r["ok"]][:args.show]
            for r in wrong:
                print(f"  {label:<6} BAD {r['question'][:60]!r} want {r['want']} -> {str(r['answer'])[:70]!r}")


if __name__ == "__main__":
    main()
