"""Tool-call validity on the default model, constrained vs unconstrained, and the react app on arithmetic.

Run: ``python bench/toolcalls.py`` (or ``--quick`` for a quarter of the prompts and 8 questions).
Every request goes through one kernel, so they share continuous batches. At each max_tokens
(``--budgets``, default 16,24,32,48,64) the same prompts run constrained with the budget-aware
grammar and, as the baseline, constrained without it (the grammar before tools/closing.py), in
the same batches; a max_tokens too small for any call is refused up front.

A reply is *valid* when it parses (the ``<tool_call>`` wire format or a bare JSON object), names a
tool that was offered and its arguments fit that tool's schema (pydantic validation, extra keys
refused). All conditions see the same prompt (tools listed in the system message, "reply with one
tool call"); the constrained ones also have the grammar's logits processor (tool_choice="required").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from llmasos.kernel import Kernel, KernelConfig  # noqa: E402
from llmasos.syscalls.calls import Generate  # noqa: E402
from llmasos.syscalls.errors import InvalidArguments  # noqa: E402
from llmasos.tools.calling import parse, prepare, resolve  # noqa: E402
from llmasos.tools.grammar import ProcessorStats  # noqa: E402

TOOLS = ("calculator", "clock", "files")
PROMPTS: list[tuple[str, str]] = [  # (user message, the tool a sensible call uses)
    *[(q, "calculator") for q in [
        "What is 17 * 23?", "Compute 1234 + 4321.", "How much is 96 divided by 8?", "What is 2 to the power of 10?",
        "Calculate (15 + 27) * 3.", "What's 1000 minus 357?", "Multiply 45 by 12.", "What is 7% of 250? Use 250 * 7 / 100.",
        "I bought 3 books at 12.50 each. What did I pay?", "Add 19, 23 and 58.", "What is 144 / 12 + 5?",
        "Subtract 89 from 300.", "What is the product of 13 and 17?", "Evaluate 3 * (4 + 5) - 6.",
        "How many seconds are in 3 hours? (3 * 60 * 60)", "What is 81 squared?", "Divide 1024 by 32.",
        "What is 999 + 1?", "Split 360 dollars among 8 people.", "What is 5 factorial, i.e. 5*4*3*2*1?",
        "What's 12.5 times 4?", "Compute 2 + 2 * 2.", "What is 250 - 75 + 30?", "Find 18 percent of 600.",
        "What is 7 cubed?",
    ]],
    *[(q, "clock") for q in [
        "What time is it?", "What is today's date?", "What day of the week is it?", "What time is it in Paris?",
        "Tell me the current time in Tokyo.", "Is it morning or evening in UTC right now?", "What year is it?",
        "What's the date in New York today?", "Give me the current UTC timestamp.", "What time is it in London?",
        "Which month are we in?", "What is the time now in Europe/Berlin?",
    ]],
    *[(q, "files") for q in [
        "Save the text 'buy milk' to a file named todo.txt.", "List the files in my directory.",
        "Read the file notes.txt.", "Delete the file old.txt.", "Write 'hello world' into hello.txt.",
        "Show me what is in report.md.", "Create a file called ideas.txt containing 'build a robot'.",
        "What files do I have?", "Remove the file temp.log.", "Open diary.txt and show it to me.",
        "Store the number 42 in answer.txt.", "Check which files exist in the data folder.",
        "Read config.json for me.",
    ]],
]
ARITHMETIC: list[tuple[str, float]] = [
    ("What is 17 * 23?", 391), ("What is 1234 + 4321?", 5555), ("What is 96 / 8?", 12), ("What is 1000 - 357?", 643),
    ("What is 45 * 12?", 540), ("What is (15 + 27) * 3?", 126), ("What is 2 ** 10?", 1024), ("What is 81 * 81?", 6561),
    ("What is 144 / 12 + 5?", 17), ("What is 300 - 89?", 211), ("What is 13 * 17?", 221), ("What is 19 + 23 + 58?", 100),
    ("What is 1024 / 32?", 32), ("What is 3 * (4 + 5) - 6?", 21), ("What is 12.5 * 4?", 50), ("What is 999 + 1?", 1000),
    ("What is 360 / 8?", 45), ("What is 7 * 7 * 7?", 343), ("What is 250 - 75 + 30?", 205), ("What is 600 * 18 / 100?", 108),
]


BASELINE_SEED = 7  # marks a baseline request: greedy decoding ignores the seed, so only the marker differs


def _baseline_hook() -> None:
    """Requests with seed=BASELINE_SEED get the grammar without the budget (the behaviour before closing.py)."""
    import llmasos.kernel.sys_llm as sys_llm

    real = sys_llm.prepare_tools

    def prepare(call: Generate, tokenizer=None, sid_hint: str = "", **kw):  # noqa: ANN001, ANN003
        if call.seed == BASELINE_SEED:
            kw["max_tokens"] = None
        return real(call, tokenizer, sid_hint, **kw)

    sys_llm.prepare_tools = prepare


async def validity(k: Kernel, prompts: list[tuple[str, str]], max_tokens: int,
                   unconstrained: bool) -> dict[str, dict[str, float]]:
    offered = resolve(TOOLS)
    conds = ["no budget (before)", "constrained"] + (["unconstrained"] if unconstrained else [])
    results: dict[str, list[tuple[bool, bool]]] = {c: [] for c in conds}
    refused: dict[str, str] = {}
    jobs = []
    for text, want in prompts:
        msgs = ({"role": "user", "content": text},)
        call = Generate(messages=msgs, tools=TOOLS, tool_choice="required", max_tokens=max_tokens)
        jobs.append(("constrained", want, call))
        jobs.append(("no budget (before)", want, dataclasses.replace(call, seed=BASELINE_SEED)))
        if unconstrained:
            plain = prepare(call)  # the same prompt, no logits processor: the unconstrained path
            jobs.append(("unconstrained", want, Generate(messages=tuple(plain.messages), max_tokens=max_tokens)))
    replies: list = [None] * len(jobs)

    async def one(i: int, call: Generate) -> None:  # each request is a process: all batch together
        async with k.session("bench") as sys:
            try:
                replies[i] = await sys.syscall(call)
            except InvalidArguments as exc:
                replies[i] = exc

    async with anyio.create_task_group() as tg:
        for i, (_cond, _want, call) in enumerate(jobs):
            tg.start_soon(one, i, call)
    tokens: dict[str, list[int]] = {c: [] for c in conds}
    for (cond, want, _call), c in zip(jobs, replies):
        if isinstance(c, InvalidArguments):
            refused[cond] = str(c)
            continue
        calls = list(c.tool_calls) if cond != "unconstrained" else parse(c.text, offered)[0]
        ok = bool(calls)
        results[cond].append((ok, ok and calls[0].name == want))
        tokens[cond].append(c.completion_tokens)
        if cond == "constrained" and not ok:
            print(f"  constrained, not a call ({c.finish_reason}): {c.text[:90]!r}")
    table = {}
    for cond, rows in results.items():
        if cond in refused:
            table[cond] = {"refused": refused[cond]}
            continue
        table[cond] = {"valid": sum(v for v, _ in rows) / len(rows), "right_tool": sum(r for _, r in rows) / len(rows),
                       "tokens": sum(tokens[cond]) / max(len(tokens[cond]), 1)}
    return table


async def react(k: Kernel, questions: list[tuple[str, float]]) -> tuple[int, list[str]]:
    pids = [(await k.spawn("react", q), q, v) for q, v in questions]
    ok, lines = 0, []
    for pid, q, v in pids:
        status = await k.wait(pid)
        answer = str(status.value if status.ok else status.error)
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))]
        good = any(abs(n - v) < 1e-6 for n in numbers)
        ok += good
        lines.append(f"  {'ok ' if good else 'BAD'} {q} -> {answer.strip()[:80]!r}")
    return ok, lines


async def main(quick: bool, budgets: list[int], skip_react: bool, unconstrained: bool) -> None:
    from llmasos.engine.hf import HFEngine

    t0 = time.perf_counter()
    engine = await anyio.to_thread.run_sync(HFEngine.from_pretrained, "smollm2-135m")
    print(f"model loaded in {time.perf_counter() - t0:.1f}s")
    prompts = PROMPTS[::4] if quick else PROMPTS
    questions = ARITHMETIC[:8] if quick else ARITHMETIC
    home = Path(tempfile.mkdtemp(prefix="llmasos-bench-"))  # the react processes' jails, the journal
    async with Kernel(KernelConfig(engine=engine, max_batch=64, home=home)) as k:
        _baseline_hook()
        print(f"\nTool-call validity on {engine.name}, {len(prompts)} prompts, tool_choice=required, "
              f"tools {', '.join(TOOLS)}:")
        print(f"  {'max_tokens':>10} {'condition':<19} {'valid':>7} {'right tool':>11} {'tokens':>7}   valid vs before")
        for max_tokens in budgets:
            t0 = time.perf_counter()
            ProcessorStats.reset()
            table = await validity(k, prompts, max_tokens, unconstrained)
            before = table["no budget (before)"].get("valid")
            for cond, row in table.items():
                if "refused" in row:
                    why = row["refused"].split(":", 1)[1].split(";")[0].strip()
                    print(f"  {max_tokens:>10} {cond:<19} refused up front: {why}")
                    continue
                ratio = f"{row['valid'] / before:.2f}x" if before else "-"
                print(f"  {max_tokens:>10} {cond:<19} {row['valid']:>7.0%} {row['right_tool']:>11.0%} "
                      f"{row['tokens']:>7.1f}   {ratio}")
            per = ProcessorStats.seconds / max(ProcessorStats.calls, 1)
            print(f"  {'':>10} grammar mask (both constrained conditions): {per * 1e3:.3f} ms per token over "
                  f"{ProcessorStats.calls} tokens; {time.perf_counter() - t0:.0f}s")
        if not skip_react:
            t0 = time.perf_counter()
            ok, lines = await react(k, questions)
            print(f"\nreact app on {len(questions)} arithmetic questions: {ok}/{len(questions)} correct "
                  f"({time.perf_counter() - t0:.0f}s)")
            print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="13 prompts and 8 questions (a few minutes)")
    ap.add_argument("--budgets", default="16,24,32,48,64", help="the max_tokens values, comma-separated")
    ap.add_argument("--max-tokens", type=int, default=None, help="one budget: the same as --budgets N")
    ap.add_argument("--skip-react", action="store_true")
    ap.add_argument("--unconstrained", action="store_true", help="also the unconstrained model (0%% valid so far)")
    args = ap.parse_args()
    budgets = [args.max_tokens] if args.max_tokens else [int(b) for b in args.budgets.split(",")]
    anyio.run(main, args.quick, budgets, args.skip_react, args.unconstrained)
