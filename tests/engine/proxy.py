"""A real loopback HTTP proxy in front of an OpenAI-compatible server, for OpenAIEngine's tests: it
forwards every request and can inject faults (a status, a refusal of tools, a stall, slow or garbage
streams), and it records what it saw (request bodies, requests open at once, clients that left early).

It runs uvicorn on its own thread and event loop, so the engine talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class Proxy:
    """``with Proxy(upstream) as p: ... p.url``; set the fault fields between requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.reset()
        app = Starlette(routes=[Route("/v1/{path:path}", self._forward, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="test-proxy", daemon=True)

    def reset(self) -> None:
        self.fail: deque[tuple[int, str | None]] = deque()  # (status, Retry-After) answered next
        self.reject_tools = False  # 400 for any request that carries tools
        self.stall = False  # answer 200 and then send nothing
        self.delay = 0.0  # seconds before each forwarded event
        self.garbage: bytes | None = None  # sent as the whole stream instead of the server's
        self.override: dict[str, Any] = {}  # merged into the forwarded body (a server ignoring arguments)
        self.bodies: list[dict[str, Any]] = []
        self.open = self.max_open = self.disconnects = self.completed = 0

    def __enter__(self) -> Proxy:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            threading.Event().wait(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    async def _forward(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        if self.fail:
            status, after = self.fail.popleft()
            headers = {"Retry-After": after} if after is not None else {}
            return JSONResponse({"error": {"message": f"injected {status}"}}, status, headers=headers)
        if self.reject_tools and "tools" in body:
            return JSONResponse({"error": {"message": "this server does not support tools"}}, 400)
        if self.garbage is not None:
            return Response(self.garbage, media_type="text/event-stream")
        body.update(self.override)
        path, auth = request.path_params["path"], request.headers.get("authorization", "")
        return StreamingResponse(self._relay(path, body, auth), media_type="text/event-stream")

    async def _relay(self, path: str, body: dict[str, Any], auth: str):
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        done = False
        try:
            if self.stall:
                await asyncio.sleep(3600)
            async with httpx.AsyncClient(timeout=30) as client, client.stream(
                    "POST", f"{self.upstream}/{path}", json=body, headers={"Authorization": auth}) as r:
                if r.status_code >= 400:
                    yield await r.aread()
                    done = True
                    return
                async for line in r.aiter_lines():
                    if self.delay and line.startswith("data:"):
                        await asyncio.sleep(self.delay)
                    yield line + "\n"
            done = True
        finally:
            self.open -= 1
            if done:
                self.completed += 1
            else:
                self.disconnects += 1
