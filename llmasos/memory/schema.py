"""The memory database's tables (SQLAlchemy Core), as the latest migration leaves them.

Rule: this file describes the current schema for queries; only ``migrations.py`` changes a database.
A change here needs a new numbered migration (tests compare a migrated blank database with this file).
Values an app gave (args, results, memory values) are stored as codec JSON text.
"""

from __future__ import annotations

from sqlalchemy import (
    Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text,
)

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Database-wide values: ``db_id`` (in idempotency keys), ``next_pid`` (pids handed out below it),
``last_stop`` (since migration 4: ``clean`` after a shutdown, ``running`` while a kernel runs)."""

processes = Table(
    "processes", metadata,
    Column("pid", Integer, primary_key=True, autoincrement=False),
    Column("app", String(200), nullable=False),  # the app's name, for ps
    Column("spec", Text),  # how recovery finds the app again (name, module:attr, path:attr); None: cannot
    Column("args", Text, nullable=False),  # codec JSON of the bound args
    Column("kwargs", Text, nullable=False),
    Column("state", String(16), nullable=False),  # ProcState value
    Column("priority", Integer, nullable=False),
    Column("parent", Integer, nullable=False),
    Column("caps", Text, nullable=False),  # Caps.as_dict() JSON
    Column("usage", Text),  # Usage JSON, written when it ends
    Column("exit_value", Text),  # codec JSON
    Column("error", Text),  # traceback, or why it was killed or lost
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("spawn_key", String(80), unique=True),  # idempotency key of the spawn syscall that made it
    Column("restarts", Integer, nullable=False, server_default="0"),  # since migration 4: crash
    # recoveries in a row that restored it without it making progress (kernel/recovery.py decides)
    Column("restart_mark", Integer, nullable=False, server_default="-1"),  # since migration 4: its
    # journal's progress mark when it was last restored (-1: never restored)
    Index("ix_processes_state", "state"),
    Index("ix_processes_parent", "parent"),  # since migration 2
)

journal = Table(
    "journal", metadata,
    Column("pid", Integer, nullable=False),
    Column("n", Integer, nullable=False),  # the process's syscall number (1, 2, ...)
    Column("call", String(64), nullable=False),  # syscall type name
    Column("digest", String(32), nullable=False),  # codec.digest of the call
    Column("status", String(8), nullable=False),  # intent, ok, error
    Column("result", Text),  # codec JSON of the result, or the error message
    Column("error_type", String(200)),  # module:qualname of the error raised
    Column("at", Float, nullable=False),
    Column("span", Integer, nullable=False, server_default="0"),  # since migration 3: positions taken
    # by the syscalls made inside this one (a tool's memory calls, a chat's summary)
    PrimaryKeyConstraint("pid", "n"),
)

mailbox = Table(
    "mailbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("sender", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_mailbox_pid", "pid"),
)
"""Messages sent but not yet received (a received one is deleted with its recv's journal entry), and
unread stdin lines (``sender`` -1, ``journal.STDIN``; deleted with their readline's entry)."""

kv = Table(
    "kv", metadata,
    Column("namespace", String(200), nullable=False),
    Column("key", String(500), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated", Float, nullable=False),
    PrimaryKeyConstraint("namespace", "key"),
)

notes = Table(
    "notes", metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("tags", Text, nullable=False),  # JSON list of strings
    Column("created", Float, nullable=False),
    Column("key", String(120), unique=True),  # idempotency key: a retried remember adds nothing
    Index("ix_notes_namespace", "namespace"),
)
"""Long-term notes; SQLite indexes them in the FTS5 table ``notes_fts`` (kept by triggers)."""

context = Table(
    "context", metadata,
    Column("id", Integer, primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("role", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # turn, or summary (at most one, at the head)
    Column("key", String(120), unique=True),  # idempotency key: a retried chat appends nothing
    Column("created", Float, nullable=False),
    Index("ix_context_pid", "pid"),
)
