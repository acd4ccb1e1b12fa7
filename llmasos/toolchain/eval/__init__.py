"""``llmasos eval``: score models on perplexity, QA, tool calling and agent tasks, each item a process.

Modules: sets (reading and checking the evaluation files), metrics (the scores), apps (the small apps
each item runs as), runner (spawning the items through a client, concurrently, so they batch), report
(the terminal table, the JSON report and the plot).
"""

from __future__ import annotations

from llmasos.toolchain.eval.runner import ModelReport, Options, TaskReport, run_model
from llmasos.toolchain.eval.sets import EvalSetError, Task, load_task, suite_tasks

__all__ = ["EvalSetError", "ModelReport", "Options", "Task", "TaskReport", "load_task", "run_model", "suite_tasks"]
