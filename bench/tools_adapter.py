"""react on the base model and on the smollm2-135m-tools adapter, constrained and free, over the shipped
evaluation sets: the table and the figure of docs/tools.md.

Run: ``python bench/tools_adapter.py --out /tmp/tools-eval [--limit N]`` (after
``llmasos models build smollm2-135m-tools``). Each configuration is one ``llmasos eval --agent`` run
(``--free`` for the unconstrained ones) whose JSON report lands in ``--out``; ``--report-only``
rebuilds the table and ``docs/img/tools-adapter.png`` from the reports already there; ``--only TEXT``
runs the configurations whose name (``MODEL.MODE.SET``) contains TEXT. The baseline is the base
model, constrained, measured in the same run; each configuration's wall time and the 1-minute load
(``uptime``) at its start and end are kept next to its report (``NAME.run.json``) and shown in the
table, as the machine is shared. Decoding is greedy: a rerun gives the same answers, only the times
move.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = {"wordproblems": ROOT / "llmasos/toolchain/data/eval/wordproblems.jsonl",
        "expressions": ROOT / "llmasos/toolchain/data/eval/expressions.jsonl"}
MODELS = ("smollm2-135m", "smollm2-135m-tools")
MODES = ("constrained", "free")
FIGURE = ROOT / "docs" / "img" / "tools-adapter.png"


def configs() -> list[tuple[str, str, str]]:
    return [(m, mode, s) for s in SETS for m in MODELS for mode in MODES]


def name(model: str, mode: str, kind: str) -> str:
    return f"{model}.{mode}.{kind}"


def load() -> float:
    return round(os.getloadavg()[0], 1)


def run(out: Path, limit: int | None, only: str | None) -> None:
    for model, mode, kind in configs():
        if only and only not in name(model, mode, kind):
            continue
        cmd = [sys.executable, "-m", "llmasos.cli", "eval", model, "--agent", str(SETS[kind]),
               "--json", str(out / f"{name(model, mode, kind)}.json")]
        cmd += ["--free"] if mode == "free" else []
        cmd += ["--limit", str(limit)] if limit else []
        before, t0 = load(), time.monotonic()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        ran = {"seconds": round(time.monotonic() - t0), "load": [before, load()]}
        (out / f"{name(model, mode, kind)}.run.json").write_text(json.dumps(ran))
        print(f"{name(model, mode, kind)}: {ran['seconds']} s, load {before} -> {ran['load'][1]}", flush=True)


def metrics(out: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    found = {}
    for model, mode, kind in configs():
        path = out / f"{name(model, mode, kind)}.json"
        if path.is_file():
            task = json.loads(path.read_text())["models"][0]["tasks"][0]
            ran = {i.get("model") for i in task["items"]}
            timing = out / f"{name(model, mode, kind)}.run.json"
            when = json.loads(timing.read_text()) if timing.is_file() else {"seconds": None, "load": None}
            found[(model, mode, kind)] = {**task["metrics"], "items": len(task["items"]), "ran": ",".join(sorted(ran)),
                                          **when}
    return found


def table(found: dict[tuple[str, str, str], dict[str, float]]) -> str:
    head = ("| set | model | decoding | items | accuracy | vs base constrained | call validity | mean steps "
            "| mean tokens | react ran on | wall s | load (1 min, start → end) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, mode, kind), m in found.items():
        base = found.get((MODELS[0], "constrained", kind))
        ratio = f"{m['accuracy'] / base['accuracy']:.2f}x" if base and base["accuracy"] else "–"
        lines.append(f"| {kind} | {model} | {mode} | {m['items']} | {m['accuracy']:.1%} | {ratio} | "
                     f"{m['call_validity']:.1%} | {m['mean_steps']:.2f} | {m['mean_tokens']:.0f} | {m['ran']} | "
                     f"{m['seconds'] if m['seconds'] is not None else '–'} | "
                     f"{' → '.join(map(str, m['load'])) if m['load'] else '–'} |")
    return "\n".join(lines)


def plot(found: dict[tuple[str, str, str], dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for ax, metric, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "call_validity", "tool-call validity")):
        for i, kind in enumerate(SETS):
            for j, (model, mode) in enumerate((m, d) for m in MODELS for d in MODES):
                m = found.get((model, mode, kind))
                if m is None:
                    continue
                x = i * 5 + j
                ax.bar(x, 100 * m[metric], color=f"C{j}", label=f"{model}, {mode}" if i == 0 else None)
                ax.text(x, 100 * m[metric] + 1, f"{100 * m[metric]:.0f}", ha="center", fontsize=7)
        ax.set_xticks([1.5, 6.5], list(SETS))
        ax.set_ylim(0, 110)
        ax.set_ylabel(f"{label} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("react on the shipped evaluation sets")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of the JSON reports")
    ap.add_argument("--limit", type=int, default=None, help="at most N items per set (a sample)")
    ap.add_argument("--report-only", action="store_true", help="only the table and figure from --out")
    ap.add_argument("--only", default=None, help="run only the configurations whose MODEL.MODE.SET holds this")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run(args.out, args.limit, args.only)
    found = metrics(args.out)
    print(table(found))
    plot(found, FIGURE)
    print(f"figure: {FIGURE}")


if __name__ == "__main__":
    main()
