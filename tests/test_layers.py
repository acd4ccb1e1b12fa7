"""The layer rules of DESIGN.md, as import-linter contracts in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"  # from the test extra: pip install -e '.[test]'


def test_the_layer_contracts_hold() -> None:
    assert LINT.exists(), f"{LINT} is missing: install the test extra (pip install -e '.[test]')"
    r = subprocess.run([str(LINT), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[r.stdout.find("Contracts"):] + r.stderr
