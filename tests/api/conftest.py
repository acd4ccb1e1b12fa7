"""The HTTP API on a kernel with the FakeEngine, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.api.http import create_app
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Served:
    kernel: Kernel
    engine: FakeEngine
    app: Any  # the FastAPI app
    http: httpx.AsyncClient  # sends the token

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)


@asynccontextmanager
async def serving(tmp_path: Path, engine: FakeEngine | None = None, **config: Any) -> AsyncIterator[Served]:
    engine = engine or FakeEngine()
    if config.get("models") is not None:  # a model table instead of one engine (Served.engine: unused)
        kernel_config = KernelConfig(home=tmp_path, **config)
    else:
        kernel_config = KernelConfig(engine=engine, home=tmp_path, **config)
    async with Kernel(kernel_config) as kernel:
        app = create_app(kernel, TOKEN)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llmasos.test",
                                     headers=AUTH, timeout=10) as http:
            yield Served(kernel, engine, app, http)


@pytest.fixture
def served(tmp_path: Path):
    """``async with served() as s:`` a kernel on the FakeEngine, its API, and a client with the token."""
    return lambda **kw: serving(tmp_path, **kw)
