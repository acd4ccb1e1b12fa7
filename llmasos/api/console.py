"""The web console: its page at ``/``, its script and style under ``/console/``, and the few routes the
REST API lacks for it (apps with their parameters, a process's context usage, one live event stream).

    install(api, local)          # create_app calls it; `llmasos console` prints the URL

Rule: the page and its static files hold no data and need no token; everything they show comes from
token-protected routes, which the page calls with ``Authorization: Bearer`` (the token the user typed,
kept in the tab's sessionStorage), never with the token in a URL. The event stream is server-sent
events read with fetch(), so it sends the header too; it reads the kernel through the client, never
its internals, and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, StreamingResponse
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

from llmasos.api.spec import SSE, Pid, errors
from llmasos.client.console import ConsoleFeed, app_details, context_usage

if TYPE_CHECKING:
    from llmasos.client.local import LocalClient

STATIC = Path(__file__).parent / "static" / "console"
HEADERS = {  # the page runs only its own script and talks only to this server
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

Interval = Annotated[float, Query(ge=0.1, le=10, allow_inf_nan=False,
                                  description="Seconds between updates (0.1 to 10)")]


def install(api: FastAPI, local: LocalClient) -> None:
    """Add the console's page, static files and routes to api (its /v1 routes take the app's token)."""

    async def page(_request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    api.add_route("/", page, include_in_schema=False)  # a plain route: the app's token check is not on it
    api.mount("/console", _Static(directory=STATIC), name="console")

    @api.get("/v1/console/apps", tags=["console"], responses=errors(),
             summary="The apps that can be spawned by name, with main's parameters and their manifests")
    async def apps() -> Any:
        return {"object": "list", "data": app_details()}

    @api.get("/v1/console/procs/{pid}/context", tags=["console"], responses=errors(404, 422),
             summary="How many tokens of the model's context window a process's context holds")
    async def context(pid: Pid) -> Any:
        return await context_usage(local, pid)

    @api.get("/v1/console/events", tags=["console"], include_in_schema=False)
    async def events(interval: Interval = 0.5, trace: bool = True) -> StreamingResponse:
        """Server-sent events: hello (the whole table), then procs (changed rows, gone pids), stats, and
        trace (syscall lines), until the client leaves or the daemon stops."""
        return StreamingResponse(_sse(ConsoleFeed(local).events(interval, trace)), media_type=SSE,
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(feed: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[str]:
    from llmasos.api.http import jsonable

    async with aclosing(feed) as items:
        async for kind, data in items:
            yield f"event: {kind}\ndata: {json.dumps(jsonable(data), ensure_ascii=False)}\n\n"


class _Static(StaticFiles):
    """The console's files with the page's security headers."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response
