"""The public face, `llmasos`: every name importable from it, none loaded before it is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import llmasos

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["App", "Application", "Completion", "ExitStatus", "Kernel", "KernelConfig", "LLM", "LlmasosError", "Message",
         "ProcInfo", "ProcState", "Sys", "Tool", "ToolContext", "tool", "__version__"]


def test_every_public_name_is_importable() -> None:
    assert sorted(llmasos.__all__) == sorted(NAMES)
    for name in NAMES:
        assert getattr(llmasos, name) is not None and name in dir(llmasos)
    from llmasos import Kernel, tool  # noqa: F401  (the from-import form too)

    with pytest.raises(AttributeError, match="no attribute 'Kernle'"):
        llmasos.Kernle  # noqa: B018


def test_importing_llmasos_loads_no_kernel() -> None:
    code = ("import sys, llmasos; from llmasos import LlmasosError, Sys; "
            "print(sorted(m for m in sys.modules if m.startswith(('llmasos.kernel', 'llmasos.engine', 'torch'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
