"""`llmasos run` says an app is unknown, or its arguments are bad, before it loads a model (issue 14,
finding 11): the same one-line error and exit status 2 as before, without the 4-5 s of a model load."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llmasos.cli import cli, local


@pytest.fixture
def no_boot(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """LocalClient.boot replaced by a recorder that boots nothing."""
    booted: list[object] = []

    def boot(*args: object, **kw: object) -> object:
        booted.append(args)
        raise AssertionError("the kernel booted (and loaded a model) before the app was checked")

    monkeypatch.setattr(local.LocalClient, "boot", staticmethod(boot))
    return booted


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "ehco"], "llmasos: no app named 'ehco'; did you mean 'echo'? (or give a path: file.py:app)"),
    (["run", "hello", "a", "b", "c"], "usage: hello [NAME] [MAX_TOKENS]"),
    (["run", "hello", "--max-tokens=many"], "bad value 'many' for max_tokens"),
    (["run", "/nowhere/qa.py"], "llmasos: "),
])
def test_run_checks_the_app_and_its_arguments_before_the_model_loads(no_boot, argv, expected) -> None:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    assert expected in r.output and r.output.count("\n") == 1, r.output
    assert "Traceback" not in r.output
    assert no_boot == []
