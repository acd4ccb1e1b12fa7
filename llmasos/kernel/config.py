"""Every limit and path the kernel and its memory manager use, in one validated record.

Rule: no module of the kernel or of memory/ invents a limit; it reads it from here (memory/ gets the
values as arguments, from ``MemoryManager.open(config)``). Each field is documented once, in the
comment beside it and in docs/architecture.md's Limits table (a test keeps the table complete). The
engine's own options are ``HFEngine``'s constructor's; the built-in tools' bounds are
``llmasos.tools.limits.ToolLimits``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.errors import LlmasosError
from llmasos.home import llmasos_home


_NODE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ConfigError(LlmasosError):
    """A KernelConfig value is out of range."""


SANDBOX_LIMITS: dict[str, Any] = {
    "address_space": 4 << 30, "cpu_seconds": None, "open_files": 256, "processes": None,
    "start_seconds": 30.0, "message_bytes": 64 << 20, "calls_in_flight": 256,
}


@dataclass(slots=True)
class KernelConfig:
    """Limits, policies and paths for one kernel."""

    engine: Any = None  # an Engine, a model name/path, or None for the default model (the kernel's one model
    # when models is None; give one or the other)
    models: dict[str, Any] | None = None  # the model table: name -> an engine spec string, an Engine, or a
    # dict {engine, policy, limits, options, default} (kernel/models.py); None: the one model of engine
    default_model: str | None = None  # the model a generate without model= uses; None: the entry marked
    # default, else the first one
    policy: str = "fifo"  # scheduling policy: fifo, rr, priority, fair
    max_procs: int = 4096  # live (not yet reaped) processes in the table
    max_zombies: int = 1024  # exited processes kept for wait/ps before the oldest are reaped
    mailbox_size: int = 1024  # unread messages a process may hold; past it, send raises MailboxFull
    stdout_lines: int = 2000  # stdout/stderr writes kept per process for logs/attach; also how many a
    # follower (attach, logs -f) may fall behind before it is dropped
    kill_grace: float = 2.0  # seconds a killed process may take to unwind before it is reported
    shutdown_grace: float = 5.0  # seconds shutdown waits for the processes to unwind before it abandons
    # the ones that ignore cancellation (their tasks cannot be stopped in-process) and returns
    max_recoveries: int = 3  # crash recoveries in a row that may restore a process without it making
    # progress (no new journal entry) before it is marked lost instead: a call that crashes the kernel
    # is not re-run at every boot
    max_batch: int = 32  # sequences in one forward step (also the engine's, when the kernel builds it)
    weights: str | None = None  # the format the engine's native decode step reads when the kernel builds
    # the engine: "q4_1" (a GGUF model's own blocks), "q8_0", "bf16", "fp32"; None: the engine's default
    kv_dtype: str | None = None  # the KV cache's element type when the kernel builds the engine: "bf16"
    # (half the bytes the native step's attention reads) or "fp32"; None: the engine's default
    max_step_tokens: int = 2048  # tokens computed in one forward step (a prefill counts its whole prompt)
    max_resident_tokens: int = 65536  # KV-cache tokens held at once (also the engine's, when the kernel
    # builds it); over it the scheduler preempts running sequences
    prefix_cache_tokens: int = 4096  # tokens of prompt-prefix KV the engine keeps to share across processes
    # when the kernel builds it (engine/prefix.py; counted in max_resident_tokens); 0: no prefix cache
    prefix_block: int = 16  # tokens per prefix-cache block: prompts share KV in whole blocks of this size
    lazy_models: int = 2  # models of the model library (not in the table) loaded by the first request naming
    # them that may be resident at once; at the limit the least recently used idle one is unloaded; 0: none
    quantum: int = 16  # rr and fair policies: tokens a sequence decodes before it may yield its slot
    starvation_steps: int = 256  # fair policy: a sequence that waited this many steps goes first
    default_max_tokens: int = 256  # generate's max_tokens when the app gives none
    score_window: int = 512  # score's window (tokens of context per forward) when the call gives none
    max_score_tokens: int = 65536  # tokens of text one score call may take (InvalidArguments over it)
    request_caps: dict[str, Any] | None = None  # caps of the processes that faces open per request
    # (OpenAI endpoint, LLM, Application routes), e.g. {"token_budget": 2048}; None: all of root's
    home: Path = field(default_factory=llmasos_home)
    database: str | None = None  # SQLAlchemy URL; None: sqlite under home (memory manager)
    trace_buffer: int = 256  # recent syscall trace events kept per process
    mcp_servers: dict[str, Any] | None = None  # MCP servers whose tools become SERVER.tool, as
    # {name: {"command": [...]} | {"url": ...}}; None: the ones registered in $home/mcp.json
    sandbox_limits: dict[str, Any] = field(default_factory=dict)  # a sandboxed app's child process:
    # address_space (bytes), cpu_seconds, open_files, processes (rlimits; None: not set), start_seconds
    # (to load the app), message_bytes (one syscall or result), calls_in_flight (blocking calls at once);
    # keys not given take SANDBOX_LIMITS's
    # -- memory manager (llmasos/memory/) --
    memory: bool = True  # False: no database at all (no memory syscalls, no journal, no recovery)
    durable: bool = True  # journal syscalls and restart live processes after a crash
    journal_commit: str = "call"  # "call": commit each result before the process sees it; "group":
    # results of effect-free calls are committed within group_commit_ms (lost ones run again live)
    group_commit_ms: float = 5.0  # group mode: how long a result may wait for others to share a commit
    db_busy_timeout: float = 5.0  # seconds to wait for a locked database (or, on PostgreSQL, for a lost
    # session's server to take a new one) before reporting it
    db_synchronous: str = "NORMAL"  # SQLite: NORMAL survives a killed kernel; FULL also a power loss
    pid_block: int = 64  # pids reserved in the database at a time (a crash skips at most this many)
    wal_checkpoint_every: int = 256  # SQLite: commits between the writer's WAL checkpoints
    retention: float | None = 604800.0  # seconds the rows of an ended process (its journal and context
    # too, not its notes or keys) are kept once no live parent can wait for it; None: forever
    # -- cluster (kernel/cluster.py; docs/cluster.md) --
    cluster: bool = False  # a node of a cluster of kernels sharing one PostgreSQL database (needs database)
    node: str | None = None  # this node's id (letters, digits, ._-; at most 64); None: host-pid-random
    lease: float = 10.0  # seconds a node's processes stay its own without a heartbeat; then another adopts them
    heartbeat: float = 2.0  # seconds between a node's lease renewals and its checks for dead nodes (< lease)
    cluster_poll: float = 0.05  # seconds between a node's checks for requests from other nodes (kill, send...)
    # -- sizes (InvalidArguments names the field and the size) --
    max_key_size: int = 500  # characters of a memory key or key prefix
    max_value_size: int = 1 << 20  # characters of a memory value, as stored (codec JSON)
    max_note_size: int = 1 << 16  # characters of a note (remember) or of a search query
    max_search_terms: int = 32  # distinct words a search query may hold
    max_search_results: int = 100  # a search's k at most
    max_args_size: int = 1 << 20  # characters of a spawn's arguments, a message or a stdin write, as
    # stored (codec JSON)
    max_body_size: int = 1 << 22  # bytes of an HTTP request body (413 over it)
    # -- context paging (kernel/paging.py) --
    message_tokens: int = 4  # tokens a chat template adds around each message (an upper bound)
    page_target: float = 0.75  # after paging, the context fills at most this share of the window
    summary_share: float = 0.125  # share of the window a paged-out summary may take
    summary_min_tokens: int = 8  # a paged-out summary may take at least this many tokens, however small
    # the window

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        for name in ("max_procs", "max_batch", "max_step_tokens", "max_resident_tokens", "prefix_block", "quantum",
                     "starvation_steps", "default_max_tokens", "score_window", "max_score_tokens", "mailbox_size", "stdout_lines", "trace_buffer",
                     "pid_block", "wal_checkpoint_every", "summary_min_tokens", "max_key_size", "max_value_size",
                     "max_note_size", "max_search_terms", "max_search_results", "max_args_size", "max_body_size",
                     "max_recoveries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"KernelConfig.{name} must be a positive integer, not {value!r}")
        if self.retention is not None and (isinstance(self.retention, bool) or not isinstance(
                self.retention, (int, float)) or not 0 <= self.retention < float("inf")):
            raise ConfigError(f"KernelConfig.retention is a number of seconds >= 0, or None to keep ended "
                              f"processes' rows forever; not {self.retention!r}")
        if isinstance(self.prefix_cache_tokens, bool) or not isinstance(self.prefix_cache_tokens, int) \
                or self.prefix_cache_tokens < 0:
            raise ConfigError(f"KernelConfig.prefix_cache_tokens must be an integer >= 0 (0: no prefix cache), not "
                              f"{self.prefix_cache_tokens!r}")
        if isinstance(self.lazy_models, bool) or not isinstance(self.lazy_models, int) or self.lazy_models < 0:
            raise ConfigError(f"KernelConfig.lazy_models must be an integer >= 0 (0: load no model on first use), "
                              f"not {self.lazy_models!r}")
        if self.max_zombies < 0:
            raise ConfigError(f"KernelConfig.max_zombies must be >= 0, not {self.max_zombies!r}")
        if self.kill_grace < 0:
            raise ConfigError(f"KernelConfig.kill_grace must be >= 0, not {self.kill_grace!r}")
        if not isinstance(self.shutdown_grace, (int, float)) or not 0 <= self.shutdown_grace < float("inf"):
            raise ConfigError(f"KernelConfig.shutdown_grace must be a finite number of seconds >= 0, not "
                              f"{self.shutdown_grace!r}")
        if self.weights is not None:
            from llmasos.engine.quant import WEIGHT_FORMATS

            if self.weights not in WEIGHT_FORMATS:
                raise ConfigError(f"KernelConfig.weights is one of {', '.join(WEIGHT_FORMATS)} or None (the "
                                  f"engine's default), not {self.weights!r}")
        if self.kv_dtype is not None:
            from llmasos.engine.kvbatch import KV_DTYPES

            if not isinstance(self.kv_dtype, str) or self.kv_dtype not in KV_DTYPES:
                raise ConfigError(f"KernelConfig.kv_dtype is one of {', '.join(KV_DTYPES)} or None (the engine's "
                                  f"default), not {self.kv_dtype!r}"[:300])
        if self.journal_commit not in ("call", "group"):
            raise ConfigError(f"KernelConfig.journal_commit is 'call' or 'group', not {self.journal_commit!r}")
        if not (0 < self.summary_share < self.page_target <= 1) or self.message_tokens < 0:
            raise ConfigError("KernelConfig needs 0 < summary_share < page_target <= 1 and message_tokens >= 0")
        if self.group_commit_ms < 0 or self.db_busy_timeout < 0:
            raise ConfigError("KernelConfig.group_commit_ms and db_busy_timeout must be >= 0")
        if self.mcp_servers is not None:
            from llmasos.tools.mcp import McpConfigError, check_servers

            try:
                self.mcp_servers = check_servers(self.mcp_servers)
            except McpConfigError as exc:
                raise ConfigError(f"KernelConfig.mcp_servers: {exc}") from None
        self.db_synchronous = str(self.db_synchronous).upper()
        if self.db_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"KernelConfig.db_synchronous is NORMAL, FULL, EXTRA or OFF, not "
                              f"{self.db_synchronous!r}")
        unknown = set(self.sandbox_limits) - set(SANDBOX_LIMITS)
        if unknown:
            raise ConfigError(f"KernelConfig.sandbox_limits has unknown keys {sorted(unknown)}; "
                              f"the known ones are {list(SANDBOX_LIMITS)}")
        self.sandbox_limits = {**SANDBOX_LIMITS, **self.sandbox_limits}
        for key, value in self.sandbox_limits.items():
            optional = SANDBOX_LIMITS[key] is None
            if (value is None and not optional) or (value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0)):
                raise ConfigError(f"KernelConfig.sandbox_limits[{key!r}] must be a positive number"
                                  f"{' or None' if optional else ''}, not {value!r}")
        self._check_models()
        self._check_cluster()
        from llmasos.kernel.sched import POLICIES

        if self.policy not in POLICIES:
            names = ", ".join(sorted(POLICIES))
            raise ConfigError(f"unknown scheduling policy {self.policy!r}; choose one of: {names}")

    def _check_models(self) -> None:
        """models: each entry a valid ModelSpec (normalized here); default_model: one of them."""
        from llmasos.kernel.models import ModelSpecError, check_model_name, listed, model_spec, shorten

        if self.models is None:
            if self.default_model is not None:
                raise ConfigError("KernelConfig.default_model names one of KernelConfig.models; with engine= "
                                  "alone the kernel has one model, which is the default")
            return
        if not isinstance(self.models, dict) or not self.models:
            raise ConfigError(f"KernelConfig.models maps model names to engines (at least one), not "
                              f"{shorten(self.models)}")
        if self.engine is not None:
            raise ConfigError("give KernelConfig.engine (one model) or KernelConfig.models (a model table), not "
                              "both; put that engine in models under a name")
        try:
            self.models = {check_model_name(name): model_spec(name, value) for name, value in self.models.items()}
        except ModelSpecError as exc:
            raise ConfigError(f"KernelConfig.models: {exc}") from None
        marked = [name for name, spec in self.models.items() if spec.default]
        if len(marked) > 1 or (marked and self.default_model not in (None, marked[0])):
            several = dict.fromkeys(n for n in [*marked, self.default_model] if n)
            raise ConfigError(f"KernelConfig: several default models ({listed(several)}); mark one")
        if self.default_model is not None and self.default_model not in self.models:
            raise ConfigError(f"KernelConfig.default_model {shorten(self.default_model)} is not one of the models: "
                              f"{listed(self.models)}")
    def _check_cluster(self) -> None:
        for name in ("lease", "heartbeat", "cluster_poll"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise ConfigError(f"KernelConfig.{name} is a number of seconds in (0, 3600], not {value!r}")
        if self.heartbeat >= self.lease:
            raise ConfigError(f"KernelConfig.heartbeat ({self.heartbeat}s) must be shorter than the lease "
                              f"({self.lease}s), or a live node would lose its processes")
        if self.node is not None and (not isinstance(self.node, str) or not _NODE.fullmatch(self.node)):
            raise ConfigError(f"KernelConfig.node is 1-64 letters, digits, '.', '_' or '-', not {self.node!r:.80}")
        if self.node is not None:
            self.cluster = True
        if self.cluster and not (self.memory and self.durable):
            raise ConfigError("a cluster node journals its processes so that another node can adopt them: "
                              "it needs KernelConfig.memory and durable True")
        if self.cluster and not (isinstance(self.database, str) and self.database.split(":", 1)[0].split(
                "+", 1)[0] in ("postgresql", "postgres")):
            raise ConfigError("a cluster node (KernelConfig.cluster or node) shares a PostgreSQL database: "
                              f"set KernelConfig.database to a postgresql:// URL, not {self.database!r:.80}")
