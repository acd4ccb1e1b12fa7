"""The idempotency key of the syscall running now, for tools with side effects.

Rule: this module imports nothing heavy, so tools and the kernel's handlers can read the key cheaply.
``journal.py`` sets it around each live syscall; it is ``"<db id>-<pid>-<n>"``: stable per process
and syscall position, so a call re-issued after a crash has the same key.
"""

from __future__ import annotations

import contextvars

KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmasos_idempotency_key", default=None)


def current_idempotency_key() -> str | None:
    """The idempotency key of the syscall running in this task; None outside one or without a journal.

    A tool with a side effect can do it once per key and return the first result after that.
    """
    return KEY.get()
