"""app_spec and find_app are inverses, and a file or module already loaded is never executed again."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmasos import App
from llmasos.apps import registry
from llmasos.apps.registry import app_spec, find_app

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, so a script imports this llmasos
APP_FILE = """\
from pathlib import Path

from llmasos import App

with open(Path(__file__).resolve().with_name("runs.log"), "a") as f:  # one line each time this file runs
    f.write(__name__ + "\\n")

app = App("{name}")


@app.main
async def main(sys) -> str:
    return "ok"
"""
MAIN_TAIL = """

if __name__ == "__main__":
    import json

    from llmasos.apps.registry import app_spec, find_app

    spec = app_spec(app)
    print(json.dumps({{"spec": spec, "found": find_app(spec) is app, "by_path": find_app("{path}") is app}}))
"""


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "_seen", {})


def _runs(directory: Path) -> list[str]:
    return (directory / "runs.log").read_text().splitlines()


def test_a_builtin_app_is_named_by_its_name() -> None:
    assert app_spec(find_app("echo")) == "echo"


def test_a_module_app_is_named_module_colon_attr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spec_probe_mod.py").write_text(APP_FILE.format(name="modapp"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("spec_probe_mod")
        assert app_spec(module.app) == "spec_probe_mod:app"  # an App object, never found by spec
        assert find_app("spec_probe_mod:app") is module.app
    finally:
        sys.modules.pop("spec_probe_mod", None)
    assert _runs(tmp_path) == ["spec_probe_mod"]


def test_a_file_app_runs_once_whatever_path_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fileapp.py"
    path.write_text(APP_FILE.format(name="fileapp"))
    (tmp_path / "alias.py").symlink_to(path)
    app = find_app(str(path))
    assert app_spec(app) == f"{path.resolve()}:app"
    monkeypatch.chdir(tmp_path)
    assert find_app("fileapp.py:app") is app
    assert find_app("./alias.py") is app
    assert find_app(app_spec(app)) is app
    assert len(_runs(tmp_path)) == 1


def test_an_app_object_nothing_names_has_no_spec() -> None:
    loose = App("loose")

    @loose.main
    async def main(sys) -> None:
        return None

    assert app_spec(loose) is None


@pytest.mark.parametrize("how", ["script", "symlink", "module"])
def test_an_app_in_main_is_found_in_the_running_script(tmp_path: Path, how: str) -> None:
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    script = package / "mainapp.py"
    script.write_text(APP_FILE.format(name="mainapp") + MAIN_TAIL.format(path="probe_pkg/mainapp.py:app"))
    (tmp_path / "link.py").symlink_to(script)
    argv = {"script": ["probe_pkg/mainapp.py"], "symlink": ["link.py"], "module": ["-m", "probe_pkg.mainapp"]}[how]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = "probe_pkg.mainapp:app" if how == "module" else f"{script.resolve()}:app"
    assert out == {"spec": expected, "found": True, "by_path": True}
    assert _runs(package) == ["__main__"]  # the script ran once: never imported again by path
