"""``llmasos eval``: score models on perplexity, QA, tool calling and agent tasks, each item a process.

Modules: sets (reading and checking the evaluation files), metrics (the scores), apps (the small apps
each item runs as), runner (spawning the items through a client, concurrently, so they batch), report
(the terminal table, the JSON report and the plot).

Rule: evaluation is a face like the CLI: it reaches the kernel only through ``llmasos.client`` (every
item it runs is a process spawned through a ``KernelClient``, local or remote), never through kernel,
engine or memory internals (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from llmasos.toolchain.eval.runner import ModelReport, Options, TaskReport, run_model
from llmasos.toolchain.eval.sets import EvalSetError, Task, load_task, suite_tasks

__all__ = ["EvalSetError", "ModelReport", "Options", "Task", "TaskReport", "load_task", "run_model", "suite_tasks"]
