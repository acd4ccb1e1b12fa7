"""The API token: made once at the first start (mode 0600), reused, overridden by $LLMASOS_API_TOKEN."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmasos.client.wire import ENV, client_token, server_token, token_path
from llmasos.api.http import create_app


def test_the_first_start_makes_a_private_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    token, where = server_token(tmp_path / "home")
    path = token_path(tmp_path / "home")
    assert where == str(path) and path.read_text().strip() == token and len(token) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert server_token(tmp_path / "home") == (token, where)  # reused, not replaced
    assert client_token(tmp_path / "home") == token


def test_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "from-env")
    assert server_token(tmp_path) == ("from-env", f"${ENV}")
    assert not token_path(tmp_path).exists()
    assert client_token(tmp_path) == "from-env"
    assert client_token(tmp_path, "given") == "given"
    monkeypatch.delenv(ENV)
    assert client_token(tmp_path) is None


def test_a_readable_token_file_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    path = token_path(tmp_path)
    path.write_text("old-token\n")
    path.chmod(0o644)
    assert server_token(tmp_path)[0] == "old-token"
    assert path.stat().st_mode & 0o777 == 0o600


def test_no_app_without_a_token() -> None:
    with pytest.raises(ValueError, match="needs a token"):
        create_app(object(), "")  # type: ignore[arg-type]
