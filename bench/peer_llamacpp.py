"""llama.cpp as a peer: the same GGUF file, the same workloads, interleaved with llmasos in one run.

The peer is llama.cpp's ``llama-batched-bench``: from ``$LLAMA_CPP_DIR`` (a build directory holding it,
or its ``bin/``) when set; else a build made earlier under ``$LLMASOS_HOME/peer/llama.cpp``; else, with
``--build``, one made there now from the ``llama-cpp-python`` sdist's vendored source (pip downloads
it; cmake ``-DGGML_NATIVE=ON``; minutes on two cores). Without any, it prints why and exits 0: the peer
is optional, and never part of the test suite.

Peer variants: the shipped Q4_1 file, and (``--variants``, default BF16,F32,Q8_0) copies of it that
llama.cpp's own ``llama-quantize --allow-requantize`` writes from the shipped file (kept under
``$LLMASOS_HOME/peer/variants``; built with the peer, or beside ``$LLAMA_CPP_DIR``'s binary). A copy
made from Q4_1 holds the same (4-bit-rounded) values in a wider format: the same model, at that
format's speed. Ratios are against the fastest variant of each workload ("best").

Workloads: 1 and 32 streams decoding ``--tokens`` new tokens after a ~32-token prompt (generated
tokens/s, prefill excluded on both sides), and the prefill of one ``--prompt``-token prompt (prompt
tokens/s: llama.cpp's ``pp``; llmasos: the prompt's tokens over the time from submitting it to its
first token, chunked as the engine chunks it, so it includes one decode step). Each round runs
llmasos (every weight format asked for) and then each peer variant, so each ratio pairs figures
taken minutes apart at most; medians over the rounds with min-max. A read-bandwidth reading (the
native library's streaming read of 0.5 GiB) is printed with each round.

Usage: python bench/peer_llamacpp.py [--rounds 3] [--tokens 64] [--prompt 1024] [--threads 2]
       [--formats q4_1,q4_1@avx512,fp32] [--variants BF16,F32,Q8_0] [--build]
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
import time
from pathlib import Path

from _common import add_threads_flag, decode_rate, load_engine, on_model_thread, table
from weights import TEXT, probe_buffer, read_rate

from llmasos.engine import models
from llmasos.home import llmasos_home

SDIST = "llama-cpp-python==0.3.36"
TOOL = "llama-batched-bench"
QUANTIZE = "llama-quantize"


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
    subprocess.run(["cmake", "--build", str(build), "--target", TOOL, QUANTIZE, "-j", str(threads)], check=True)
    return build / "bin" / TOOL


def variant_files(tool: Path, gguf: str, names: list[str]) -> dict[str, str]:
    """{"Q4_1": the shipped file, name: its copy in that llama.cpp type}: copies made once by the
    llama-quantize beside the peer's binary (--allow-requantize); a variant it cannot make is left
    out, with a note."""
    files = {"Q4_1": gguf}
    quantize = tool.with_name(QUANTIZE)
    for name in names:
        out = llmasos_home() / "peer" / "variants" / f"{Path(gguf).stem}-{name}.gguf"
        if not out.exists():
            if not quantize.is_file():
                print(f"# variant {name} skipped: no {QUANTIZE} beside {tool}", file=sys.stderr)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            done = subprocess.run([str(quantize), "--allow-requantize", gguf, str(tmp), name], capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                print(f"# variant {name} skipped: {done.stderr.strip()[-300:]}", file=sys.stderr)
                tmp.unlink(missing_ok=True)
                continue
            os.replace(tmp, out)
        files[name] = str(out)
    return files


def _bench(tool: Path, gguf: str, threads: int, args: list[str]) -> list[dict]:
    done = subprocess.run([str(tool), "-m", gguf, "-t", str(threads), "--output-format", "jsonl", *args],
                          capture_output=True, text=True, check=False)
    rows = [json.loads(line) for line in (done.stdout + "\n" + done.stderr).splitlines()
            if line.strip().startswith("{") and '"speed_tg"' in line]
    if not rows:
        raise RuntimeError(f"{tool.name} gave no results: {done.stderr.strip()[-500:]}")
    return rows


def peer_rates(tool: Path, gguf: str, threads: int, tokens: int, prompt: int) -> dict[str, float]:
    """{"1": generated tok/s of 1 stream, "32": of 32 streams, "pp": prompt tok/s of one prompt of
    `prompt` tokens} from two llama-batched-bench runs."""
    rows = _bench(tool, gguf, threads, ["-c", str(32 * (32 + tokens) + 64), "-b", "2048", "-npp", "32",
                                        "-ntg", str(tokens), "-npl", "1,32"])
    rates = {str(int(r["pl"])): float(r["speed_tg"]) for r in rows}
    pp = _bench(tool, gguf, threads, ["-c", str(prompt + 64), "-b", "2048", "-npp", str(prompt), "-ntg", "1",
                                      "-npl", "1"])
    rates["pp"] = float(pp[0]["speed_pp"])
    if set(rates) != {"1", "32", "pp"}:
        raise RuntimeError(f"{tool.name} gave {sorted(rates)}, not 1, 32 and pp")
    return rates


@on_model_thread
def prefill_rate(engine, tokens: int) -> float:
    """Prompt tok/s of one prompt of `tokens` tokens: from submitting it to its first token (the
    engine's chunked prefill, and one decode step), nothing else running."""
    from llmasos.engine.base import SamplingParams, Sequence

    s = Sequence(pid=1, params=SamplingParams(max_tokens=2), prompt=TEXT * (tokens // 200 + 2))
    engine.prepare(s)  # (tokenizing: off the clock, as llama.cpp's pp has it)
    s.prompt_ids = s.prompt_ids[:tokens]
    t0 = time.perf_counter()
    while not s.output_ids:
        engine.step([s])
    rate = tokens / (time.perf_counter() - t0)
    engine.abort(s)
    return rate


def engine_for(spec: str, threads: int):
    """The engine for "FORMAT" or "FORMAT@ISA" (its quantized products capped at ISA, as
    LLMASOS_NATIVE_ISA does: "q4_1@avx512" is the step before the VNNI path, in the same run)."""
    fmt, _, isa = spec.partition("@")
    old = os.environ.get("LLMASOS_NATIVE_ISA")
    if isa:
        os.environ["LLMASOS_NATIVE_ISA"] = isa
    try:
        # no prefix cache: the same prompts come back every round, and llama.cpp's pp is a cold prompt
        engine = load_engine(threads, weights=fmt, ignore_eos=True, prefix_cache_tokens=0)
        if engine.native is None or (isa and engine.native.isa != isa):
            raise SystemExit(f"{spec}: no native step on that instruction set here ({engine.native_reason})")
        return engine
    finally:
        if old is None:
            os.environ.pop("LLMASOS_NATIVE_ISA", None)
        else:
            os.environ["LLMASOS_NATIVE_ISA"] = old


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    ap.add_argument("--prompt", type=int, default=1024, help="prompt tokens of the prefill workload")
    ap.add_argument("--formats", default="q4_1,fp32",
                    help="llmasos weight formats to run; FORMAT@ISA caps the instruction set (q4_1@avx512)")
    ap.add_argument("--variants", default="BF16,F32,Q8_0", help="llama.cpp types besides the shipped Q4_1")
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
    variants = variant_files(tool, gguf, [v for v in args.variants.split(",") if v])
    formats = args.formats.split(",")
    engines = {f: engine_for(f, threads) for f in formats}
    loads = ("1", "32", "pp")
    ours: dict[tuple[str, str], list[float]] = {(f, w): [] for f in formats for w in loads}
    peer: dict[tuple[str, str], list[float]] = {(v, w): [] for v in variants for w in loads}
    buf = probe_buffer()
    for r in range(args.rounds):
        bw = read_rate(buf)
        for f, engine in engines.items():
            for n in (1, 32):
                ours[(f, str(n))].append(on_model_thread(decode_rate)(engine, n, args.tokens))
            ours[(f, "pp")].append(prefill_rate(engine, args.prompt))
        for v, path in variants.items():
            for w, rate in peer_rates(tool, path, threads, args.tokens, args.prompt).items():
                peer[(v, w)].append(rate)
        print(f"# round {r + 1} (read {bw:.0f} GiB/s before, {read_rate(buf):.0f} after; load "
              f"{os.getloadavg()[0]:.2f}): " + ", ".join(f"{f} {'/'.join(f'{ours[(f, w)][-1]:.0f}' for w in loads)}"
                                                        for f in formats)
              + ", " + ", ".join(f"llama.cpp {v} {'/'.join(f'{peer[(v, w)][-1]:.0f}' for w in loads)}"
                                 for v in variants), flush=True)
    names = {"1": "decode, 1 stream", "32": "decode, 32 streams", "pp": f"prefill, {args.prompt} tokens"}
    rows = []
    for w in loads:
        best = max(variants, key=lambda v: statistics.median(peer[(v, w)]))
        top = statistics.median(peer[(best, w)])
        for v in variants:
            rows.append([names[w], f"llama.cpp {v}" + (" (best)" if v == best else ""), spread(peer[(v, w)]),
                         statistics.median(peer[(v, w)]) / top])
        for f in formats:
            rows.append([names[w], f"llmasos {f}", spread(ours[(f, w)]), statistics.median(ours[(f, w)]) / top])
    print(f"\npeer: {tool} on {Path(gguf).name} and its copies, {threads} threads, {args.rounds} interleaved "
          f"rounds; decode: {args.tokens} new tokens per stream after a ~32-token prompt")
    print(table(["workload", "engine", "tok/s", "x best llama.cpp"], rows))


if __name__ == "__main__":
    main()
