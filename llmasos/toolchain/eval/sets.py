"""The evaluation files: a plain text for perplexity, JSONL for qa, tools and agent; the shipped suites.

Rule: a file is read and checked whole before anything runs: a missing file, an empty one, a line that
is not a JSON object or lacks a field is an ``EvalSetError`` naming the file and the line, so a typo
never costs a model load. Suites are folders of package data (``llmasos/toolchain/evalsets/<suite>/``)
holding any of ``perplexity.txt``, ``qa.jsonl``, ``tools.jsonl``, ``agent.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from llmasos.errors import LlmasosError

KINDS = ("perplexity", "qa", "tools", "agent")
FILES = {"perplexity": "perplexity.txt", "qa": "qa.jsonl", "tools": "tools.jsonl", "agent": "agent.jsonl"}
_REQUIRED = {"qa": ("question", "answers"), "tools": ("question", "tool"), "agent": ("question", "answer")}
MAX_FILE_BYTES = 16 << 20  # an evaluation file this large is a mistake (a model file, a dataset dump)


class EvalSetError(LlmasosError):
    """An evaluation file is missing, empty or malformed."""


@dataclass(frozen=True, slots=True)
class Task:
    """One task to run: its kind, where it came from, and its items (perplexity: one item, the text)."""

    kind: str
    source: str
    items: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def load_task(kind: str, path: str | Path, limit: int | None = None) -> Task:
    """Read and check one evaluation file of kind (perplexity, qa, tools, agent)."""
    if kind not in KINDS:
        raise EvalSetError(f"unknown task {kind!r}; the tasks are {', '.join(KINDS)}")
    path = Path(path)
    text = _read(path)
    if kind == "perplexity":
        return Task(kind, str(path), ({"id": path.name, "text": text},))
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        items.append(_item(kind, path, n, line))
    if not items:
        raise EvalSetError(f"{path} holds no items (one JSON object a line)")
    return Task(kind, str(path), tuple(items[:limit] if limit else items))


def suite_tasks(suite: str, kinds: tuple[str, ...] = KINDS, limit: int | None = None) -> list[Task]:
    """The tasks of a shipped suite (a folder of package data), in the order perplexity, qa, tools, agent."""
    root = resources.files("llmasos.toolchain") / "evalsets"
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if suite not in names:
        raise EvalSetError(f"no evaluation suite named {suite!r}; the suites are: {', '.join(names)}")
    folder = root / suite
    tasks = []
    for kind in kinds:
        f = folder / FILES[kind]
        if f.is_file():
            with resources.as_file(f) as path:
                tasks.append(load_task(kind, path, limit))
    return tasks


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise EvalSetError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES >> 20} MiB an evaluation "
                               "file may hold; give a smaller file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalSetError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise EvalSetError(f"{path} is a folder; give a file") from None
    except UnicodeDecodeError:
        raise EvalSetError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise EvalSetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise EvalSetError(f"{path} is empty")
    return text


def _item(kind: str, path: Path, n: int, line: str) -> dict[str, Any]:
    where = f"{path}, line {n}"
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise EvalSetError(f"{where} is not JSON ({exc.msg}); write one JSON object a line") from None
    if not isinstance(item, dict):
        raise EvalSetError(f"{where} is a JSON {type(item).__name__}, not an object")
    for key in _REQUIRED[kind]:
        if key not in item:
            raise EvalSetError(f"{where} lacks {key!r}; a {kind} item needs {', '.join(_REQUIRED[kind])}")
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise EvalSetError(f"{where}: 'question' must be a non-empty string")
    if kind == "qa":
        answers = item["answers"]
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
            raise EvalSetError(f"{where}: 'answers' must be a non-empty string or list of them")
        item["answers"] = answers
    elif kind == "tools":
        if not isinstance(item["tool"], str) or not item["tool"]:
            raise EvalSetError(f"{where}: 'tool' must be the name of the tool that should be called")
        tools = item.get("tools")
        if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
            raise EvalSetError(f"{where}: 'tools' must be a list of tool names")
    elif not isinstance(item["answer"], (str, int, float)) or isinstance(item["answer"], bool):
        raise EvalSetError(f"{where}: 'answer' must be a string or a number")
    item.setdefault("id", f"{path.stem}:{n}")
    return item


__all__ = ["FILES", "KINDS", "EvalSetError", "Task", "load_task", "suite_tasks"]
