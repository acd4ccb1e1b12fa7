"""The web console's server side, in process: the page and its files need no token and carry a strict
CSP; its /v1/console routes need the token and refuse hostile input; the live feed sends the table
once, then only what changed; `llmasos console` builds a URL with nothing secret in it."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from llmasos.cli import cli
from llmasos.cli.console import console_url
from llmasos.client.console import ConsoleFeed
from llmasos.client.local import LocalClient
from tests.api.conftest import TOKEN

APPS = Path(__file__).parent.parent / "apps_for_tests.py"
NO_TOKEN = {"Authorization": ""}


async def test_the_page_and_its_files_need_no_token_and_forbid_foreign_scripts(served) -> None:
    async with served() as s:
        page = await s.http.get("/", headers=NO_TOKEN)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert '<form id="login-form"' in page.text and TOKEN not in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        for name in ("console.js", "chart.js", "console.css"):
            r = await s.http.get(f"/console/{name}", headers=NO_TOKEN)
            assert r.status_code == 200 and r.headers["content-security-policy"] == csp, name
        js = (await s.http.get("/console/console.js")).text
        assert "sessionStorage" in js and "innerHTML" not in js  # the token stays in the tab; text, never HTML


async def test_the_static_files_serve_nothing_else(served) -> None:
    async with served() as s:
        for path in ("/console/../http.py", "/console/%2e%2e/http.py", "/console/nope.js", "/console/../../errors.py",
                     "/nope", "/index.html"):
            r = await s.http.get(path, headers=NO_TOKEN)
            assert r.status_code == 404, path
            assert "def create_app" not in r.text
        r = await s.http.get("/v1/procs", headers=NO_TOKEN)  # the API itself still needs the token
        assert r.status_code == 401


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic " + TOKEN, "Bearer "])
async def test_console_routes_need_the_token(served, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else NO_TOKEN
    async with served() as s:
        for path in ("/v1/console/apps", "/v1/console/procs/0/context", "/v1/console/events"):
            r = await s.http.get(path, headers=headers)
            assert r.status_code == 401, (path, auth)
            assert r.json()["error"]["code"] == "Unauthorized" and r.headers["www-authenticate"] == "Bearer"


async def test_apps_come_with_their_parameters_and_manifests(served) -> None:
    async with served() as s:
        r = await s.http.get("/v1/console/apps")
    assert r.status_code == 200
    apps = {a["name"]: a for a in r.json()["data"]}
    chat = apps["chat"]
    assert chat["usage"] == "chat [SYSTEM] [MAX_TOKENS]" and chat["source"] == "builtin"
    assert [(p["name"], p["kind"], p["required"], p["type"]) for p in chat["params"]] == [
        ("system", "named", False, "str"), ("max_tokens", "named", False, "int")]
    assert chat["params"][1]["default"] == 256
    assert apps["echo"]["params"] == [{"name": "words", "kind": "rest", "required": False, "default": None,
                                       "type": "str", "secret": False}]
    assert apps["react"]["manifest"]["tools"] and apps["chat"]["manifest"]["can_spawn"] is False


async def test_context_usage_counts_a_process_context_against_the_window(served) -> None:
    async with served() as s:
        pid = (await s.http.post("/v1/procs", json={"app": "chat", "kwargs": {"max_tokens": 5}})).json()["pid"]
        await s.http.post(f"/v1/procs/{pid}/stdin", json={"text": "hello there\n", "close": True})
        await s.http.get(f"/v1/procs/{pid}", params={"wait": "true", "timeout": 5})
        r = await s.http.get(f"/v1/console/procs/{pid}/context")
    assert r.status_code == 200
    usage = r.json()
    assert usage["pid"] == pid and usage["window"] == s.engine.context_window
    assert usage["messages"] == 3 and 0 < usage["tokens"] < usage["window"]  # system, user, its reply


@pytest.mark.parametrize("pid,status", [("999", 404), ("-1", 422), ("abc", 422), (str(2**70), 422),
                                        ("1;DROP TABLE procs", 422)])
async def test_context_usage_refuses_bad_pids(served, pid: str, status: int) -> None:
    async with served() as s:
        r = await s.http.get(f"/v1/console/procs/{pid}/context")
    assert r.status_code == status
    assert r.json()["error"]["code"] in ("NoSuchProcess", "InvalidArguments")


@pytest.mark.parametrize("query", ["interval=abc", "interval=nan", "interval=inf", "interval=1e9", "interval=0",
                                   "interval=-1", "trace=maybe", "interval=0.5&interval=<script>"])
async def test_the_event_stream_refuses_hostile_parameters(served, query: str) -> None:
    async with served() as s:
        r = await s.http.get(f"/v1/console/events?{query}")
    assert r.status_code == 422, query
    assert r.json()["error"]["code"] == "InvalidArguments"


async def test_the_feed_sends_the_table_once_then_only_changes(served) -> None:
    async with served() as s:
        local = LocalClient(s.kernel)
        first = await local.spawn(f"{APPS}:lines", [], {})
        while (await local.info(first)).waiting_on != "stdin":  # settled: blocked on its stdin from now on
            await anyio.sleep(0.01)
        got: list[tuple[str, dict]] = []
        with anyio.fail_after(10):
            async with aclosing(ConsoleFeed(local).events(interval=0.1)) as feed:
                async for kind, data in feed:
                    got.append((kind, data))
                    if kind == "hello":
                        second = await local.spawn("echo", ["hi"], {})
                    if kind == "procs" and any(p["pid"] == second and p["ended"] for p in data["changed"]):
                        await local.wait(second)  # reaped: gone at the next tick
                    if kind == "procs" and second in data["gone"]:
                        break
        hello = got[0][1]
        assert got[0][0] == "hello" and [p["pid"] for p in hello["procs"]] == [first]
        assert hello["stats"]["engine"] == "fake" and "fifo" in hello["policies"] and hello["context_window"] > 0
        changed = [p["pid"] for k, d in got if k == "procs" for p in d["changed"]]
        assert second in changed and first not in changed  # the idle process is never sent again
        assert any(k == "stats" for k, _ in got)
        traced = [line for k, d in got if k == "trace" for line in d["lines"]]
        assert any(line.startswith(f"[{second}] write(") for line in traced)
        await local.kill(first)


def test_console_url_holds_nothing_secret() -> None:
    assert console_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765/"
    assert console_url(" http://h:1/?token=x#frag ") == "http://h:1/"
    assert console_url("https://example.org/llmasos/") == "https://example.org/llmasos/"
    for bad in ("ftp://h", "h:8765", "http://", "http://user:pw@h:1", "javascript:alert(1)", ""):
        with pytest.raises(ValueError):
            console_url(bad)



@pytest.mark.parametrize("trace", [True, False])
async def test_the_feed_ends_when_the_daemon_ends_its_streams(served, trace: bool) -> None:
    async with served() as s:
        local = LocalClient(s.kernel)
        kinds = []
        with anyio.fail_after(5):
            async with aclosing(ConsoleFeed(local).events(interval=0.1, trace=trace)) as feed:
                async for kind, _data in feed:
                    kinds.append(kind)
                    if kind == "hello":
                        await local.spawn("echo", ["hi"], {})
                    if len(kinds) == 6:
                        local.end_streams()  # what `llmasos serve` does on SIGINT
        assert kinds[0] == "hello" and ("trace" in kinds) is trace


@pytest.mark.parametrize("url,says", [("http://127.0.0.1:9", "no daemon answers at http://127.0.0.1:9/"),
                                      ("ftp://h", "must be the daemon's http(s) address"),
                                      ("http://me:secret@127.0.0.1:9", "must not hold credentials")])
def test_llmasos_console_fails_in_one_line(url: str, says: str) -> None:
    result = CliRunner().invoke(cli, ["console", "--url", url, "--no-open"])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert "secret" not in result.output


async def test_renice_over_http_and_through_the_remote_client(served) -> None:
    from llmasos.api import http
    from llmasos.client.remote import RemoteClient
    from llmasos.kernel.control import PRIORITY_LIMIT

    assert http.PRIORITY_LIMIT == PRIORITY_LIMIT  # the schema bounds what the kernel takes
    async with served() as s:
        pid = (await s.http.post("/v1/procs", json={"app": f"{APPS}:lines"})).json()["pid"]
        r = await s.http.put(f"/v1/procs/{pid}/priority", json={"priority": -3})
        assert r.status_code == 200 and r.json() == {"pid": pid, "priority": -3}
        assert (await s.http.get(f"/v1/procs/{pid}")).json()["priority"] == -3
        async with RemoteClient("http://llmasos.test", TOKEN, transport=s.transport()) as client:
            await client.renice(pid, 4)
            assert (await client.info(pid)).priority == 4
        for body in ({"priority": PRIORITY_LIMIT + 1}, {"priority": "1"}, {"priority": True}, {"priority": 1.5},
                     {}, {"priority": None}):
            r = await s.http.put(f"/v1/procs/{pid}/priority", json=body)
            assert r.status_code == 422 and r.json()["error"]["code"] == "InvalidArguments", body
        r = await s.http.put("/v1/procs/999/priority", json={"priority": 1})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NoSuchProcess"
        r = await s.http.put(f"/v1/procs/{pid}/priority", json={"priority": 1}, headers=NO_TOKEN)
        assert r.status_code == 401
        await s.http.delete(f"/v1/procs/{pid}")
        await s.http.get(f"/v1/procs/{pid}", params={"wait": "true", "timeout": 5})
        r = await s.http.put(f"/v1/procs/{pid}/priority", json={"priority": 1})
        assert r.status_code == 400 and "has ended" in r.json()["error"]["message"]
        assert (await s.http.get(f"/v1/procs/{pid}")).json()["priority"] == 4
