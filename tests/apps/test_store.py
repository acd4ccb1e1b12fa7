"""The app store: static manifests, enabling, install/refuse/remove, the scaffold, the index, and the
example package installed into a temporary venv and run sandboxed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from llmasos.apps import index, manifest, registry, store
from llmasos.apps.manifest import ManifestError, read_source
from llmasos.apps.scaffold import ScaffoldError, new
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.errors import PermissionDenied

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-store-app"
HOSTILE = '''
from llmasos import App
raise RuntimeError("imported! untrusted code ran in the kernel")
app = App("boom", "Never imported by the kernel", version="2.0", tools=["calculator"])

@app.main
async def main(sys, words: str, *, times: int = 1):
    return words * times
'''


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def boom(tmp_path, monkeypatch):
    """An installed package 'boom' whose module raises at import."""
    pkg = tmp_path / "site" / "boompkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the package __init__ ran')\n")
    (pkg / "app.py").write_text(HOSTILE)
    info = tmp_path / "site" / "boompkg-1.0.dist-info"  # installed as pip would: found by entry_points()
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: boompkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{store.GROUP}]\nboom = boompkg.app:app\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ep = EntryPoint("boom", "boompkg.app:app", store.GROUP)
    registry.forget()
    yield ep
    registry.forget()
    sys.modules.pop("boompkg", None)


def test_an_installed_apps_manifest_is_read_without_importing_it(home, boom):
    (found,) = store.installed()
    assert found.manifest is not None and found.problem == ""
    assert (found.manifest.name, found.manifest.version) == ("boom", "2.0")
    assert found.manifest.caps()["tools"] == ["calculator"]
    assert [p.name for p in found.manifest.params] == ["words", "times"]
    assert "boompkg" not in sys.modules and "boompkg.app" not in sys.modules
    with pytest.raises(PermissionDenied, match="not enabled"):
        registry.find_app("boom")
    store.enable(found.manifest, "boompkg")
    app = registry.find_app("boom")
    assert app.sandbox and app.tools == ("calculator",) and app.usage() == "boom WORDS [--times=TIMES]"
    assert app.bind(("hi",), {"times": 2}) == (("hi",), {"times": 2})
    assert "boompkg" not in sys.modules  # listed, described and bound: never imported


async def test_an_installed_app_runs_only_in_its_sandbox(home, boom, tmp_path):
    (found,) = store.installed()
    store.enable(found.manifest, "boompkg")
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path)) as k:
        status = await k.run("boom", "hi")
    assert status.state == "crashed" and "the package __init__ ran" in status.error  # raised in the child
    assert "boompkg" not in sys.modules


def test_an_app_whose_manifest_changed_must_be_accepted_again(home, boom):
    (found,) = store.installed()
    store.enable(found.manifest, "boompkg")
    data = json.loads(store.enabled_path().read_text())
    data["boom"]["caps"]["tools"] = []  # accepted when it asked for no tools
    store.enabled_path().write_text(json.dumps(data))
    with pytest.raises(PermissionDenied, match="other capabilities"):
        registry.find_app("boom")


@pytest.mark.parametrize("source, error", [
    ("app = App('x', tools=TOOLS)\n@app.main\nasync def main(sys): ...", "not a literal"),
    ("app = App('x', **OPTS)\n@app.main\nasync def main(sys): ...", "App\\(\\*\\*"),
    ("app = App('x', version='banana')\n@app.main\nasync def main(sys): ...", "not a PEP 440"),
    ("app = App('x', version=3)\n@app.main\nasync def main(sys): ...", "a version is a string"),
    ("app = App('../../etc', tools=[])\n@app.main\nasync def main(sys): ...", "one word"),
    ("app = App('a/b')\n@app.main\nasync def main(sys): ...", "one word"),
    ("app = App('x', 'd' * 5000)\n@app.main\nasync def main(sys): ...", "not a literal"),
    (f"app = App('x', '{'d' * 5000}')\n@app.main\nasync def main(sys): ...", "description"),
    (f"app = App('x', tools={['t'] * 1000!r})\n@app.main\nasync def main(sys): ...", "at most 64"),
    ("app = App('x', tools=['*'], can_spawn='yes')\n@app.main\nasync def main(sys): ...", "True or False"),
    ("app = App('x', token_budget=-5)\n@app.main\nasync def main(sys): ...", "at least 0"),
    ("app = App('x', priority=10**30)\n@app.main\nasync def main(sys): ...", "priority"),
    ("app = App('x', time_budget=float('inf'))\n@app.main\nasync def main(sys): ...", "not a literal"),
    ("app = App('x', time_budget=1e300)\n@app.main\nasync def main(sys): ...", "positive number"),
    ("app = App('x', memory=['pid:1'])\n@app.main\nasync def main(sys): ...", "private namespace"),
    ("app = App('x', root=True)\n@app.main\nasync def main(sys): ...", "unknown manifest fields"),
    ("app = App('x')\n", "no top-level `@app.main"),
    ("app = make_app()\n", "no top-level `app = App"),
    ("def broken(:\n", "does not parse"),
    ("app = App('x', tools=" + "[" * 5000 + "]" * 5000 + ")\n", "does not parse|not a literal"),
])
def test_hostile_manifests_are_refused_with_the_field_named(source, error):
    with pytest.raises(ManifestError, match=error):
        read_source(source, "app")


def test_a_manifest_asking_for_everything_is_shown_as_such():
    m = read_source("app = App('greedy', tools=['*'], memory=['shared'], can_spawn=True, signal=True, "
                    "see_args=True)\n@app.main\nasync def main(sys): ...", "app")
    caps = m.caps()
    assert caps["tools"] == ["*"] and caps["can_spawn"] and caps["signal"] and caps["see_args"]


def test_a_huge_module_is_not_read(tmp_path):
    with pytest.raises(ManifestError, match="bytes"):
        read_source("#" * (manifest.MANIFEST_LIMITS.source_bytes + 1), "app")


def test_the_index_is_searched_offline_and_bad_entries_are_reported(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"apps": [
        {"name": "hello-store", "version": "0.1.0", "description": "Greets someone", "source": str(EXAMPLE),
         "caps": {"tools": ["calculator"]}},
        {"name": "notes", "version": "1.2", "description": "Keeps notes", "source": "llmasos-notes==1.2"},
        {"name": "../evil", "version": "1", "source": "x"},
        {"name": "big", "version": "1", "description": "d" * 5000, "source": "x"},
        {"name": "nosource", "version": "1"},
        {"name": "badver", "version": "not a version", "source": "x"},
        "not an object",
    ]}))
    found = index.load(str(path))
    assert [e.name for e in found.search("greets")] == ["hello-store"]
    assert [e.name for e in found.search("")] == ["hello-store", "notes"]
    assert len(found.problems) == 5 and any("name" in p for p in found.problems)
    with pytest.raises(index.AppIndexError, match="no app index"):
        index.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(index.AppIndexError, match="not JSON"):
        index.load(str(tmp_path / "bad.json"))


def test_apps_search_shows_matches_and_reports_skipped_entries(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmasos.cli import cli

    path = tmp_path / "index.json"
    path.write_text(json.dumps([{"name": "hello-store", "version": "0.1.0", "description": "Greets someone",
                                 "source": "hello-store==0.1.0", "caps": {"tools": ["calculator"]}},
                                {"name": "a/b", "source": "x"}]))
    monkeypatch.setenv("LLMASOS_APP_INDEX", str(path))
    r = CliRunner().invoke(cli, ["apps", "search", "greet"])
    assert r.exit_code == 0 and "hello-store" in r.output and "tools=calculator" in r.output
    assert "skipped entry 1: name" in r.output
    r = CliRunner().invoke(cli, ["apps", "search", "x", "--index", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "no app index" in r.output


def test_the_scaffold_refuses_bad_names_and_existing_folders(tmp_path):
    with pytest.raises(ScaffoldError):
        new("../escape", tmp_path)
    with pytest.raises(ScaffoldError):
        new("a/b", tmp_path)
    new("ok", tmp_path)
    with pytest.raises(ScaffoldError, match="exists"):
        new("ok", tmp_path)


def _cli(*args: str, python: str = sys.executable, env: dict | None = None, cwd: Path = ROOT,
         stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "llmasos.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, input=stdin, timeout=120)


def test_apps_new_writes_a_package_whose_own_test_passes(tmp_path):
    r = _cli("apps", "new", "my-app", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "my-app"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(pkg)])}
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests")],
                       capture_output=True, text=True, cwd=pkg, env=env, timeout=120)
    assert t.returncode == 0 and "1 passed" in t.stdout, t.stdout + t.stderr
    m = read_source((pkg / "my_app" / "app.py").read_text(), "app")
    assert m.name == "my-app" and 'my-app = "my_app.app:app"' in (pkg / "pyproject.toml").read_text()


def _venv(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A venv over this environment's packages (no torch reinstalled): this llmasos first, then ours."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig;print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_llmasos_shared.pth").write_text(f"{ROOT}\n{sysconfig.get_path('purelib')}\n")
    env = {**os.environ, "LLMASOS_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    return python, env


def test_install_refuse_run_and_remove_the_example_package_in_a_venv(tmp_path):
    python, env = _venv(tmp_path)
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))

    refused = _cli("apps", "install", str(src), python=python, env=env, stdin="n\n")
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    for asked in ("calculator", "greetings", "sandboxed"):  # the prompt lists what the manifest asks
        assert asked in refused.stdout, refused.stdout
    listed = _cli("apps", "list", python=python, env=env)
    assert "hello-store" not in listed.stdout  # refusing left it uninstalled

    index_file = tmp_path / "index.json"  # installed by its name in a team's index
    index_file.write_text(json.dumps([{"name": "hello-store", "version": "0.1.0", "source": str(src)}]))
    done = _cli("apps", "install", "--yes", "hello-store", "--index", str(index_file), python=python, env=env)
    assert done.returncode == 0 and "enabled: hello-store" in done.stdout, done.stdout + done.stderr
    info = _cli("apps", "info", "hello-store", python=python, env=env)
    assert "0.1.0" in info.stdout and "calculator" in info.stdout and "sandboxed" in info.stdout

    run = _cli("run", "hello-store", "Ada", "--model", "fake", python=python, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello, Ada" in run.stdout and "6*7 = 42" in run.stdout

    gone = _cli("apps", "remove", "hello-store", python=python, env=env)
    assert gone.returncode == 0 and "llmasos-app-hello-store" in gone.stdout, gone.stderr
    after = _cli("run", "hello-store", "Ada", "--model", "fake", python=python, env=env)
    assert after.returncode != 0 and "no app named 'hello-store'" in after.stderr
    assert json.loads((tmp_path / "home" / "apps.json").read_text()) == {}


def test_installing_what_is_not_an_app_package_fails_clearly(tmp_path, home):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "pyproject.toml").write_text(
        '[build-system]\nrequires=["setuptools"]\nbuild-backend="setuptools.build_meta"\n'
        '[project]\nname="plain-pkg"\nversion="1.0"\n[tool.setuptools]\npy-modules=[]\n')
    r = _cli("apps", "install", "--yes", str(tmp_path / "plain"))
    assert r.returncode == 2 and "declares no app" in r.stderr
    r = _cli("apps", "remove", "no-such-app")
    assert r.returncode == 2 and "no installed app named" in r.stderr
