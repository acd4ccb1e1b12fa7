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
    Column("node", String(64)),  # since migration 5: the cluster node that runs it (None: no cluster)
    Column("node_epoch", Integer),  # since migration 5: that node's lease epoch when it took the process
    Index("ix_processes_state", "state"),
    Index("ix_processes_parent", "parent"),  # since migration 2
    Index("ix_processes_node", "node"),  # since migration 5
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

nodes = Table(
    "nodes", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("epoch", Integer, nullable=False),  # fencing token: bumped at each join and each takeover
    Column("state", String(8), nullable=False),  # alive, dead (taken over) or stopped (clean shutdown)
    Column("heartbeat", Float, nullable=False),  # database clock (seconds) of its last heartbeat
    Column("lease_until", Float, nullable=False),  # database clock past which another node may adopt
    Column("address", Text),  # where it serves (for people reading the table)
    Column("started", Float, nullable=False),
)
"""Since migration 5: the kernels of a cluster (kernel/cluster.py); times are the database's clock."""

requests = Table(
    "requests", metadata,
    Column("id", Integer, primary_key=True),
    Column("node", String(64), nullable=False),  # the node that owns pid (it applies the request)
    Column("pid", Integer, nullable=False),
    Column("op", String(16), nullable=False),  # kill, send, stdin, close, logs
    Column("body", Text),  # codec JSON of the message or the text
    Column("state", String(8), nullable=False),  # asked, taken, done, failed
    Column("answer", Text),  # codec JSON of the result, or the error message (failed)
    Column("error_type", String(200)),  # module:qualname of the error raised (failed)
    Column("created", Float, nullable=False),
    Index("ix_requests_node_state", "node", "state"),
)
"""Since migration 5: root-user operations on a process another node runs, applied by that node."""
