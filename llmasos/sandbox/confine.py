"""OS-level confinement of a sandboxed app's child process, as far as this machine allows.

Rule: each mechanism is detected at run time and applied by the child to itself before the app's code
is imported; ``apply`` returns the names of those in force ("rlimit", "landlock", "seccomp"), which
``ps`` shows. Nothing here raises for a mechanism the machine lacks: it is left out of the list.

- rlimit: address space, CPU seconds, open files and (when given) processes, soft = hard (CPU: hard
  one second later).
- landlock (Linux >= 5.13): files may be read only under the directories Python, its packages,
  llmasos and the app load from (``read_paths``), folders on the import path listed, nothing written
  but /dev/null; from ABI 4 no TCP bind or connect; from ABI 6 no
  signals to processes outside the sandbox (the kernel's) and no abstract unix sockets.
- seccomp (x86-64 Linux): a filter that refuses (EPERM) new processes and exec, ptrace and other
  processes' memory, mounts and namespaces, modules, kexec, reboot, bpf, perf, keyrings and raising
  rlimits; threads still work.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
from collections.abc import Iterable
from typing import Any

RLIMITS = {  # sandbox_limits key -> resource
    "address_space": resource.RLIMIT_AS,
    "cpu_seconds": resource.RLIMIT_CPU,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
}


def apply(limits: dict[str, Any], read_paths: Iterable[str], list_paths: Iterable[str] = ()) -> list[str]:
    """Confine this process; the names of the mechanisms now in force.

    Under landlock, files may be read under read_paths only; folders in list_paths may be listed.
    """
    applied = []
    if _rlimits(limits):
        applied.append("rlimit")
    libc = _libc()
    if libc is not None and libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS: needed by both
        if _landlock(libc, read_paths, list_paths):
            applied.append("landlock")
        if _seccomp(libc):
            applied.append("seccomp")
    return applied


def _rlimits(limits: dict[str, Any]) -> bool:
    done = False
    for key, res in RLIMITS.items():
        value = limits.get(key)
        if value is None:
            continue
        try:
            _, hard = resource.getrlimit(res)
            value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
            # (cpu: SIGXCPU at the soft limit, which says why; SIGKILL a second later)
            resource.setrlimit(res, (value, value + 1 if res == resource.RLIMIT_CPU else value))
            done = True
        except (ValueError, OSError):
            continue
    return done


def _libc() -> Any:
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    return libc


# -- landlock ------------------------------------------------------------------------------------

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_READ_FILE, _READ_DIR, _WRITE_FILE = 1 << 2, 1 << 3, 1 << 1
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}


def landlock_abi(libc: Any = None) -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    libc = libc or _libc()
    if libc is None:
        return 0
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _landlock(libc: Any, read_paths: Iterable[str], list_paths: Iterable[str]) -> bool:
    abi = landlock_abi(libc)
    if abi < 1:
        return False
    fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP: no rule allows either
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets, signals to processes outside
    attr = struct.pack("<QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        rules = [(p, _READ_DIR) for p in list_paths] + [(p, _READ_FILE | _READ_DIR) for p in read_paths]
        rules.append(("/dev/null", _READ_FILE | _WRITE_FILE))
        for path, access in rules:
            _allow(libc, ruleset, path, access)
        return libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def _allow(libc: Any, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # (a path that does not exist needs no rule)
    try:
        if not os.path.isdir(path):
            access &= _READ_FILE | _WRITE_FILE  # a file takes file rights only
        rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
        libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0))
    finally:
        os.close(fd)


# -- seccomp -------------------------------------------------------------------------------------

_X86_64_DENY = (  # syscall numbers refused with EPERM
    57, 58, 59, 322,  # fork vfork execve execveat
    101, 310, 311, 312, 438,  # ptrace process_vm_readv/writev kcmp pidfd_getfd
    165, 166, 155, 161, 308, 272, 428, 429, 430, 431, 432, 433, 442,  # mounts, chroot, namespaces
    175, 176, 313, 246, 320, 169, 167, 168,  # modules, kexec, reboot, swap
    321, 298, 248, 249, 250, 323, 303, 304,  # bpf perf keyrings userfaultfd handles
    159, 164, 227, 170, 171, 172, 173, 163, 179,  # clocks, host names, io ports, acct, quota
    160,  # setrlimit
)
_CLONE, _CLONE3, _PRLIMIT64 = 56, 435, 302
_CLONE_THREAD = 0x10000
_AUDIT_ARCH_X86_64 = 0xC000003E
_LD, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000


def _errno(code: int) -> int:
    return 0x00050000 | code


def seccomp_program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions (x86-64)."""
    deny = _errno(errno.EPERM)
    prog = [(_LD, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH_X86_64), (_RET, 0, 0, _KILL), (_LD, 0, 0, 0),
            (_JGE, 0, 1, 0x40000000), (_RET, 0, 0, deny)]  # the x32 ABI: refused
    for nr in _X86_64_DENY:
        prog += [(_JEQ, 0, 1, nr), (_RET, 0, 0, deny)]
    prog += [(_JEQ, 0, 1, _CLONE3), (_RET, 0, 0, _errno(errno.ENOSYS))]  # libc falls back to clone
    # clone: threads only (its flags, argument 0, hold CLONE_THREAD)
    prog += [(_JEQ, 0, 4, _CLONE), (_LD, 0, 0, 16), (_JSET, 0, 1, _CLONE_THREAD), (_RET, 0, 0, _ALLOW),
             (_RET, 0, 0, deny)]
    # prlimit64: reading a limit (argument 2, the new limit, is NULL) only
    prog += [(_JEQ, 0, 6, _PRLIMIT64), (_LD, 0, 0, 32), (_JEQ, 0, 3, 0), (_LD, 0, 0, 36), (_JEQ, 0, 1, 0),
             (_RET, 0, 0, _ALLOW), (_RET, 0, 0, deny)]
    prog.append((_RET, 0, 0, _ALLOW))
    return prog


def _seccomp(libc: Any) -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False  # (the filter's syscall numbers are x86-64's)
    prog = seccomp_program()
    filters = (ctypes.c_ubyte * (8 * len(prog))).from_buffer_copy(
        b"".join(struct.pack("<HBBI", *ins) for ins in prog))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(filters))
    return libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
