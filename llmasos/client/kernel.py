"""The kernel's names a face may use: booting a kernel, its config, the errors it raises, the current Sys.

Rule: faces (api/, shell/, cli/) import these from here, never from ``llmasos.kernel``; everything else
they do goes through a kernel's public methods (``session``, ``root``) or a client. Importing this
module loads the kernel (a face that only talks to a daemon imports ``client.remote`` instead).
"""

from __future__ import annotations

from llmasos.kernel.config import ConfigError, KernelConfig
from llmasos.kernel.errors import KernelNotRunning
from llmasos.kernel.kernel import Kernel, current_sys

__all__ = ["ConfigError", "Kernel", "KernelConfig", "KernelNotRunning", "current_sys"]
