"""A throwaway PostgreSQL server for the postgres tests (initdb + pg_ctl under a temp directory).

Rule: use $LLMASOS_TEST_PG_URL when set; else start a private cluster from the server binaries if
they are installed (``apt-get install postgresql``; run as the ``postgres`` user when we are root);
else skip, saying why. The cluster is stopped and deleted afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running PostgreSQL server: its URL, and (for a private one) a restart."""

    def __init__(self, url: str, restart: Callable[[], None] | None = None) -> None:
        self.url = url
        self._restart = restart

    def restart(self) -> None:
        """Stop the server at once (every session is dropped), then start it again on the same port."""
        if self._restart is None:
            pytest.skip("$LLMASOS_TEST_PG_URL names a server these tests cannot restart")
        self._restart()


@contextmanager
def postgres_url() -> Iterator[str]:
    """Yield an asyncpg SQLAlchemy URL of an empty database; skip the test if none can run."""
    with postgres_server() as server:
        yield server.url


@contextmanager
def postgres_server() -> Iterator[Server]:
    """Yield a Server with an empty database; skip the test if none can run."""
    url = os.environ.get("LLMASOS_TEST_PG_URL")
    if url:
        yield Server(url)
        return
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found; install them with "
                    "`apt-get install postgresql` or set LLMASOS_TEST_PG_URL")
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="llmasos-pg-")
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = f"{root}/data", _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    def start() -> None:
        run(str(bindir / "pg_ctl"), "-D", data, "-l", f"{root}/log", "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def restart() -> None:
        run(str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        start()

    try:
        run(str(bindir / "initdb"), "-D", data, "-U", "llmasos", "--auth=trust", "-E", "UTF8")
        start()
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start a PostgreSQL server: {exc} {detail.decode(errors='replace')[-300:]}")
    try:
        yield Server(f"postgresql+asyncpg://llmasos@127.0.0.1:{port}/postgres", restart)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
