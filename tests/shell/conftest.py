"""A shell driven through prompt_toolkit's pipe input, over an in-process kernel on the FakeEngine."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from llmasos.client.local import LocalClient
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.shell import Shell


class Driver:
    """Types into the shell and waits for what it prints."""

    def __init__(self, shell: Shell, kernel: Kernel, engine: FakeEngine, pipe: Any, out: io.StringIO) -> None:
        self.shell, self.kernel, self.engine, self.pipe, self.buf = shell, kernel, engine, pipe, out
        self.pos = 0  # expect() searches from here
        self.done = anyio.Event()

    def send(self, keys: str) -> None:
        self.pipe.send_text(keys)

    def line(self, text: str) -> None:
        self.send(text + "\r")

    @property
    def text(self) -> str:
        return self.buf.getvalue()

    async def expect(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait until pattern appears in the output after the last match; move past it."""
        regex = re.compile(pattern, re.S)
        with anyio.move_on_after(timeout):
            while True:
                m = regex.search(self.text, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                await anyio.sleep(0.01)
        raise AssertionError(f"{pattern!r} did not appear; output after the last match:\n{self.text[self.pos:]}")

    async def ready(self, timeout: float = 5.0) -> None:
        """Wait until the shell shows its prompt (a command that holds the terminal has returned)."""
        with anyio.fail_after(timeout):
            while not self.shell.at_prompt:
                await anyio.sleep(0.01)

    async def run(self, command: str, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Type command at the prompt and wait for pattern."""
        await self.ready(timeout)
        self.line(command)
        return await self.expect(pattern, timeout)

    async def settle(self) -> str:
        """Run a no-op command and return everything printed since the last match."""
        start = self.pos
        self.line("help help")
        await self.expect(r"usage: help \[COMMAND\]")
        return self.text[start:self.pos]


@asynccontextmanager
async def running_shell(tmp_path: Path, **config: Any) -> AsyncIterator[Driver]:
    engine = config.pop("engine", None) or FakeEngine()
    if config.get("models") is not None:  # a model table instead of one engine (Driver.engine: unused)
        kernel_config = KernelConfig(home=tmp_path, **config)
    else:
        kernel_config = KernelConfig(engine=engine, home=tmp_path, **config)
    async with Kernel(kernel_config) as kernel:
        with create_pipe_input() as pipe:
            out = io.StringIO()
            shell = Shell(LocalClient(kernel), input=pipe, output=DummyOutput(), stdout=out, width=140,
                          color=False, history=tmp_path / "shell_history")
            driver = Driver(shell, kernel, engine, pipe, out)

            async def main() -> None:
                try:
                    await shell.run()
                finally:
                    driver.done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(main)
                with anyio.fail_after(30):
                    yield driver
                if not driver.done.is_set():
                    pipe.close()  # end of input: the shell returns
                    with anyio.move_on_after(2):
                        await driver.done.wait()
                tg.cancel_scope.cancel()


@pytest.fixture
def shell_at(tmp_path: Path):
    return lambda **config: running_shell(tmp_path, **config)
