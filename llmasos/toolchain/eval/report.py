"""What an evaluation shows: a rich table in the terminal, a JSON report, and a matplotlib figure.

Rule: everything here reads ``ModelReport`` values and writes; nothing runs a model. The figure is
drawn with the Agg backend (no display needed): per-task bars side by side per model, and, with a
perplexity task, the distribution of the perplexity of each 64-token span of the text per model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from llmasos.errors import LlmasosError
from llmasos.toolchain.eval.runner import SPAN, ModelReport

RATES = {"exact_match", "contains", "valid_call_rate", "right_tool_rate", "accuracy", "call_validity"}  # shown as %


class ReportError(LlmasosError):
    """The report or the figure could not be written."""


def table(reports: list[ModelReport]) -> Table:
    """One row per (task, metric), one column per model."""
    t = Table(title="llmasos eval", show_lines=False)
    t.add_column("task")
    t.add_column("metric")
    for r in reports:
        t.add_column(r.model, justify="right")
    for task, metric in _rows(reports):
        cells = []
        for r in reports:
            value = next((tr.metrics.get(metric) for tr in r.tasks if tr.kind == task), None)
            cells.append(_fmt(metric, value))
        t.add_row(task, metric, *cells)
    for r in reports:
        t.caption = (t.caption + "; " if t.caption else "") + f"{r.model}: " + ", ".join(
            f"{tr.kind} {tr.seconds:.1f}s" for tr in r.tasks)
    return t


def as_json(reports: list[ModelReport], **meta: Any) -> dict[str, Any]:
    """The whole evaluation as JSON-ready data: metrics, per-item rows and distributions per model."""
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta,
            "models": [_clean(asdict(r)) for r in reports]}


def write_json(reports: list[ModelReport], path: str | Path, **meta: Any) -> None:
    _write(Path(path), json.dumps(as_json(reports, **meta), indent=2, ensure_ascii=False) + "\n")


def plot(reports: list[ModelReport], path: str | Path) -> None:
    """Draw the comparison figure into path (PNG, or any format matplotlib knows by the suffix)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rates = [(task, metric) for task, metric in _rows(reports) if metric in RATES or metric == "bleu"]
    ppl = any(tr.kind == "perplexity" for r in reports for tr in r.tasks)
    panels = 1 + ppl
    fig, axes = plt.subplots(1, panels, figsize=(6.5 + 3.5 * ppl, 3.8), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(len(reports), 1)
    for m, r in enumerate(reports):
        values = []
        for task, metric in rates:
            v = next((tr.metrics.get(metric) for tr in r.tasks if tr.kind == task), None)
            values.append(0.0 if v is None else (v / 100 if metric == "bleu" else v))
        xs = [i + (m - (len(reports) - 1) / 2) * width for i in range(len(rates))]
        ax.bar(xs, values, width, label=r.model)
    ax.set_xticks(range(len(rates)), [f"{t}\n{_short(mt)}" for t, mt in rates], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (BLEU / 100)")
    ax.set_title("Scores per task")
    ax.legend(fontsize=7)
    if ppl:
        ax2 = axes[0][1]
        data = [next((tr.distribution for tr in r.tasks if tr.kind == "perplexity"), []) for r in reports]
        ax2.boxplot([d or [math.nan] for d in data], showfliers=False)
        for m, d in enumerate(data, 1):  # every span as a dot, spread sideways so they do not hide each other
            ax2.scatter([m + 0.25 * ((i * 0.618) % 1 - 0.5) for i in range(len(d))], d, s=8, alpha=0.6)
        ax2.set_xticks(range(1, len(reports) + 1), [r.model for r in reports], fontsize=7)
        ax2.set_yscale("log")
        ax2.set_ylabel(f"perplexity of each {SPAN}-token span (log)")
        ax2.set_title("Perplexity distribution")
    fig.tight_layout()
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot write the figure {path}: {exc}; give a writable .png path") from None
    finally:
        plt.close(fig)


def _short(metric: str) -> str:
    return metric.removesuffix("_rate").replace("_", " ")


def _rows(reports: list[ModelReport]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for r in reports:
        for tr in r.tasks:
            for metric in tr.metrics:
                if (tr.kind, metric) not in seen:
                    seen.append((tr.kind, metric))
    return seen


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "failed"
    if metric in RATES:
        return f"{100 * value:.1f}%"
    if metric == "tokens":
        return f"{int(value)}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}; give a writable path") from None


__all__ = ["ReportError", "as_json", "plot", "table", "write_json"]
