"""The REST half of the HTTP API: processes, stdio, ipc, trace, scheduling, stats, auth and errors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from llmasos.api.errors import status_of
from llmasos.syscalls import errors as se
from tests.api.conftest import TOKEN

APPS = Path(__file__).parent.parent / "apps_for_tests.py"
MAILBOX, LINES, SLEEPER, CRASH, OPAQUE = (f"{APPS}:{n}" for n in ("mailbox", "lines", "sleeper", "crash", "opaque"))

ENDPOINTS = [
    ("GET", "/v1/apps"), ("GET", "/v1/procs"), ("POST", "/v1/procs"), ("GET", "/v1/procs/1"),
    ("DELETE", "/v1/procs/1"), ("POST", "/v1/procs/1/wait"), ("POST", "/v1/procs/1/stdin"),
    ("GET", "/v1/procs/1/logs"), ("POST", "/v1/procs/1/messages"), ("GET", "/v1/procs/1/mem"),
    ("GET", "/v1/procs/1/trace"), ("GET", "/v1/trace"), ("GET", "/v1/sched"), ("PUT", "/v1/sched"),
    ("GET", "/v1/stats"), ("GET", "/v1/tools"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
]


async def spawn(http: httpx.AsyncClient, app: str, *args: object, **kwargs: object) -> int:
    r = await http.post("/v1/procs", json={"app": app, "args": list(args), "kwargs": kwargs})
    assert r.status_code == 201, r.text
    return r.json()["pid"]


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] and "Traceback" not in err["message"]
    return err["message"]


# -- auth ---------------------------------------------------------------------------------------------


async def test_every_endpoint_needs_the_token(served) -> None:
    async with served() as s:
        bare = httpx.AsyncClient(transport=s.transport(), base_url="http://llmasos.test")
        async with bare:
            for method, path in ENDPOINTS:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                    r = await bare.request(method, path, headers=headers, json={})
                    assert r.status_code == 401, (method, path, headers, r.text)
                    assert r.headers["www-authenticate"] == "Bearer"
                    assert r.json()["error"]["type"] == "authentication_error"
            assert s.kernel.ps(all=True) == []  # nothing ran
            # The OpenAPI docs stay available, and say how to authenticate.
            schema = (await bare.get("/openapi.json")).json()
            assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
            assert {"/v1/procs", "/v1/chat/completions", "/v1/models"} <= set(schema["paths"])
            assert (await bare.get("/docs")).status_code == 200


# -- processes ----------------------------------------------------------------------------------------


async def test_spawn_ps_info_wait(served) -> None:
    async with served() as s:
        apps = (await s.http.get("/v1/apps")).json()
        assert apps["object"] == "list" and {"echo", "chat", "hello"} <= {a["name"] for a in apps["data"]}
        pid = await spawn(s.http, "echo", "hello", "world")
        info = (await s.http.get(f"/v1/procs/{pid}", params={"wait": "true"})).json()  # long poll: once ended
        assert info["pid"] == pid and info["app"] == "echo" and info["state"] == "exited"
        assert info["args"] == ["hello", "world"] and info["usage"]["syscalls"] == 1
        assert (await s.http.get("/v1/procs")).json()["data"] == []  # live only
        rows = (await s.http.get("/v1/procs", params={"all": "true"})).json()["data"]
        assert [r["pid"] for r in rows] == [pid]
        status = (await s.http.post(f"/v1/procs/{pid}/wait")).json()
        assert status == {"pid": pid, "state": "exited", "value": "hello world", "error": None}
        error_of(await s.http.post(f"/v1/procs/{pid}/wait"), 404, "NoSuchProcess")  # reaped


async def test_spawn_with_keyword_arguments_priority_and_caps(served) -> None:
    async with served() as s:
        r = await s.http.post("/v1/procs", json={"app": SLEEPER, "kwargs": {"seconds": "0.01"}, "priority": 7,
                                                 "caps": {"tools": ["calculator"]}})
        pid = r.json()["pid"]
        info = (await s.http.get(f"/v1/procs/{pid}")).json()
        assert info["priority"] == 7 and info["caps"]["tools"] == ["calculator"]
        assert (await s.http.post(f"/v1/procs/{pid}/wait")).json()["value"] == "rested"


async def test_spawn_errors_are_typed(served) -> None:
    async with served(max_procs=1) as s:
        assert "did you mean 'echo'" in error_of(await s.http.post("/v1/procs", json={"app": "ehco"}), 404, "NoSuchApp")
        msg = error_of(await s.http.post("/v1/procs", json={"app": "hello", "args": [1, 2, 3, 4]}), 400,
                       "InvalidArguments")
        assert "usage: hello" in msg
        msg = error_of(await s.http.post("/v1/procs", json={"args": []}), 422, "InvalidArguments")
        assert "app" in msg
        await spawn(s.http, SLEEPER)
        error_of(await s.http.post("/v1/procs", json={"app": SLEEPER}), 503, "ProcessLimit")
        error_of(await s.http.get("/v1/procs/99"), 404, "NoSuchProcess")
        error_of(await s.http.get("/v1/procs/abc"), 422, "InvalidArguments")
        r = await s.http.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


async def test_kill(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, SLEEPER)
        assert (await s.http.delete(f"/v1/procs/{pid}")).json() == {"pid": pid, "killed": True}
        assert (await s.http.get(f"/v1/procs/{pid}", params={"wait": "true"})).json()["state"] == "killed"
        assert (await s.http.delete(f"/v1/procs/{pid}")).json() == {"pid": pid, "killed": False}
        assert (await s.http.post(f"/v1/procs/{pid}/wait")).json()["state"] == "killed"
        error_of(await s.http.delete("/v1/procs/999"), 404, "NoSuchProcess")


async def test_wait_timeout_leaves_the_process_alone(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, SLEEPER)
        msg = error_of(await s.http.post(f"/v1/procs/{pid}/wait", params={"timeout": 0.05}), 408, "WaitTimeout")
        assert "still runs" in msg
        error_of(await s.http.get(f"/v1/procs/{pid}", params={"wait": "true", "timeout": 0.05}), 408, "WaitTimeout")
        assert (await s.http.get(f"/v1/procs/{pid}")).json()["state"] in ("running", "waiting")


async def test_crash_and_values_json_cannot_hold(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, CRASH)
        status = (await s.http.post(f"/v1/procs/{pid}/wait")).json()
        assert status["state"] == "crashed" and "ValueError: something broke" in status["error"]
        pid = await spawn(s.http, OPAQUE)
        assert (await s.http.post(f"/v1/procs/{pid}/wait")).json()["value"] == {"thing": "<Opaque>", "nan": "nan"}


# -- stdio and ipc ------------------------------------------------------------------------------------


async def test_stdin_and_logs(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, LINES)
        assert (await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "one\ntwo\n"})).status_code == 200
        assert (await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "three", "close": True})).status_code == 200
        await s.http.get(f"/v1/procs/{pid}", params={"wait": "true"})
        logs = (await s.http.get(f"/v1/procs/{pid}/logs")).json()
        assert "".join(c["text"] for c in logs["output"]) == "ONE\nTWO\nTHREE"
        assert {c["stream"] for c in logs["output"]} == {"stdout"}
        assert (await s.http.post(f"/v1/procs/{pid}/wait")).json()["value"] == 3
        error_of(await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "x"}), 404, "NoSuchProcess")

        pid = await spawn(s.http, CRASH)
        await s.http.get(f"/v1/procs/{pid}", params={"wait": "true"})
        streams = {c["stream"] for c in (await s.http.get(f"/v1/procs/{pid}/logs")).json()["output"]}
        assert streams == {"stderr"}  # its line and its traceback


async def test_logs_follow_streams_ndjson_until_the_process_ends(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, LINES)
        await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "before\n"})
        got: list[dict] = []

        async def follow() -> None:
            async with s.http.stream("GET", f"/v1/procs/{pid}/logs", params={"follow": "true"}) as r:
                assert r.headers["content-type"].startswith("application/x-ndjson")
                async for line in r.aiter_lines():
                    if line:
                        got.append(json.loads(line))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await anyio.sleep(0.05)
                await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "after\n", "close": True})
        assert got == [{"stream": "stdout", "text": "BEFORE\n"}, {"stream": "stdout", "text": "AFTER\n"}]
        r = await s.http.get("/v1/procs/999/logs", params={"follow": "true"})
        error_of(r, 404, "NoSuchProcess")


async def test_messages(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, MAILBOX)
        r = await s.http.post(f"/v1/procs/{pid}/messages", json={"body": {"task": "sum", "xs": [1, 2]}})
        assert r.status_code == 200
        assert (await s.http.post(f"/v1/procs/{pid}/wait")).json()["value"] == {"task": "sum", "xs": [1, 2]}
        error_of(await s.http.post(f"/v1/procs/{pid}/messages", json={"body": 1}), 404, "NoSuchProcess")
        error_of(await s.http.post("/v1/procs/1/messages", json={}), 422, "InvalidArguments")


# -- trace, scheduling, stats, tools, memory ----------------------------------------------------------


async def test_trace_recent_and_followed(served) -> None:
    async with served() as s:
        pid = await spawn(s.http, "echo", "hi")
        await s.http.get(f"/v1/procs/{pid}", params={"wait": "true"})
        lines = (await s.http.get(f"/v1/procs/{pid}/trace")).json()["lines"]
        assert len(lines) == 1 and lines[0].startswith(f"[{pid}] write(text='hi\\n'")
        everything = (await s.http.get("/v1/trace")).json()["lines"]
        assert lines[0] in everything
        # The HTTP request itself crossed the chokepoint, as a syscall of the root process (pid 0).
        spawns = [line for line in everything if line.startswith("[0] spawn(app='echo'")]
        assert spawns and f"= {pid} <" in spawns[0]
        assert (await s.http.get("/v1/procs/0/trace")).json()["lines"][0].startswith("[0] spawn(app='echo'")

        pid = await spawn(s.http, LINES)
        got: list[str] = []

        async def follow() -> None:
            async with s.http.stream("GET", f"/v1/procs/{pid}/trace", params={"follow": "true"}) as r:
                async for line in r.aiter_lines():
                    if line:
                        got.append(json.loads(line)["line"])

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await anyio.sleep(0.05)
                await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "x\n", "close": True})
        assert [line.split("(")[0] for line in got] == [f"[{pid}] readline", f"[{pid}] write", f"[{pid}] readline"]
        error_of(await s.http.get("/v1/procs/999/trace"), 404, "NoSuchProcess")


async def test_sched(served) -> None:
    async with served() as s:
        assert (await s.http.get("/v1/sched")).json() == {"policy": "fifo", "policies": ["fair", "fifo", "priority", "rr"]}
        assert (await s.http.put("/v1/sched", json={"policy": "rr"})).json()["policy"] == "rr"
        assert s.kernel.policy == "rr"
        msg = error_of(await s.http.put("/v1/sched", json={"policy": "lottery"}), 400, "InvalidArguments")
        assert "choose one of: fair, fifo, priority, rr" in msg
        error_of(await s.http.put("/v1/sched", json={}), 422, "InvalidArguments")


async def test_stats_tools_mem(served) -> None:
    async with served() as s:
        await s.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        stats = (await s.http.get("/v1/stats")).json()
        assert stats["engine"] == "fake" and stats["policy"] == "fifo" and stats["steps"] >= 1
        assert {"max_batch", "last_batch", "running", "waiting", "tokens", "busy_time", "resident_tokens",
                "max_resident_tokens", "uptime"} <= set(stats)
        tools = {t["name"]: t for t in (await s.http.get("/v1/tools")).json()["data"]}
        assert tools["calculator"]["schema"]["function"]["name"] == "calculator"
        pid = await spawn(s.http, SLEEPER)
        mem = (await s.http.get(f"/v1/procs/{pid}/mem")).json()
        assert mem == {"context": [], "keys": {}, "note": mem["note"]}
        error_of(await s.http.get("/v1/procs/999/mem"), 404, "NoSuchProcess")


@pytest.mark.parametrize(("error", "status"), [
    (se.NoSuchProcess, 404), (se.NoSuchApp, 404), (se.InvalidArguments, 400), (se.PermissionDenied, 403),
    (se.ContextOverflow, 400), (se.ProcessLimit, 503), (se.QuotaExceeded, 429), (se.MailboxFull, 429),
    (se.WaitTimeout, 408), (se.EngineError, 500), (se.NotSupported, 501), (se.ToolError, 400),
])
def test_error_status_codes(error: type[Exception], status: int) -> None:
    assert status_of(error("x"))[0] == status
