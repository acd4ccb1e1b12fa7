"""RemoteClient: a KernelClient over the HTTP API of a daemon (`llmasos serve`).

    client = RemoteClient("http://127.0.0.1:8765")   # token: argument, $LLMASOS_API_TOKEN, or the token file
    pid = await client.spawn("echo", ["hi"], {})

Rule: same methods and records as ``LocalClient``; an error the daemon reports comes back as the same
llmasos error class, and a daemon that is down or refuses the token is one line that says what to do.
It imports nothing of the kernel, the engine or torch: `llmasos ps --url` starts in a blink.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llmasos.client.records import AppRow, EngineStats, MemView, ModelStats, Row
from llmasos.client.wire import DEFAULT_URL, ENV, DaemonUnreachable, Unauthorized, client_token, error_from
from llmasos.home import llmasos_home
from llmasos.syscalls.types import ExitStatus, ProcInfo, Usage

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
LONG = httpx.Timeout(None, connect=5.0)  # waits, long polls and streams: as long as they take


class RemoteClient:
    """A KernelClient over a kernel daemon's HTTP API."""

    remote = True

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.where = url.rstrip("/")
        self._token = client_token(llmasos_home(), token)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        # No connection limit: the shell keeps one long poll open per process it watches.
        self._http = httpx.AsyncClient(base_url=self.where, headers=headers, timeout=TIMEOUT, transport=transport,
                                       limits=httpx.Limits(max_connections=None, max_keepalive_connections=20))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport ----------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, long: bool = False, **kw: Any) -> Any:
        try:
            r = await self._http.request(method, path, timeout=LONG if long else TIMEOUT, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise self._error(r.status_code, _json(r.content))
        return r.json()

    async def _stream(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self._http.stream("GET", path, params=params, timeout=LONG) as r:
                if r.status_code >= 400:
                    raise self._error(r.status_code, _json(await r.aread()))
                async for line in r.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> DaemonUnreachable:
        if isinstance(exc, httpx.ConnectError):
            return DaemonUnreachable(f"no llmasos daemon answers at {self.where}; start one with `llmasos serve` "
                                     "(or give the right --url)")
        return DaemonUnreachable(f"lost the connection to the daemon at {self.where}: {type(exc).__name__} {exc}".rstrip())

    def _error(self, status: int, body: Any) -> Exception:
        if status == 401:
            if not self._token:
                return Unauthorized(f"the daemon at {self.where} needs its API token: set ${ENV} to the one in the "
                                    "daemon's $LLMASOS_HOME/api_token (`llmasos serve` shows that path when it "
                                    "starts)")
            return Unauthorized(f"the daemon at {self.where} refused the API token; use the one in the daemon's "
                                f"$LLMASOS_HOME/api_token (set ${ENV})")
        return error_from(body, status)

    # -- the KernelClient protocol -------------------------------------------------------------------

    async def apps(self) -> list[AppRow]:
        return [AppRow(**row) for row in (await self._call("GET", "/v1/apps"))["data"]]

    async def spawn(self, app: str, args: list[Any], kwargs: dict[str, Any], *, priority: int | None = None,
                    caps: dict[str, Any] | None = None) -> int:
        body = {"app": app, "args": list(args), "kwargs": dict(kwargs), "priority": priority, "caps": caps}
        return int((await self._call("POST", "/v1/procs", json=body))["pid"])

    async def kill(self, pid: int) -> bool:
        return bool((await self._call("DELETE", f"/v1/procs/{pid}"))["killed"])

    async def renice(self, pid: int, priority: int) -> None:
        await self._call("PUT", f"/v1/procs/{pid}/priority", json={"priority": priority})

    async def wait(self, pid: int, timeout: float | None = None) -> ExitStatus:
        params = {"timeout": timeout} if timeout is not None else {}
        return ExitStatus(**await self._call("POST", f"/v1/procs/{pid}/wait", params=params, long=True))

    async def ended(self, pid: int, timeout: float | None = None) -> ProcInfo:
        """Wait until pid ends, without reaping it (ps -a still lists it); WaitTimeout after timeout s."""
        params = {"wait": "true", **({"timeout": timeout} if timeout is not None else {})}
        return _procinfo(await self._call("GET", f"/v1/procs/{pid}", params=params, long=True))

    async def ps(self, all: bool = False) -> list[ProcInfo]:
        rows = await self._call("GET", "/v1/procs", params={"all": "true"} if all else {})
        return [_procinfo(row) for row in rows["data"]]

    async def info(self, pid: int) -> ProcInfo:
        return _procinfo(await self._call("GET", f"/v1/procs/{pid}"))

    async def write_stdin(self, pid: int, text: str) -> None:
        await self._call("POST", f"/v1/procs/{pid}/stdin", json={"text": text})

    async def close_stdin(self, pid: int) -> None:
        await self._call("POST", f"/v1/procs/{pid}/stdin", json={"close": True})

    async def send(self, pid: int, body: Any) -> None:
        await self._call("POST", f"/v1/procs/{pid}/messages", json={"body": body})

    async def output(self, pid: int) -> list[tuple[str, str]]:
        out = (await self._call("GET", f"/v1/procs/{pid}/logs"))["output"]
        return [(c["stream"], c["text"]) for c in out]

    async def follow(self, pid: int, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        params = {"follow": "true", "history": "true" if history else "false"}
        async for item in self._stream(f"/v1/procs/{pid}/logs", params):
            yield item["stream"], item["text"]

    async def trace(self, pid: int | None) -> list[str]:
        """The recent syscalls of pid (None: of every process), oldest first, as strace prints them."""
        return list((await self._call("GET", "/v1/trace" if pid is None else f"/v1/procs/{pid}/trace"))["lines"])

    async def strace(self, pid: int | None) -> AsyncIterator[str]:
        path = f"/v1/procs/{pid}/trace" if pid is not None else "/v1/trace"
        async for item in self._stream(path, {"follow": "true"}):
            yield item["line"]

    async def stats(self) -> EngineStats:
        data = await self._call("GET", "/v1/stats")
        data.pop("at", None)  # the server's clock; rates are computed on this one
        return EngineStats(**data)

    async def model_stats(self) -> list[ModelStats]:
        rows = (await self._call("GET", "/v1/stats/models"))["data"]
        return [ModelStats(**{k: v for k, v in row.items() if k != "at"}) for row in rows]

    async def policies(self) -> list[str]:
        return list((await self._call("GET", "/v1/sched"))["policies"])

    async def set_policy(self, name: str, model: str | None = None) -> None:
        body = {"policy": name} if model is None else {"policy": name, "model": model}
        await self._call("PUT", "/v1/sched", json=body)

    async def models(self) -> list[Row]:
        rows = (await self._call("GET", "/v1/models", params={"all": "true"}))["data"]
        return [Row(m["id"], m.get("description", ""), m.get("status", "")) for m in rows]

    async def tools(self) -> list[Row]:
        return [Row(t["name"], t.get("description", "")) for t in (await self._call("GET", "/v1/tools"))["data"]]

    async def mem(self, pid: int) -> MemView:
        return MemView(**await self._call("GET", f"/v1/procs/{pid}/mem"))


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def _procinfo(d: dict[str, Any]) -> ProcInfo:
    return ProcInfo(**{**d, "args": tuple(d.get("args") or ()), "usage": Usage(**d.get("usage") or {})})
