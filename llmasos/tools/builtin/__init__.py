"""The tools that ship with llmasos. Importing this package registers them.

Rule: each tool is a small module of plain typed functions under ``@tool``; anything with side effects
stays inside the calling process's own directory.
"""

from llmasos.tools.builtin import calculator, clock, files, memory

__all__ = ["calculator", "clock", "files", "memory"]
