"""A client without the token is told where the daemon keeps it, not where the client looked (issue 14,
finding 11): the client's own home is the wrong place when the daemon runs with another one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmasos.client.remote import RemoteClient
from llmasos.client.wire import ENV, Unauthorized


async def test_the_missing_token_hint_names_the_daemons_home(served, monkeypatch, tmp_path: Path) -> None:
    client_home = tmp_path / "the-clients-home"
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("LLMASOS_HOME", str(client_home))
    async with served() as s, RemoteClient("http://llmasos.test", transport=s.transport()) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.ps()
    message = str(caught.value)
    assert "needs its API token" in message and f"${ENV}" in message
    assert "the daemon's $LLMASOS_HOME/api_token" in message and "`llmasos serve` shows" in message
    assert str(client_home) not in message
