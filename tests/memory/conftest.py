"""Fixtures for the memory tests: a kernel on a fresh database, and a way to restart it."""

from __future__ import annotations

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


