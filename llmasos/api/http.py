"""The HTTP syscall API: REST for processes, scheduling and stats, and the OpenAI-compatible endpoints.

    app = create_app(kernel, token)        # a FastAPI app; `llmasos serve` runs it under uvicorn

Rule: the REST half is the ``KernelClient`` protocol (llmasos.client) over the wire: each endpoint calls
``LocalClient`` methods and returns their records as JSON (``RemoteClient`` reads them back), so a shell
connected to a daemon sees what an in-process shell sees. Every endpoint needs the bearer token; every
error is ``{"error": {...}}`` with a status code (api/errors.py), never a traceback. A request the
client abandons (a disconnect during wait, a long poll or a stream) is cancelled; it never reaps or
generates for nobody.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmasos.api.errors import ServeError, status_of
from llmasos.api.spec import INVALID, Count, Int64, Pid, Timeout, errors, invalid, streams
from llmasos.client.local import LocalClient, policy_names
from llmasos.client.records import EngineStats
from llmasos.client.wire import Unauthorized, error_body, server_token
from llmasos.errors import LlmasosError
from llmasos.syscalls.errors import WaitTimeout
from llmasos.syscalls.types import as_dict

if TYPE_CHECKING:
    from llmasos.client.kernel import Kernel, KernelConfig

T = TypeVar("T")
NDJSON = "application/x-ndjson"

bearer = HTTPBearer(auto_error=False, description="The token in $LLMASOS_HOME/api_token (or $LLMASOS_API_TOKEN)")


# -- request bodies -----------------------------------------------------------------------------------

STRICT = ConfigDict(strict=True)  # JSON types as the spec says: "false" is no boolean, true no number


class CapsBody(BaseModel):
    """The capabilities a spawn asks for (none beyond what the root holds); a field left out is the app's
    manifest's. Strict: a flag is a JSON boolean and a limit a JSON integer, never a string or a boolean."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tools: str | list[str] | None = Field(None, description='Tool names it may call; "*": every one')
    memory: str | list[str] | None = Field(None, description='Memory namespaces beyond its own; "*": every one')
    models: str | list[str] | None = Field(None, description='Loaded models it may use; "*": every one its '
                                                             'parent may')
    can_spawn: bool = Field(True, description="Whether it may spawn processes")
    max_children: Count | None = None
    token_budget: Count | None = Field(None, description="Prompt + completion tokens over its life")
    syscall_budget: Count | None = None
    time_budget: float | None = Field(None, ge=0, allow_inf_nan=False, description="Seconds of life (wall time)")
    model_time_budget: float | None = Field(None, ge=0, allow_inf_nan=False, description="Seconds of model time")
    signal: bool = Field(False, description="Whether it may kill or wait for processes outside its own tree")
    see_args: bool = Field(False, description="Whether ps shows it other processes' arguments")

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        unknown = sorted(set(data) - set(cls.model_fields)) if isinstance(data, dict) else []
        if unknown:
            raise invalid(f"unknown capabilities {unknown}; the known ones are {list(cls.model_fields)}")
        return data


class SpawnBody(BaseModel):
    model_config = STRICT
    app: str = Field(description="An app name, a path (file.py[:app]) or module:attr")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    priority: Int64 | None = Field(None, description="A nice value: lower runs first under the priority policy "
                                                       "(none: the app's default)")
    caps: CapsBody | None = Field(None, description="Asked-for capabilities, e.g. {\"tools\": [\"calculator\"]}")


PRIORITY_LIMIT = 1_000_000  # the kernel's (kernel.control.PRIORITY_LIMIT; tests/api/test_console_routes.py checks)


class PriorityBody(BaseModel):
    model_config = STRICT
    priority: int = Field(ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, description="A nice value: lower runs first "
                                                                             "under the priority policy")


class StdinBody(BaseModel):
    model_config = STRICT
    text: str = ""
    close: bool = Field(False, description="End the input after text: the process's next read gets None")


class MessageBody(BaseModel):
    body: Any


POLICIES = policy_names()


class PolicyBody(BaseModel):
    model_config = STRICT
    policy: str = Field(description="The policy to switch to", json_schema_extra={"enum": POLICIES})
    model: str | None = Field(None, max_length=100,
                              description="The loaded model whose policy to switch; none: every model's")

    @field_validator("policy")
    @classmethod
    def _known(cls, policy: str) -> str:
        if policy not in POLICIES:
            raise invalid(f"unknown scheduling policy {policy!r}; choose one of: {', '.join(POLICIES)}")
        return policy


# -- JSON ---------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """as_dict, then anything JSON cannot hold (an app's exit value may be any object) as its repr."""
    return _clean(as_dict(value))


def _clean(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    return repr(v)


def listing(rows: list[Any]) -> dict[str, Any]:
    return {"object": "list", "data": [jsonable(r) for r in rows]}


def ndjson(items: AsyncIterator[Any]) -> StreamingResponse:
    """Stream items as one JSON object per line; leaving early closes the source."""

    async def body() -> AsyncIterator[str]:
        async with aclosing(items) as source:
            async for item in source:
                yield json.dumps(jsonable(item), ensure_ascii=False) + "\n"

    return StreamingResponse(body(), media_type=NDJSON, headers={"Cache-Control": "no-cache"})


async def unless_gone(request: Request, fn: Callable[[], Awaitable[T]]) -> T | None:
    """Run fn, cancelling it if the client disconnects first (then None)."""
    result: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def run() -> None:
            try:
                result.append(await fn())
            except Exception as exc:  # re-raised below as itself, not as an ExceptionGroup
                failed.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    if failed:
        raise failed[0]
    return result[0] if result else None


# -- the app ------------------------------------------------------------------------------------------


def create_app(kernel: Kernel, token: str) -> FastAPI:
    """The HTTP API over a booted kernel; every /v1 endpoint needs ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("the HTTP API needs a token (see llmasos.client.wire.server_token)")
    expected = token.encode()

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise Unauthorized("this API needs a bearer token: send `Authorization: Bearer <token>`; the "
                               "token is in $LLMASOS_HOME/api_token (or $LLMASOS_API_TOKEN) where the daemon runs")
        if not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise Unauthorized("wrong API token; use the one in $LLMASOS_HOME/api_token where the daemon runs")

    api = FastAPI(
        title="llmasos", version="0.1.0", dependencies=[Depends(authorize)],
        description="The llmasos kernel over HTTP: processes, scheduling, stats, and OpenAI-compatible "
                    "chat completions. Every endpoint needs `Authorization: Bearer <token>`.",
    )
    api.state.kernel = kernel
    api.add_middleware(BodyLimit, limit=kernel.config.max_body_size)
    _install_error_handlers(api)
    _process_routes(api, local := LocalClient(kernel))
    from llmasos.api.console import install

    install(api, local)  # the web console at / (docs/console.md)
    from llmasos.api.openai import router

    api.include_router(router(kernel))
    from llmasos.api.mcp import mount

    api.state.mcp = mount(api, kernel, token)  # MCP over streamable HTTP at /mcp (its sessions: serve)
    return api


class BodyLimit:
    """ASGI middleware: a request body over limit bytes (``KernelConfig.max_body_size``) is refused with
    413 before it is read whole: at once when its Content-Length says so, else when it grows past it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    def _message(self, size: str) -> str:
        return (f"the request body is {size} bytes, over the limit of {self.limit:,} "
                "(KernelConfig.max_body_size of the daemon); send less")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            body = json.dumps(error_body(self._message(f"{int(declared):,}"), "invalid_request_error",
                                         "InvalidArguments")).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, self._message(f"more than {self.limit:,}"))
            return message

        await self.app(scope, counted, send)


def _install_error_handlers(api: FastAPI) -> None:
    async def llmasos_error(_request: Request, exc: Exception) -> JSONResponse:
        status, type_ = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(str(exc), type_, type(exc).__name__), status, headers=headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if exc.errors() and all(e.get("type") == INVALID for e in exc.errors()):  # spec.invalid: 400 as it was
            return JSONResponse(error_body("; ".join(str(e.get("msg")) for e in exc.errors()),
                                           "invalid_request_error", "InvalidArguments"), 400)
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse(error_body("invalid request: " + "; ".join(parts), "invalid_request_error",
                                       "InvalidArguments"), 422)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), type_), exc.status_code, headers=exc.headers)

    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error ({type(exc).__name__}: {exc}); the daemon's log has "
                                       "the traceback", "server_error"), 500)

    api.add_exception_handler(LlmasosError, llmasos_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(Exception, internal_error)


SYSCALL = (400, 403, 503)  # a root syscall may be refused: its arguments, a capability, the kernel stopped


def _process_routes(api: FastAPI, local: LocalClient) -> None:
    """The KernelClient protocol: apps, processes, stdio, ipc, trace, scheduling, stats."""

    @api.get("/v1/apps", tags=["processes"], summary="Apps that can be spawned by name", responses=errors())
    async def apps() -> Any:
        return listing(await local.apps())

    @api.get("/v1/procs", tags=["processes"], summary="The process table", responses=errors(422))
    async def ps(all: bool = False) -> Any:
        return listing(await local.ps(all))

    @api.post("/v1/procs", tags=["processes"], status_code=201, summary="Spawn a process; returns its pid",
              responses=errors(*SYSCALL, 404, 413, 422))
    async def spawn(body: SpawnBody) -> Any:
        caps = body.caps.model_dump(exclude_unset=True) if body.caps is not None else None
        return {"pid": await local.spawn(body.app, body.args, body.kwargs, priority=body.priority, caps=caps)}

    @api.get("/v1/procs/{pid}", tags=["processes"], summary="One process (wait=true: once it has ended)",
             responses=errors(404, 408, 422))
    async def info(request: Request, pid: Pid, wait: bool = False, timeout: Timeout = None) -> Any:
        if wait and await local.alive(pid):  # a long poll: answer once it has ended (not reaped)
            with anyio.move_on_after(timeout):
                await unless_gone(request, lambda: local.ended(pid))
            if await local.alive(pid):
                raise WaitTimeout(f"process {pid} still runs after {timeout}s")
        return jsonable(await local.info(pid))

    @api.delete("/v1/procs/{pid}", tags=["processes"], summary="Kill a process and its children",
                responses=errors(*SYSCALL, 404, 422))
    async def kill(pid: Pid) -> Any:
        return {"pid": pid, "killed": await local.kill(pid)}

    @api.put("/v1/procs/{pid}/priority", tags=["processes"], summary="Change a live process's priority",
             responses=errors(*SYSCALL, 404, 413, 422))
    async def renice(pid: Pid, body: PriorityBody) -> Any:
        await local.renice(pid, body.priority)
        return {"pid": pid, "priority": body.priority}

    @api.post("/v1/procs/{pid}/wait", tags=["processes"], summary="Wait for a process to end and reap it",
              responses=errors(*SYSCALL, 404, 408, 422))
    async def wait(request: Request, pid: Pid, timeout: Timeout = None) -> Any:
        await local.info(pid)  # NoSuchProcess now, not after the long call
        return jsonable(await unless_gone(request, lambda: local.wait(pid, timeout)))

    @api.post("/v1/procs/{pid}/stdin", tags=["stdio"], summary="Write to a process's stdin (close: end it)",
              responses=errors(*SYSCALL, 404, 413, 422))
    async def stdin(pid: Pid, body: StdinBody) -> Any:
        if not body.text and not body.close:
            await local.info(pid)  # NoSuchProcess for a bad pid, as when there is something to write
        if body.text:
            await local.write_stdin(pid, body.text)
        if body.close:
            await local.close_stdin(pid)
        return {"pid": pid}

    @api.get("/v1/procs/{pid}/logs", tags=["stdio"], summary="Its stdout/stderr (follow=true: stream NDJSON)",
             responses={**streams(NDJSON, "NDJSON chunks with follow=true"), **errors(404, 422)})
    async def logs(pid: Pid, follow: bool = False, history: bool = True) -> Any:
        if not follow:
            return {"pid": pid, "output": [{"stream": s, "text": t} for s, t in await local.output(pid)]}
        await local.info(pid)
        return ndjson(_chunks(local.follow(pid, history)))

    @api.post("/v1/procs/{pid}/messages", tags=["ipc"], summary="Put a message in a process's mailbox",
              responses=errors(*SYSCALL, 404, 413, 422, 429))
    async def message(pid: Pid, body: MessageBody) -> Any:
        await local.send(pid, body.body)
        return {"pid": pid}

    @api.get("/v1/procs/{pid}/mem", tags=["processes"], summary="Its context and memory keys",
             responses=errors(404, 422))
    async def mem(pid: Pid) -> Any:
        return jsonable(await local.mem(pid))

    @api.get("/v1/procs/{pid}/trace", tags=["trace"],
             summary="Its recent syscalls (follow=true: stream); pid 0: the root process (the faces' requests)",
             responses={**streams(NDJSON, "NDJSON lines with follow=true"), **errors(404, 422)})
    async def trace(pid: Pid, follow: bool = False) -> Any:
        if pid:
            await local.info(pid)  # NoSuchProcess for a bad pid
        if follow:
            return ndjson(_lines(local.strace(pid)))
        return {"pid": pid, "lines": await local.trace(pid)}

    @api.get("/v1/trace", tags=["trace"], summary="Every process's recent syscalls (follow=true: stream)",
             responses={**streams(NDJSON, "NDJSON lines with follow=true"), **errors(422)})
    async def trace_all(follow: bool = False) -> Any:
        if follow:
            return ndjson(_lines(local.strace(None)))
        return {"lines": await local.trace(None)}

    @api.get("/v1/sched", tags=["scheduling"], summary="The scheduling policy and the choices", responses=errors())
    async def sched() -> Any:
        return {"policy": (await local.stats()).policy, "policies": await local.policies()}

    @api.put("/v1/sched", tags=["scheduling"],
             summary="Switch the scheduling policy now (of one model, or of every model)",
             responses=errors(*SYSCALL, 404, 413, 422))
    async def set_sched(body: PolicyBody) -> Any:
        await local.set_policy(body.policy, body.model)
        return {"policy": (await local.stats()).policy, "policies": await local.policies()}

    @api.get("/v1/stats", tags=["scheduling"], summary="The model side of top: batch, queues, tokens",
             responses=errors())
    async def stats() -> Any:
        return jsonable(await local.stats())

    @api.get("/v1/stats/models", tags=["scheduling"],
             summary="Every loaded model: engine kind, policy, queue (running/waiting), tokens", responses=errors())
    async def model_stats() -> Any:
        return listing(await local.model_stats())

    @api.get("/v1/tools", tags=["processes"], summary="The tools processes may call, with their schemas",
             responses=errors())
    async def tools() -> Any:
        from llmasos.tools import REGISTRY

        return {"object": "list", "data": [{"name": t.name, "description": t.description or "", "schema": t.schema}
                                           for t in REGISTRY.all()]}


async def _chunks(source: AsyncIterator[tuple[str, str]]) -> AsyncIterator[dict[str, str]]:
    async with aclosing(source) as chunks:
        async for stream, text in chunks:
            yield {"stream": stream, "text": text}


async def _lines(source: AsyncIterator[str]) -> AsyncIterator[dict[str, str]]:
    async with aclosing(source) as lines:
        async for line in lines:
            yield {"line": line}


# -- serving ------------------------------------------------------------------------------------------


async def serve(config: KernelConfig, host: str = "127.0.0.1", port: int = 8765, *, token: str | None = None,
                on_ready: Callable[[str, EngineStats], None] | None = None, apps: list[Any] | None = None) -> None:
    """Boot a kernel from config (starting apps, a config file's boot apps) and serve the API on host:port
    until SIGINT/SIGTERM (or cancellation).

    on_ready(url, stats) runs once the socket listens (port 0 picks a free port; the url has it).
    """
    if token is None:
        token, _where = server_token(config.home)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another `llmasos serve` "
                         "running? (pick another --port)") from None
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    fenced = False
    try:
        async with LocalClient.boot(config, apps) as local:
            api = create_app(local.kernel, token)
            server = _Server(uvicorn.Config(api, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
            async with api.state.mcp.run(), anyio.create_task_group() as tg:

                async def stop_on_signal() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            local.end_streams()  # (open follows would outlast the graceful shutdown)
                            server.should_exit = True
                            return

                async def announce() -> None:
                    while not server.started:
                        await anyio.sleep(0.02)
                    if on_ready is not None:
                        on_ready(url, await local.stats())

                async def stop_when_fenced() -> None:  # a cluster node that lost its lease stops serving
                    await local.fenced()
                    server.should_exit = True

                tg.start_soon(stop_on_signal)
                tg.start_soon(announce)
                tg.start_soon(stop_when_fenced)
                try:
                    await server.serve(sockets=[sock])
                finally:
                    tg.cancel_scope.cancel()
            fenced = local.is_fenced
    finally:
        sock.close()
    if fenced:
        raise ServeError("this cluster node lost its lease (another node adopted its processes) and stopped; "
                         "start it again to rejoin the cluster")


class _Server(uvicorn.Server):
    """uvicorn's Server minus its signal handling: serve() handles SIGINT/SIGTERM itself, so the kernel
    shuts down cleanly (uvicorn would re-raise the signal after its own shutdown, ending us first)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
