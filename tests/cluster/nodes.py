"""Cluster test helpers: `llmasos serve` nodes on the fake engine sharing one PostgreSQL database, their
HTTP API, and a look at the database's rows.

Rule: every node is a real OS process (SIGKILL, SIGSTOP and SIGCONT reach it as they would in
production); the tests read the outcome from the database and the files the apps write, never from a
node's memory.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from llmasos.memory import codec

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "memory" / "durable_apps.py"
TOKEN = "cluster-test-" + secrets.token_hex(8)
LEASE = 1.0  # seconds: short, so that a failover takes about a second
LIVE = ("ready", "running", "waiting")


class Node:
    """One `llmasos serve --database URL --node ID` process."""

    def __init__(self, url: str, node: str, work: Path, lease: float = LEASE) -> None:
        self.node, self.work = node, work
        home = work / f"home-{node}"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("LLMASOS_URL",)}
        env.update(LLMASOS_HOME=str(home), LLMASOS_API_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
        self.err_path = work / f"stderr-{node}.log"
        # the tests kill nodes from outside, again and again, within a second of an adoption: a process
        # then makes no progress between kills, which the crash-loop rule cannot tell from a process that
        # kills its node (docs/cluster.md); as the single-kernel kill test does, they raise its limit
        config = work / "node.toml"
        if not config.exists():  # (written once, whole: a node starting meanwhile never reads half of it)
            part = work / f"node.toml.{node}"
            part.write_text("[kernel]\nmax_recoveries = 1000\n")
            part.replace(config)
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmasos.cli", "serve", "--model", "fake", "--port", "0", "--database",
                 url, "--node", node, "--lease", str(lease), "--config", str(config)],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
        self.url: str | None = None

    def ready(self, timeout: float = 60) -> Node:
        """Wait until it serves; its URL."""
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        found = re.search(r"serving (http://127\.0\.0\.1:\d+)", line)
        assert found, f"node {self.node} did not start: {line!r} {self.stderr()[-2000:]}"
        self.url = found.group(1)
        return self

    def has_output(self) -> bool:
        """Whether it wrote its first line (it serves, or failed to start), without waiting."""
        import select

        return bool(self.proc.stdout and select.select([self.proc.stdout], [], [], 0)[0])

    def stderr(self) -> str:
        return self.err_path.read_text() if self.err_path.exists() else ""

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def raw(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=60, **kw)

    def http(self, method: str, path: str, **kw: Any) -> Any:
        r = self.raw(method, path, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def spawn(self, attr: str, *args: Any) -> int:
        return self.http("POST", "/v1/procs", json={"app": f"{APPS}:{attr}", "args": list(args)})["pid"]


def start(url: str, names: list[str], work: Path, lease: float = LEASE) -> list[Node]:
    """Start nodes together; return them once all serve."""
    nodes = [Node(url, n, work, lease) for n in names]
    try:
        return [n.ready() for n in nodes]
    except BaseException:
        for n in nodes:
            n.kill()
        raise


_LOOP = asyncio.new_event_loop()
_CONNS: dict[str, Any] = {}


def query(url: str, sql: str, *args: Any) -> list[Any]:
    """Rows of sql on the database (asyncpg: one connection per database, kept for the session)."""
    import asyncpg

    async def go() -> list[Any]:
        conn = _CONNS.get(url)
        if conn is None or conn.is_closed():
            conn = _CONNS[url] = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        return list(await conn.fetch(sql, *args))
    return _LOOP.run_until_complete(go())


def new_database(server_url: str) -> str:
    """A fresh database on the test server; its URL."""
    name = "cl_" + secrets.token_hex(6)
    query(server_url, f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def plan(work: Path, scale: int = 1) -> list[tuple[str, tuple]]:
    """The durable apps of the memory tests (tests/memory/durable_kernel.py), longer by scale."""
    counter = str(work / "counter.txt")
    return [
        ("worker", ("alpha", 14 * scale, counter, True, 0.03)),
        ("worker", ("beta", 10 * scale, counter, True, 0.03)),
        ("chatter", ("gamma", 8 * scale)),
        ("parent", (2, 6 * scale)),
        ("streamer", (6 * scale,)),
    ]


def roots_done(url: str) -> bool:
    rows = query(url, "SELECT state FROM processes WHERE parent = 0")
    return bool(rows) and all(r["state"] not in LIVE for r in rows)


def wait_until(check: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def outcome(url: str) -> dict[str, Any]:
    """The root processes' results (by spawn order) and the shared memory, as the database holds them."""
    roots = query(url, "SELECT pid, app, state, exit_value, error FROM processes WHERE parent = 0 ORDER BY pid")
    results = {f"{i}:{r['app']}": {"state": r["state"], "value": codec.loads(r["exit_value"]) if r["exit_value"]
                                   else None, "error": r["error"]} for i, r in enumerate(roots)}
    kv = {r["key"]: codec.loads(r["value"]) for r in query(url, "SELECT key, value FROM kv WHERE namespace = 'shared'")}
    return {"results": results, "kv": kv}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def close_all() -> None:
    """Close the kept connections (before the server stops)."""
    for conn in _CONNS.values():
        _LOOP.run_until_complete(conn.close())
    _CONNS.clear()


async def aquery(url: str, sql: str, *args: Any) -> list[Any]:
    """query, from async code (its own connection)."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
