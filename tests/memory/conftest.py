"""Fixtures for the memory tests: a kernel on a fresh database, and a way to restart it."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

from llmasos import KernelConfig
from llmasos.engine.fake import FakeEngine

APPS = Path(__file__).with_name("durable_apps.py").resolve()


def spec(attr: str) -> str:
    """The path spec of an app in durable_apps.py (how a restarted kernel finds it again)."""
    return f"{APPS}:{attr}"


def config(home: Path, **kw) -> KernelConfig:
    kw.setdefault("engine", FakeEngine())
    return KernelConfig(home=home, **kw)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def _collect_abandoned_streams():
    """Stopgap: a kernel shut down mid-generate (our simulated crash) leaves the LLM loop's token
    streams unclosed; collect them here, quietly, so their ResourceWarning does not land on another
    test. (Reported to the kernel owner: LLMLoop should close its routes when it stops.)"""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
