"""Sandboxed apps: the child OS process a sandboxed app runs in, and the wire between it and the kernel.

Rule: nothing here imports the kernel. ``wire.py`` is shared by both ends (frames of codec JSON, never
pickle); ``confine.py`` applies the OS-level limits the machine offers; ``child.py`` is the child's
entry (``python -m llmasos.sandbox.child``). The kernel's end is ``llmasos/kernel/sandbox.py``.
"""
