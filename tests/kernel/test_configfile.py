"""The config file, llmasos.toml: a good file boots its models and apps; each kind of bad file is a clear
error naming the file and the key; boot apps are not started twice after a restart; the CLI reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmasos import Kernel
from llmasos.client.local import LocalClient, deployment
from llmasos.kernel.config import ConfigError
from llmasos.kernel.configfile import ConfigFileError, find_config, load_config, start_apps

GOOD = """
[kernel]
policy = "fair"
kill_grace = 1
max_procs = 100
request_caps = { token_budget = 2048 }
memory = true

[models]
small = "fake"

[models.big]
engine = "fake"
policy = "rr"
quantum = 4
default = true
options = { context_window = 1024 }

[[apps]]
name = "waiter.py:app"
args = ["boot"]
caps = { models = ["big"] }

[[apps]]
name = "echo"
args = ["hello"]
"""

WAITER = """
from llmasos import App
app = App("waiter")

@app.main
async def main(sys, tag: str) -> str:
    msg = await sys.recv()
    return tag + " " + msg.body
"""


def write(tmp_path: Path, text: str, name: str = "llmasos.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "waiter.py").write_text(WAITER)
    return path


async def test_a_good_file_boots_its_models_and_starts_its_apps_once(tmp_path):
    path = write(tmp_path, GOOD)
    d = load_config(path, home=tmp_path / "home")
    cfg = d.config
    assert (cfg.policy, cfg.max_procs, cfg.kill_grace, cfg.request_caps) == ("fair", 100, 1, {"token_budget": 2048})
    assert list(cfg.models) == ["small", "big"] and cfg.models["big"].limits == {"quantum": 4}
    assert [a.app for a in d.apps] == [str(tmp_path / "waiter.py") + ":app", "echo"]
    async with LocalClient.boot(cfg, d.apps) as client:
        k = client.kernel
        assert k.models.default == "big" and k.models.get("big").policy == "rr"
        assert k.models.get("small").policy == "fair" and k.models.get("big").engine.context_window == 1024
        procs = {p.app: p for p in await client.ps(all=True)}
        assert procs["waiter"].caps["models"] == ["big"] and procs["waiter"].args == ("boot",)
        waiter = procs["waiter"].pid
    async with LocalClient.boot(load_config(path, home=tmp_path / "home").config, d.apps) as client:
        k = client.kernel
        assert waiter in k.recovery.restored  # alive at the clean stop: restored, not started again
        assert [p.pid for p in await client.ps() if p.app == "waiter"] == [waiter]
        assert await start_apps(k, d.apps[:1]) == [waiter]
        await client.send(waiter, "done")
        assert (await client.wait(waiter)).value == "boot done"


@pytest.mark.parametrize("text, says", [
    ("[kernel\npolicy = 1", "not valid TOML"),
    ("[kernal]\npolicy = 'rr'", "unknown section [kernal]; the sections are [kernel], [models], [apps]"),
    ("[kernel]\nmax_prox = 5", "unknown key [kernel] max_prox; allowed: default_model, policy"),
    ("[kernel]\nmax_procs = '5'", "[kernel] max_procs = '5': Input should be a valid integer"),
    ("[kernel]\nmax_procs = 0", "[kernel] max_procs must be a positive integer, not 0"),
    ("[kernel]\npolicy = 'lottery'", "[kernel] policy: unknown scheduling policy 'lottery'"),
    ("[kernel]\nengine = 'fake'", "unknown key [kernel] engine"),
    ("[kernel]\nhome = 3", "[kernel] home = 3"),
    ("[kernel]\ndefault_model = 'big'", "default_model"),
    ("[models.a]\nengin = 'fake'", "unknown key [models.a] engin; allowed: engine, policy"),
    ("[models.a]\nengine = 3", "[models.a] engine = 3: Input should be a valid string"),
    ("[models.a]\nengine = 'fake'\npolicy = 'x'", "model 'a': unknown scheduling policy 'x'"),
    ("[models.a]\nengine = 'fake'\nmax_batch = -1", "model 'a': max_batch must be a positive integer"),
    ("[models.'a b']\nengine = 'fake'", "a model name is 1 to 100 characters"),
    ("[models.'$(rm -rf ~)']\nengine = 'fake'", "a model name is"),
    ("[models]\na = 'fake'\nb = { engine = 'fake', default = true }\n[kernel]\ndefault_model = 'a'", "several default"),
    ("[[apps]]\nargs = []", "[[apps]] #1 name is missing"),
    ("[[apps]]\nname = 'nope'", "[[apps]] #1 ('nope'): no app named 'nope'"),
    ("[[apps]]\nname = 'echo'\ncaps = { root = true }", "unknown capabilities ['root']; allowed: tools"),
    ("[[apps]]\nname = 'echo'\ncolour = 'red'", "unknown key [[apps]] #1 colour; allowed: name, args"),
    ("[[apps]]\nname = 'hello'\nargs = [1, 2, 3, 4]", "[[apps]] #1 ('hello')"),
])
def test_each_kind_of_bad_file_names_the_file_and_the_key(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and says in str(err.value), str(err.value)
    assert isinstance(err.value, ConfigError)


def test_finding_the_file(tmp_path):
    assert find_config(None, tmp_path) is None
    path = write(tmp_path, "[kernel]\npolicy = 'rr'")
    assert find_config(None, tmp_path) == path
    with pytest.raises(ConfigFileError, match="no such config file"):
        find_config(tmp_path / "missing.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigFileError, match="no such config file"):
        find_config(tmp_path / "dir.toml")
    bad = tmp_path / "binary.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(bad)


def test_cli_model_and_policy_override_the_file(tmp_path):
    path = write(tmp_path, GOOD)
    d = deployment(path, ["a=fake", "fake"], "rr")
    assert list(d.config.models) == ["a", "fake"] and d.config.default_model == "fake"
    assert d.config.policy == "rr" and d.config.max_procs == 100 and len(d.apps) == 2
    assert deployment(path, "fake").config.models is None
    assert deployment(None, ["x=fake", "y=fake"]).config.default_model is None
    with pytest.raises(ConfigError, match="one bare SPEC"):
        deployment(None, ["fake", "smollm2-135m"])
    with pytest.raises(ConfigError, match="given twice"):
        deployment(None, ["a=fake", "a=fake"])


async def test_a_huge_file_is_refused_or_loaded_without_trouble(tmp_path):
    entries = "\n".join(f'[models.m{i}]\nengine = "fake"' for i in range(300))
    path = write(tmp_path, entries)
    d = load_config(path, home=tmp_path / "home", memory=False)
    async with Kernel(d.config) as k:
        assert len(k.models) == 300 and k.models.default == "m0"


CLI = [sys.executable, "-m", "llmasos.cli"]


def test_the_cli_reads_llmasos_toml_from_the_current_directory_or_config(tmp_path):
    write(tmp_path, "[kernel]\nmemory = false\n[models.small]\nengine = 'fake'\n[models.big]\nengine = 'fake'\n")
    env = {**os.environ, "LLMASOS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(Path.cwd())}
    r = subprocess.run([*CLI, "run", "echo", "hi"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    bad = write(tmp_path, "[kernel]\nmax_procs = 'many'", "bad.toml")
    r = subprocess.run([*CLI, "run", "echo", "hi", "--config", str(bad)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 2 and f"llmasos: {bad}: [kernel] max_procs = 'many'" in r.stderr
    r = subprocess.run([*CLI, "serve", "--config", str(tmp_path / "nope.toml")], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 2 and "no such config file" in r.stderr
