"""Application: the seed's web app of routes over a model, each request run as a kernel process.

    app = Application(LLM.from_pretrained("smollm2-135m"))

    @app.route("/ask")
    def ask(question):
        return model.generate_text(question, max_length=100)

    app.run()          # serves http://127.0.0.1:8000/ask?question=... until Ctrl-C

Rule: one door. A request opens a request process of the app (``kernel.session``, caps from
``KernelConfig.request_caps``), which spawns the route's process as its child and waits for it: both
are in ps, killable, traced and charged to that budget, and the route's generate calls are batched with
every other request's. Handler arguments come from the query string or a JSON body and are checked
against the handler's signature before it runs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio

from llmasos.apps.app import App, check_name
from llmasos.syscalls.calls import Spawn
from llmasos.syscalls.errors import InvalidArguments
from llmasos.syscalls.types import as_dict


class Application:
    """HTTP routes whose handlers run as llmasos processes sharing one model."""

    def __init__(self, model: Any = None, *, name: str = "app", config: Any = None) -> None:
        self.model = model
        self.name = check_name(name)  # its request processes are named after it
        self.config = config  # a KernelConfig; its engine defaults to the model's
        self.routes: dict[str, tuple[App, tuple[str, ...]]] = {}
        self.kernel: Any = None  # set while serving
        self._server: Any = None
        self._stopping = False  # stop() was called: serve() returns as soon as it can

    def route(self, path: str, methods: Iterable[str] = ("GET", "POST")) -> Callable[[Callable], Callable]:
        """Decorator: serve fn at path; its parameters come from the query string or JSON body."""
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/', not {path!r}")

        def register(fn: Callable) -> Callable:
            self.routes[path] = (_route_app(self.name, path, fn), tuple(m.upper() for m in methods))
            return fn

        return register

    def asgi(self, kernel: Any) -> Any:
        """The FastAPI app serving the routes on kernel."""
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, PlainTextResponse

        api = FastAPI(title=self.name)

        def endpoint(app: App) -> Callable:
            async def handle(request: Request) -> Any:
                params: dict[str, Any] = dict(request.query_params)
                if request.method == "POST" and await request.body():
                    try:
                        body = await request.json()
                    except ValueError:
                        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
                    if not isinstance(body, dict):
                        return JSONResponse({"error": "the JSON body must be an object"}, status_code=400)
                    params.update(body)
                async with kernel.session(self.name) as sys:
                    try:
                        pid = await sys.syscall(Spawn(app, (), params))
                    except InvalidArguments as exc:
                        return JSONResponse({"error": str(exc)}, status_code=422)
                    status = await sys.wait(pid)
                if status.state != "exited":
                    reason = (status.error or status.state).strip().splitlines()[-1]
                    code = 500 if status.state == "crashed" else 503
                    return JSONResponse({"error": reason, "pid": pid, "state": status.state}, status_code=code)
                if isinstance(status.value, str):
                    return PlainTextResponse(status.value)
                return JSONResponse(as_dict(status.value))

            handle.__annotations__ = {"request": Request}  # resolved here: FastAPI reads annotations
            return handle

        for path, (app, methods) in self.routes.items():
            api.add_api_route(path, endpoint(app), methods=list(methods), name=app.name)
        return api

    async def serve(self, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
        """Boot a kernel on the model and serve until stop() or cancellation (signals are the caller's)."""
        import uvicorn

        from llmasos.client.kernel import Kernel, KernelConfig

        class Server(uvicorn.Server):
            # uvicorn would re-raise a SIGINT after its own shutdown, interrupting the kernel's: run() stops
            # the server on a signal itself, and a caller of serve() handles signals as it likes.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self._stopping = False
        config = self.config or KernelConfig()
        if config.engine is None and self.model is not None:
            config.engine = await anyio.to_thread.run_sync(lambda: self.model.engine)
        if self._stopping:  # stopped while the model loaded: no kernel to boot
            return
        async with Kernel(config) as kernel:
            self.kernel = kernel
            self._server = Server(uvicorn.Config(self.asgi(kernel), host=host, port=port,
                                                         **uvicorn_options))
            self._server.should_exit = self._stopping
            try:
                await self._server.serve()
            finally:
                self.kernel = self._server = None

    def stop(self) -> None:
        """Ask a serving application to finish its requests and return from serve()/run()."""
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True

    def run(self, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
        """Serve on host:port (loopback by default) until Ctrl-C or SIGTERM, then stop cleanly.

        It says one line when it serves and one when it stops; uvicorn logs only warnings unless
        log_level says otherwise (log_level="info" shows each request).
        """
        uvicorn_options.setdefault("log_level", "warning")
        try:
            anyio.run(self._run, host, port, uvicorn_options)
        except KeyboardInterrupt:  # a second Ctrl-C while stopping, or one outside the event loop
            pass
        print("llmasos: stopped", file=sys.stderr, flush=True)

    async def _run(self, host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                if threading.current_thread() is not threading.main_thread():
                    return  # signals reach only the main thread: stop() ends this one
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        if self._server is not None and self._server.should_exit:
                            self._server.force_exit = True  # a second Ctrl-C: stop without waiting for requests
                        else:
                            self.stop()  # (while the model loads: once it has loaded)

            async def announce() -> None:
                while self._server is None or not self._server.started:
                    await anyio.sleep(0.02)
                routes = " ".join(self.routes) or "none"
                where = f"[{host}]" if ":" in host else host
                print(f"llmasos: serving http://{where}:{port} (routes: {routes}); Ctrl-C stops",
                      file=sys.stderr, flush=True)

            tg.start_soon(stop_on_signal)
            tg.start_soon(announce)
            try:
                await self.serve(host, port, **uvicorn_options)
            finally:
                tg.cancel_scope.cancel()


def _route_app(name: str, path: str, fn: Callable) -> App:
    """An App whose main runs fn (in a worker thread if it is not async) with the request's arguments."""
    route = path.strip("/").replace("/", ".") or "index"  # an app name has no ':' or '/': /a/b -> app.a.b
    app = App(f"{name}.{route}", (inspect.getdoc(fn) or "").split("\n")[0], restartable=False)
    is_async = inspect.iscoroutinefunction(fn)

    async def main(sys: Any, *args: Any, **kwargs: Any) -> Any:
        if is_async:
            return await fn(*args, **kwargs)
        # Invariant: the worker thread runs in a copy of this task's context, so the LLM handle
        # called inside fn finds this process and makes its generate call a syscall of it.
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    sig = inspect.signature(fn)
    sys_param = inspect.Parameter("sys", inspect.Parameter.POSITIONAL_ONLY)
    main.__signature__ = sig.replace(parameters=[sys_param, *sig.parameters.values()])  # type: ignore[attr-defined]
    main.__annotations__ = dict(getattr(fn, "__annotations__", {}))
    app.main(main)
    return app
