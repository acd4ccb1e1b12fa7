"""Numbered schema migrations, applied in order to bring any database (blank included) up to date.

Rule (after simon willison's llm): the list is append-only. A migration, once released, is never
edited; a schema change is a new function at the end. ``schema_version`` holds how many have run.
Each migration runs in its own transaction with its version bump, so a crash leaves a database at a
whole version. A database newer than this code is refused, never downgraded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import (
    Column, Connection, Float, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text, text,
)

from llmasos.memory import schema as s
from llmasos.memory.errors import SchemaTooNew

Migration = Callable[[Connection], None]

# The journal table as migration 1 made it (schema.journal has grown since: see m003).
_JOURNAL_V1 = Table(
    "journal", MetaData(),
    Column("pid", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    Column("call", String(64), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("status", String(8), nullable=False),
    Column("result", Text),
    Column("error_type", String(200)),
    Column("at", Float, nullable=False),
    PrimaryKeyConstraint("pid", "n"),
)

# The process table as migration 1 makes it (schema.processes has grown since: see m004).
_PROCESSES_V1 = Table(
    "processes", MetaData(),
    Column("pid", Integer, primary_key=True, autoincrement=False),
    Column("app", String(200), nullable=False),
    Column("spec", Text),
    Column("args", Text, nullable=False),
    Column("kwargs", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("parent", Integer, nullable=False),
    Column("caps", Text, nullable=False),
    Column("usage", Text),
    Column("exit_value", Text),
    Column("error", Text),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("spawn_key", String(80), unique=True),
    Index("ix_processes_state", "state"),
    Index("ix_processes_parent", "parent"),  # (m002 makes it on databases older than that)
)


def m001_initial(conn: Connection) -> None:
    """Process table, journal, mailboxes, key-value, notes (with full-text index), contexts."""
    # Invariant: once a later migration alters one of these tables, copy its version-1 definition
    # into this function first, so that a blank database still goes through every version.
    for table in (s.meta, _PROCESSES_V1, _JOURNAL_V1, s.mailbox, s.kv, s.notes, s.context):
        table.create(conn)
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.execute(text(
            "CREATE VIRTUAL TABLE notes_fts USING fts5(text, tags, content='notes', content_rowid='id')"
        ))
        conn.execute(text(
            "CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN "
            "INSERT INTO notes_fts(rowid, text, tags) VALUES (new.id, new.text, new.tags); END"
        ))
        conn.execute(text(
            "CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN "
            "INSERT INTO notes_fts(notes_fts, rowid, text, tags) VALUES ('delete', old.id, old.text, "
            "old.tags); END"
        ))
    elif dialect == "postgresql":
        conn.execute(text(
            "CREATE INDEX ix_notes_fts ON notes USING gin (to_tsvector('simple', text || ' ' || tags))"
        ))
    conn.execute(s.meta.insert(), [
        {"key": "db_id", "value": uuid.uuid4().hex[:12]},
        {"key": "next_pid", "value": "1"},
    ])


def m002_processes_parent_index(conn: Connection) -> None:
    """An index on processes.parent: recovery finds a restored parent's ended children without a scan.

    (IF NOT EXISTS: on a blank database m001 already made it, from schema.py.)
    """
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_processes_parent ON processes (parent)"))


def m003_journal_span(conn: Connection) -> None:
    """journal.span: how many positions the syscalls made inside a journaled call took, so that a
    restored process that replays the call skips them (a memory tool's nested syscalls)."""
    conn.execute(text("ALTER TABLE journal ADD COLUMN span INTEGER NOT NULL DEFAULT 0"))


def m004_process_restarts(conn: Connection) -> None:
    """processes.restarts and restart_mark: how many crash recoveries in a row restored a process without
    it making progress, so that a call that crashes the kernel is not re-run at every boot; and
    meta.last_stop, so that a clean shutdown is not counted as a crash (an existing database: clean)."""
    conn.execute(text("ALTER TABLE processes ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE processes ADD COLUMN restart_mark INTEGER NOT NULL DEFAULT -1"))
    conn.execute(s.meta.insert(), [{"key": "last_stop", "value": "clean"}])


FENCED_TABLES = ("processes", "journal", "mailbox", "kv", "notes", "context", "meta")
FENCE_FUNCTION = """
CREATE FUNCTION llmasos_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me text := current_setting('llmasos.node', true);
    held record;
BEGIN
    IF me IS NULL OR me = '' THEN
        RETURN NULL;
    END IF;
    SELECT epoch, state INTO held FROM nodes WHERE node_id = me FOR KEY SHARE;
    IF NOT FOUND OR held.epoch <> current_setting('llmasos.epoch')::integer OR held.state <> 'alive' THEN
        RAISE EXCEPTION 'llmasos fenced: cluster node % lost its lease', me USING ERRCODE = 'LF001';
    END IF;
    RETURN NULL;
END $$
"""
"""The fence of a cluster node's writes (PostgreSQL; memory/cluster.py): a statement on a kernel's table,
from a session that set ``llmasos.node`` and ``llmasos.epoch``, first takes a KEY SHARE lock on the node's
row and fails unless the row still holds that epoch; other sessions (a lone kernel) skip it."""


def m005_cluster(conn: Connection) -> None:
    """A cluster of kernels on one PostgreSQL (kernel/cluster.py): the nodes table (leases and fencing
    epochs), processes.node and node_epoch (which node runs a process), the requests table (root-user
    operations on another node's process), meta.next_mail (mailbox row ids, handed out in blocks), and on
    PostgreSQL the fence trigger on every table a kernel writes (FENCE_FUNCTION)."""
    conn.execute(text("ALTER TABLE processes ADD COLUMN node VARCHAR(64)"))
    conn.execute(text("ALTER TABLE processes ADD COLUMN node_epoch INTEGER"))
    conn.execute(text("CREATE INDEX ix_processes_node ON processes (node)"))
    s.nodes.create(conn)
    s.requests.create(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(text(FENCE_FUNCTION))
        for table in FENCED_TABLES:
            conn.execute(text(f"CREATE TRIGGER {table}_fence BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                              "FOR EACH STATEMENT EXECUTE FUNCTION llmasos_fence()"))
    top = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM mailbox")).scalar_one()
    conn.execute(s.meta.insert(), [{"key": "next_mail", "value": str(int(top) + 1)}])


MIGRATIONS: list[Migration] = [m001_initial, m002_processes_parent_index, m003_journal_span,
                               m004_process_restarts, m005_cluster]


def current_version(conn: Connection) -> int:
    """How many migrations this database has had (0 for a blank one)."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    return int(conn.execute(text("SELECT version FROM schema_version")).scalar_one())


def migrate(conn: Connection) -> int:
    """Apply the missing migrations (each committed on its own); return the version reached.

    ``conn`` must not be in a transaction; this opens one per migration.
    """
    with conn.begin():
        version = current_version(conn)
        if version == 0 and not conn.dialect.has_table(conn, "schema_version"):
            conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO schema_version (version) VALUES (0)"))
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"the memory database is at schema version {version}, but this llmasos knows only "
            f"{len(MIGRATIONS)}; upgrade llmasos (the database was left untouched)"
        )
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn.begin():
            migration(conn)
            conn.execute(text("UPDATE schema_version SET version = :v"), {"v": number})
    return len(MIGRATIONS)
