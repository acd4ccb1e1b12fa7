"""The toolchain: what a developer runs around the OS to measure and shape models (``eval``).

Rule: the toolchain is a face like the CLI: it reaches the kernel only through ``llmasos.client``
(every item it runs is a process spawned through a ``KernelClient``, local or remote), never through
kernel, engine or memory internals (an import-linter contract in pyproject.toml).
"""
