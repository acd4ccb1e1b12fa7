"""Ctrl-C on `llmasos serve` while clients follow a process's output or the trace: a clean stop, no traceback."""

from __future__ import annotations

import threading
import time

import httpx

from tests.daemon import daemon_env, start_daemon, stop_daemon


def test_ctrl_c_on_serve_with_followers_attached_stops_cleanly(tmp_path):
    env = daemon_env(tmp_path / "home")
    daemon, url = start_daemon(env)
    token = (tmp_path / "home" / "api_token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    pid = httpx.post(f"{url}/v1/procs", json={"app": "chat"}, headers=headers).json()["pid"]
    ended: list[str] = []

    def follow(path: str) -> None:
        with httpx.stream("GET", f"{url}{path}", params={"follow": "true"}, headers=headers, timeout=30) as r:
            for _ in r.iter_lines():
                pass
        ended.append(path)

    followers = [threading.Thread(target=follow, args=(p,), daemon=True)
                 for p in (f"/v1/procs/{pid}/logs", "/v1/trace")]
    for t in followers:
        t.start()
    time.sleep(0.5)  # both streams are open
    t0 = time.monotonic()
    rc, err = stop_daemon(daemon)
    assert time.monotonic() - t0 < 5, "the open streams held the shutdown"
    assert "Traceback" not in err and "CancelledError" not in err, err
    for t in followers:
        t.join(5)
    assert sorted(ended) == sorted([f"/v1/procs/{pid}/logs", "/v1/trace"])  # each client saw its stream end
    assert rc == 0
