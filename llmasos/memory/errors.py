"""Errors of the memory manager: the database could not be opened, read or written.

Rule: every storage failure reaches the user as one of these, with the database's location and what
to do next; none of them is ever fixed by overwriting the user's data. They are syscall errors too, so
a process whose memory write failed can catch them and go on while the kernel stays up.
"""

from __future__ import annotations

from llmasos.syscalls.errors import SyscallError


class MemoryStoreError(SyscallError):
    """The memory database failed; the message names it and says what to do."""


class DatabaseLocked(MemoryStoreError):
    """Another program holds the database (or its write lock) for longer than the busy timeout."""


class DatabaseFull(MemoryStoreError):
    """The disk (or the database's size limit) is full."""


class DatabaseCorrupt(MemoryStoreError):
    """The file is not an llmasos database, or its pages are damaged; it is left untouched."""


class SchemaTooNew(MemoryStoreError):
    """The database was migrated by a newer llmasos than this one."""


class JournalError(MemoryStoreError):
    """A journal entry could not be encoded or decoded."""


class Fenced(MemoryStoreError):
    """This cluster node lost its lease (another node adopted its processes): it may commit nothing."""
