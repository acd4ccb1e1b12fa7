"""Prefix sharing across processes: N agents that share one long tool prompt, with and without the cache.

Workload: the shape of N `react` processes started together: each asks the model once with the same
system prompt (instructions and the calculator and clock tools' JSON schemas, ~300 tokens) and its own
short question (a chat of two messages), greedy, a fixed number of new tokens. They go through the
kernel's LLM loop without the kernel (scheduler fifo, default limits: bench/_common.drive_loop) on the
default model. Arms, on the same engine, interleaved and repeated: the prefix cache off
(``prefix_cache_tokens=0``) and on (cold at the start of each run: the tool prompt is prefilled once
during the run, then shared). Columns: mean time to first token over the N, end-to-end generated
tokens/s, and the ratios on/off; each figure is the mean over the repeats with its min-max spread.
The outputs of both arms are compared token for token.

Usage: python bench/prefix.py [--n 32] [--tokens 32] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _common import add_threads_flag, drive_loop, load_engine, table

from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.prefix import PrefixCache

TOOLS = [
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression exactly and return the number.",
        "parameters": {"type": "object", "properties": {"expression": {
            "type": "string", "description": "the expression, e.g. (17 * 23) + 4; + - * / ** and parentheses"}},
            "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "clock", "description": "The current date and time in a time zone, as ISO 8601 text.",
        "parameters": {"type": "object", "properties": {"timezone": {
            "type": "string", "description": "an IANA time zone name such as Europe/Paris; UTC when omitted"}},
            "required": []}}},
]
SYSTEM = ("You are a careful assistant that answers questions by calling tools. Think about which tool "
          "answers the question, call it with a JSON object {\"tool\": NAME, \"arguments\": {...}}, read its "
          "result, and then answer in one short sentence. Never guess a number or a time: call the tool. "
          "If no tool fits, say so plainly. The tools you may call are described by these JSON schemas:\n"
          + json.dumps(TOOLS, indent=1))
QUESTIONS = ["What is 17 times 23?", "What time is it in Tokyo?", "How much is 2 to the power 20?",
             "What is 1234 divided by 7?", "What day is it today in UTC?", "What is 99 squared?",
             "Add 451 and 872.", "What time is it in Paris?"]


def requests(n: int, tokens: int) -> list[Sequence]:
    return [Sequence(pid=i + 1, params=SamplingParams(max_tokens=tokens), messages=[
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Question {i}: {QUESTIONS[i % len(QUESTIONS)]}"}]) for i in range(n)]


def run(engine, n: int, tokens: int, cache_tokens: int) -> tuple[float, float, list[list[int]], float]:
    engine.prefix = PrefixCache(cache_tokens, engine.prefix.block)  # cold (or off) for this run
    seqs = requests(n, tokens)
    t0 = time.perf_counter()
    ttft = drive_loop(engine, seqs)
    wall = time.perf_counter() - t0
    produced = sum(len(s.output_ids) for s in seqs)
    return statistics.fmean(ttft.values()), produced / wall, [s.output_ids for s in seqs], engine.prefix.stats.hit_rate


def spread(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="processes (requests) started together")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per request")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache-tokens", type=int, default=4096, help="prefix_cache_tokens of the 'on' arm")
    ap.add_argument("--quick", action="store_true", help="8 requests, 8 tokens, 1 repeat (a smoke run)")
    add_threads_flag(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.tokens, args.repeats = 8, 8, 1
    engine = load_engine(args.threads, ignore_eos=True)  # fixed lengths: equal work in both arms
    probe = requests(1, 1)[0]
    engine.prepare(probe)
    prompt = len(probe.prompt_ids)
    print(f"# {args.n} requests x {args.tokens} new tokens; prompt {prompt} tokens, the system prompt shared; "
          f"block {engine.prefix.block}; weights {engine.weights}")
    run(engine, 2, 2, 0)  # warm-up, off the clock
    arms: dict[str, dict[str, list[float]]] = {a: {"ttft": [], "tps": [], "hit": []} for a in ("off", "on")}
    outputs: dict[str, list[list[int]]] = {}
    loads = []
    for r in range(args.repeats):
        for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
            ttft, tps, out, hit = run(engine, args.n, args.tokens, args.cache_tokens if arm == "on" else 0)
            arms[arm]["ttft"].append(ttft)
            arms[arm]["tps"].append(tps)
            arms[arm]["hit"].append(hit)
            outputs[arm] = out
            print(f"# repeat {r + 1} {arm}: mean TTFT {ttft:.2f} s, {tps:.1f} tok/s, hit rate {hit:.0%}", flush=True)
        loads.append(os.getloadavg()[0])
    off, on = arms["off"], arms["on"]
    rows = [
        ["cache off", spread(off["ttft"]), spread(off["tps"]), "-", "1.00", "1.00"],
        ["cache on", spread(on["ttft"]), spread(on["tps"]), f"{statistics.fmean(on['hit']):.0%}",
         f"{statistics.fmean(off['ttft']) / statistics.fmean(on['ttft']):.2f}x TTFT cut",
         f"{statistics.fmean(on['tps']) / statistics.fmean(off['tps']):.2f}x"],
    ]
    print(table(["arm", "mean TTFT s (min-max)", "tok/s (min-max)", "prompt hit rate", "TTFT ratio",
                 "tok/s ratio"], rows))
    same = sum(a == b for a, b in zip(outputs["off"], outputs["on"]))
    print(f"# greedy outputs equal with and without the cache: {same}/{args.n}; "
          f"load average after each repeat: {', '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
