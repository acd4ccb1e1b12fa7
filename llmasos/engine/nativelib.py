"""Building and loading the native step's C library, and the memory it streams.

Rule: ``llama_decode.c``, ``attention.c``, ``quant.c`` and ``quant_vnni.c`` (shipped beside this file)
are compiled once with the system C compiler into ``$LLMASOS_HOME/native/`` under a name keyed by their
text and flags, and loaded with ctypes; anything that prevents it (no compiler, no AVX2/FMA, another
architecture, ``LLMASOS_NATIVE=0``) is a ``NativeUnavailable`` whose message says why, remembered for
the process's life. The library links libgomp, which PyTorch has already loaded, so both share one
OpenMP runtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import torch

from llmasos.engine.quant import ISAS
from llmasos.home import llmasos_home, private_dir

SOURCE = Path(__file__).with_name("llama_decode.c")
# built together:
SOURCES = tuple(SOURCE.with_name(f) for f in ("llama_decode.c", "attention.c", "quant.c", "quant_vnni.c"))
HEADERS = tuple(SOURCE.with_name(h) for h in ("attention.h", "quant.h", "simd.h"))
CFLAGS = ("-O3", "-std=gnu11", "-fopenmp", "-fPIC", "-shared")


class NativeUnavailable(Exception):
    """The native step cannot serve this machine or model; the message says why."""



def _build(cc: str, out: Path) -> None:
    private_dir(out.parent)  # (0700: like everything under $LLMASOS_HOME, private to its user)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        so = Path(tmp) / out.name
        try:
            done = subprocess.run([cc, *CFLAGS, f"-I{SOURCE.parent}", *map(str, SOURCES), "-o", str(so), "-lm"],
                                  capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NativeUnavailable(f"could not run the C compiler {cc}: {exc}") from exc
        if done.returncode != 0:
            raise NativeUnavailable(f"{cc} could not build {SOURCE.name}: {done.stderr.strip()[-800:]}")
        os.replace(so, out)  # atomic: a concurrent builder finds a whole library or none
    for stale in out.parent.glob("llama_decode-*.so"):  # builds of other versions of the source
        if stale != out:
            stale.unlink(missing_ok=True)  # a process that has one loaded keeps its mapping


def library() -> ctypes.CDLL:
    """The compiled step, built on first use; raises NativeUnavailable when it cannot be."""
    lib = _load()
    if isinstance(lib, str):
        raise NativeUnavailable(lib)
    return lib


@cache
def _load() -> ctypes.CDLL | str:
    """The library, or why there is none (both remembered for the process's life)."""
    try:
        return _build_and_load()
    except NativeUnavailable as exc:
        return str(exc)


def _build_and_load() -> ctypes.CDLL:
    if os.environ.get("LLMASOS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        raise NativeUnavailable("turned off by LLMASOS_NATIVE=0")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise NativeUnavailable(f"built for x86-64 only, this machine is {platform.machine()}")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise NativeUnavailable("no C compiler found (install gcc, or set CC)")
    text = b"".join(f.read_bytes() for f in (*SOURCES, *HEADERS))
    key = hashlib.sha256(text + " ".join((cc, *CFLAGS)).encode()).hexdigest()[:16]
    path = llmasos_home() / "native" / f"llama_decode-{key}.so"
    if not path.exists():
        _build(cc, path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise NativeUnavailable(f"could not load {path}: {exc}") from exc
    if not lib.llama_native_supported():
        raise NativeUnavailable("this CPU lacks AVX2/FMA")
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.llama_scratch_floats.argtypes = [p, i64, i64, c_int]
    lib.llama_scratch_floats.restype = i64
    lib.llama_decode.argtypes = [p, i64, p, p, p, p, i64, i64, i64, i64, p, p, p, p, c_int]
    lib.llama_decode.restype = c_int
    lib.llama_matmuls.argtypes = [p, i64, p, p, c_int]
    lib.llama_matmuls.restype = c_int
    lib.blocked_matmul.argtypes = [p, i64, i64, i64, p, i64, p, c_int]
    lib.blocked_matmul.restype = c_int
    lib.llama_argmax.argtypes = [p, i64]
    lib.llama_argmax.restype = i64
    lib.stream_read.argtypes = [p, i64, c_int, c_int]
    lib.stream_read.restype = ctypes.c_double
    lib.quant_best_isa.argtypes = []
    lib.quant_best_isa.restype = c_int
    lib.quant_matmul.argtypes = [c_int, c_int, p, i64, i64, p, i64, p, c_int, p, i64]
    lib.quant_matmul.restype = c_int
    lib.quant_qx_bytes.argtypes = [i64, i64]
    lib.quant_qx_bytes.restype = i64
    return lib


def best_isa() -> str:
    """The widest instruction set the quantized products can use here ("scalar", "avx2", "avx512",
    "avx512vnni": the decode step on int8 activations), lowered by LLMASOS_NATIVE_ISA (e.g.
    LLMASOS_NATIVE_ISA=scalar forces the portable C path; =avx512 keeps activations fp32)."""
    best = library().quant_best_isa()
    asked = os.environ.get("LLMASOS_NATIVE_ISA", "").strip().lower()
    if asked:
        if asked not in ISAS:
            raise NativeUnavailable(f"LLMASOS_NATIVE_ISA={asked!r} is not one of {', '.join(ISAS)}")
        best = min(best, ISAS.index(asked))
    return ISAS[best]


HUGE_PAGE = 2 << 20


def huge_empty(numel: int) -> torch.Tensor:
    """An uninitialised fp32 tensor on 2 MiB-aligned memory advised for transparent huge pages.

    Rule: memory the native step streams every token lives here. On this machine (a KVM guest,
    where a TLB miss walks two page tables) reading 0.5 GiB from huge pages took ~8 % less time than
    from 4 KiB pages. Where the advice is refused (not Linux, THP off) it is plain memory."""
    pad = HUGE_PAGE // 4
    raw = torch.empty(numel + pad, dtype=torch.float32)
    start = (-raw.data_ptr() % HUGE_PAGE) // 4
    view = raw[start : start + numel]  # the view keeps raw's storage alive
    _advise_huge(view.data_ptr(), numel * 4)
    return view


def _advise_huge(address: int, nbytes: int) -> bool:
    """madvise(MADV_HUGEPAGE) before the memory is first touched; False where refused."""
    madvise = getattr(_libc(), "madvise", None)
    if madvise is None or platform.system() != "Linux" or nbytes < HUGE_PAGE:
        return False
    return madvise(ctypes.c_void_p(address), ctypes.c_size_t(nbytes), 14) == 0  # 14: MADV_HUGEPAGE


@cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
