"""`llmasos console`: open the web console of a running daemon (`llmasos serve`) in a browser.

Rule: the URL it prints and opens never holds the token; the page asks for it once and keeps it in the
tab's session. It checks that a daemon answers there first, so a wrong --url is one line, not a blank
browser tab.
"""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

from llmasos.cli.options import DEFAULT_URL, UrlOpt, fail

OpenOpt = Annotated[bool, typer.Option("--open/--no-open", help="Open it in the default browser (else: print only)")]


def console_url(url: str) -> str:
    """The console's address at the daemon url: its root, with no query or fragment (nothing secret)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be the daemon's http(s) address, such as {DEFAULT_URL}; got {url!r}")
    if parts.username or parts.password:
        raise ValueError("--url must not hold credentials; the console asks for the API token itself")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/", "", ""))


def console(url: UrlOpt = DEFAULT_URL, open_: OpenOpt = True) -> None:
    """Open the web console of a running daemon: processes, output, syscalls, the model, tools and apps.

    It asks for the API token (in $LLMASOS_HOME/api_token where the daemon runs) once per browser tab.
    """
    import httpx

    try:
        where = console_url(url)
    except ValueError as exc:
        fail(str(exc))
    try:
        r = httpx.get(where, timeout=5.0)
    except httpx.HTTPError as exc:
        fail(f"no daemon answers at {where} ({type(exc).__name__}); start one with `llmasos serve` or pass --url")
    if r.status_code != 200 or "llmasos console" not in r.text:
        fail(f"{where} answers {r.status_code} but serves no llmasos console; is it an older `llmasos serve`?")
    typer.echo(f"llmasos console: {where}\n  log in with the token in $LLMASOS_HOME/api_token where the daemon runs")
    if open_ and not (_graphical() and webbrowser.open(where)):
        typer.echo("  (no graphical browser here: open the address in yours)", err=True)


def _graphical() -> bool:
    """Whether a browser can open a window here (on Linux without a display, webbrowser would start a
    text browser in this terminal)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
