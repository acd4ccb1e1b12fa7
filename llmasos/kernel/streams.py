"""Streamed generate calls under the journal: record a live stream, replay a recorded one.

Rule: both behave like ``kernel.llm.TokenStream`` towards ``Sys`` (async iteration of text chunks,
``completion``, ``collect()``, ``close()``). A replayed stream yields exactly the chunks the app saw
the first time, so code that writes each chunk makes the same syscalls again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from llmasos.syscalls.types import Completion, ReplyStream


class JournaledStream(ReplyStream):
    """A live TokenStream whose chunks and completion are journaled before the last one is seen."""

    def __init__(self, stream: Any, record: Callable[[dict[str, Any]], Awaitable[None]],
                 record_later: Callable[[dict[str, Any]], None]) -> None:
        self._stream = stream
        self._record, self._record_later = record, record_later
        self.chunks: list[str] = []
        self._recorded = False

    def __aiter__(self) -> JournaledStream:
        return self

    @property
    def completion(self) -> Completion | None:
        return self._stream.completion

    @property
    def seq(self) -> Any:
        return getattr(self._stream, "seq", None)

    async def __anext__(self) -> str:
        try:
            text = await self._stream.__anext__()
        except StopAsyncIteration:
            await self._finish()
            raise
        self.chunks.append(text)
        if self._stream.completion is not None:
            # Invariant: the last chunk reaches the app only once the whole reply is journaled.
            await self._finish()
        return text

    async def _finish(self) -> None:
        if not self._recorded:
            self._recorded = True
            await self._record({"chunks": self.chunks, "completion": self._stream.completion})

    def close(self) -> None:
        """Stop early; what the app saw so far is journaled (a replay stops at the same chunk)."""
        if not self._recorded:
            self._recorded = True
            self._record_later({"chunks": list(self.chunks), "completion": None})
        self._stream.close()


class ReplayStream(ReplyStream):
    """The recorded chunks of a streamed generate, without the model."""

    def __init__(self, chunks: list[str], completion: Completion | None) -> None:
        self._chunks = list(chunks)
        self._final = completion or Completion(text="".join(chunks), finish_reason="abort")
        self._whole = completion is not None  # False: the app closed it early the first time
        self._pos = 0
        self.completion: Completion | None = None
        if not self._chunks and self._whole:
            self.completion = self._final

    def __aiter__(self) -> ReplayStream:
        return self

    async def __anext__(self) -> str:
        if self._pos >= len(self._chunks):
            self.completion = self._final
            raise StopAsyncIteration
        text = self._chunks[self._pos]
        self._pos += 1
        if self._pos == len(self._chunks) and self._whole:
            self.completion = self._final
        return text

    def close(self) -> None:
        self._pos = len(self._chunks)
