"""llama.cpp as a peer: the same GGUF file, the same decode workloads, interleaved with llmasos in one run.

The peer is llama.cpp's ``llama-batched-bench``: from ``$LLAMA_CPP_DIR`` (a build directory holding it,
or its ``bin/``) when set; else a build made earlier under ``$LLMASOS_HOME/peer/llama.cpp``; else, with
``--build``, one made there now from the ``llama-cpp-python`` sdist's vendored source (pip downloads
it; cmake ``-DGGML_NATIVE=ON``; minutes on two cores). Without any, it prints why and exits 0: the peer
is optional, and never part of the test suite.

Workloads (tokens/s of generated tokens, prefill excluded on both sides): 1 and 32 streams decoding
``--tokens`` new tokens after a ~32-token prompt. Each round runs llmasos (every weight format asked
for) and then the peer on the shipped Q4_1 file, so each ratio pairs figures taken minutes apart at
most; medians over the rounds with min-max.

Usage: python bench/peer_llamacpp.py [--rounds 3] [--tokens 64] [--threads 2] [--formats q4_1,fp32] [--build]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from _common import add_threads_flag, load_engine, table
from weights import decode_rate

from llmasos.engine import models
from llmasos.home import llmasos_home

SDIST = "llama-cpp-python==0.3.36"
TOOL = "llama-batched-bench"


def find_peer() -> Path | None:
    """The llama-batched-bench binary: $LLAMA_CPP_DIR's, else the one built under $LLMASOS_HOME."""
    places = []
    if os.environ.get("LLAMA_CPP_DIR"):
        root = Path(os.environ["LLAMA_CPP_DIR"]).expanduser()
        places += [root / TOOL, root / "bin" / TOOL, root / "build" / "bin" / TOOL]
    places.append(llmasos_home() / "peer" / "llama.cpp" / "build" / "bin" / TOOL)
    return next((p for p in places if p.is_file() and os.access(p, os.X_OK)), None)


def build_peer(threads: int) -> Path:
    """Build llama-batched-bench from the llama-cpp-python sdist's vendored llama.cpp (raises on failure)."""
    dest = llmasos_home() / "peer" / "llama.cpp"
    if not shutil.which("cmake"):
        raise RuntimeError("cmake is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                        "-d", tmp, "-q"], check=True)
        sdist = next(Path(tmp).glob("*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(source, dest)
    build = dest / "build"
    subprocess.run(["cmake", "-S", str(dest), "-B", str(build), "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TESTS=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", TOOL, "-j", str(threads)], check=True)
    return build / "bin" / TOOL


def peer_rates(tool: Path, gguf: str, threads: int, tokens: int) -> dict[int, float]:
    """{streams: generated tok/s} for 1 and 32 streams from one llama-batched-bench run."""
    done = subprocess.run([str(tool), "-m", gguf, "-c", str(32 * (32 + tokens) + 64), "-b", "2048",
                           "-npp", "32", "-ntg", str(tokens), "-npl", "1,32", "-t", str(threads),
                           "--output-format", "jsonl"], capture_output=True, text=True, check=False)
    rates = {}
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            rates[int(row["pl"])] = float(row["speed_tg"])
    if set(rates) != {1, 32}:
        raise RuntimeError(f"{tool.name} gave no results: {done.stderr.strip()[-500:]}")
    return rates


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    ap.add_argument("--formats", default="q4_1,fp32", help="llmasos weight formats to run")
    ap.add_argument("--build", action="store_true", help="build llama.cpp when no build is found")
    add_threads_flag(ap)
    args = ap.parse_args()
    threads = args.threads or 2
    tool = find_peer()
    if tool is None and args.build:
        try:
            tool = build_peer(threads)
        except (OSError, RuntimeError, subprocess.CalledProcessError, StopIteration) as exc:
            print(f"peer skipped: could not build llama.cpp ({exc})")
            return
    if tool is None:
        print("peer skipped: no llama.cpp found; set LLAMA_CPP_DIR to a build holding llama-batched-bench, "
              "or pass --build to build one from the llama-cpp-python sdist")
        return
    gguf = models.resolve("smollm2-135m").source
    formats = args.formats.split(",")
    engines = {f: load_engine(threads, weights=f, ignore_eos=True) for f in formats}
    ours: dict[tuple[str, int], list[float]] = {(f, n): [] for f in formats for n in (1, 32)}
    peer: dict[int, list[float]] = {1: [], 32: []}
    for r in range(args.rounds):
        for f, engine in engines.items():
            for n in (1, 32):
                ours[(f, n)].append(decode_rate(engine, n, args.tokens))
        for n, rate in peer_rates(tool, gguf, threads, args.tokens).items():
            peer[n].append(rate)
        print(f"# round {r + 1}: " + ", ".join(f"{f}/{n} {ours[(f, n)][-1]:.0f}" for f in formats for n in (1, 32))
              + f", llama.cpp Q4_1 {peer[1][-1]:.0f}/{peer[32][-1]:.0f}", flush=True)
    rows = []
    for n in (1, 32):
        rows.append([n, "llama.cpp Q4_1", spread(peer[n]), 1.0])
        for f in formats:
            rows.append([n, f"llmasos {f}", spread(ours[(f, n)]),
                         statistics.median(ours[(f, n)]) / statistics.median(peer[n])])
    print(f"\npeer: {tool} on {Path(gguf).name}, {threads} threads, {args.rounds} interleaved rounds, "
          f"{args.tokens} new tokens per stream after a ~32-token prompt")
    print(table(["streams", "engine", "generated tok/s", "x llama.cpp"], rows))


if __name__ == "__main__":
    main()
