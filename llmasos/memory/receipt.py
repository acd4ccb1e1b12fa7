"""Receipts for queued database writes: what a caller awaits to know its rows are committed.

Rule: a receipt is cheap and optional. The writes it stands for are committed whether or not anyone
awaits it; awaiting it makes them commit at once (they wait for no group) and raises the error of one
that failed there, instead of reporting it to the writer's ``on_error``. This module imports no
database driver, so the kernel can hold receipts without loading SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmasos.memory.writer import Writer, _Pending


class Receipt:
    """Posted writes: ``await receipt`` returns once they are committed; the first that failed raises."""

    __slots__ = ("_writer", "_ops")

    def __init__(self, writer: Writer | None, ops: tuple[_Pending, ...]) -> None:
        self._writer, self._ops = writer, ops

    @staticmethod
    def join(receipts: list[Receipt]) -> Receipt:
        """One receipt for all of these."""
        writer = next((r._writer for r in receipts if r._writer is not None), None)
        return Receipt(writer, tuple(op for r in receipts for op in r._ops))

    def __await__(self) -> Generator[Any, None, None]:
        return self._settle().__await__()

    async def _settle(self) -> None:
        if self._writer is not None and self._ops:
            await self._writer.settle(self._ops)


DONE = Receipt(None, ())
"""Nothing was queued (no database, or nothing to write): awaiting it returns at once."""
