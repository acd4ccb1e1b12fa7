"""KernelConfig: every field documented once in docs/architecture.md, bad values refused."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from llmasos.kernel.config import ConfigError, KernelConfig
from llmasos.kernel.sched import SchedLimits
from llmasos.tools.limits import TOOL_LIMITS, ToolLimits

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table(path: Path, section: str, header: str) -> dict[str, tuple[str, str]]:
    """The table with this header row in this section: first column (no backticks) -> (default, meaning)."""
    text = path.read_text()
    lines = text[text.index(section + "\n"):].splitlines()
    start = lines.index(header)
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 3, line
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        rows[name] = (cells[1], cells[2])
    return rows


def limits_table() -> dict[str, tuple[str, str]]:
    return table(DOCS / "architecture.md", "## Limits", "| field | default | meaning |")


def test_every_field_is_in_the_limits_table() -> None:
    rows = limits_table()
    names = [f.name for f in fields(KernelConfig)]
    assert sorted(rows) == sorted(names), "docs/architecture.md's Limits table and KernelConfig disagree"
    assert all(default and meaning for default, meaning in rows.values())


def test_the_table_states_each_numeric_default() -> None:
    rows = limits_table()
    for f in fields(KernelConfig):
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            assert float(rows[f.name][0]) == f.default, f.name


def test_every_tool_limit_is_in_the_tools_table() -> None:
    rows = table(DOCS / "tools.md", "## Built-in tools", "| limit | default | meaning |")
    limits = {f.name: getattr(TOOL_LIMITS, f.name) for f in fields(ToolLimits)}
    assert sorted(rows) == sorted(limits)
    assert {k: float(rows[k][0]) for k in limits} == {k: float(v) for k, v in limits.items()}


@pytest.mark.parametrize("field", ["starvation_steps", "wal_checkpoint_every", "summary_min_tokens",
                                   "max_batch", "pid_block"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "8"])
def test_counts_must_be_positive_integers(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        KernelConfig(**{field: value})


def test_scheduler_limits_are_the_configs() -> None:
    assert SchedLimits() == SchedLimits.from_config(KernelConfig())
    cfg = KernelConfig(max_batch=3, max_step_tokens=50, max_resident_tokens=500, quantum=2, starvation_steps=7)
    assert SchedLimits.from_config(cfg) == SchedLimits(3, 50, 500, 2, 7)


@pytest.mark.parametrize("value", [0, -5, True, "10"])
def test_tool_limits_refuse_bad_values(value: object) -> None:
    with pytest.raises(ValueError, match="read_chars"):
        ToolLimits(read_chars=value)  # type: ignore[arg-type]
