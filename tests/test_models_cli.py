"""`llmasos models` (list, info, add, convert, remove, pull) against a temporary LLMASOS_HOME, the
`llmasos.models` entry-point hook, and `llmasos finetune`'s refusals."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from llmasos.cli import cli
from llmasos.engine import library, models
from llmasos.engine.errors import ModelNotFound


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_plain_models_still_lists(home: Path) -> None:
    for args in (("models",), ("models", "list")):
        code, out = run(*args)
        assert code == 0, out
        assert "smollm2-135m" in out and "Apache-2.0" in out and "8192" in out


def test_add_info_remove_a_local_directory(home: Path, tiny_model_dir: Path) -> None:
    code, out = run("models", "add", "tiny", str(tiny_model_dir))
    assert code == 0, out
    assert json.loads((home / "models.json").read_text())["tiny"]["source"] == str(tiny_model_dir)
    assert (home / "models.json").stat().st_mode & 0o077 == 0  # private, as everything under the home
    code, out = run("models", "list")
    assert "tiny" in out and "registered" in out
    spec = models.resolve("tiny")  # what KernelConfig(engine="tiny") and LLM.from_pretrained("tiny") use
    assert spec.name == "tiny" and spec.path == tiny_model_dir.resolve()
    code, out = run("models", "info", "tiny", "--json")
    assert code == 0 and json.loads(out)["path"] == str(tiny_model_dir.resolve())
    code, out = run("models", "remove", "tiny")
    assert code == 0 and "forgot tiny" in out
    assert tiny_model_dir.is_dir()  # a folder the user added is never deleted
    with pytest.raises(ModelNotFound):
        models.resolve("tiny")
    code, out = run("models", "remove", "tiny")
    assert code == 2 and "no model registered as 'tiny'" in out


def test_convert_copies_into_the_home_and_remove_deletes_the_copy(home: Path, tiny_model_dir: Path) -> None:
    code, out = run("models", "convert", str(tiny_model_dir), "--name", "tiny-copy")
    assert code == 0, out
    copy = home / "models" / "tiny-copy"
    assert (copy / "config.json").is_file() and (copy / "model.safetensors").is_file()
    assert models.resolve("tiny-copy").path == copy.resolve()
    code, out = run("models", "list")
    assert "tiny-copy" in out and "MB" in out
    code, out = run("models", "convert", str(tiny_model_dir), "--name", "tiny-copy")
    assert code == 2 and "already exists" in out
    code, out = run("models", "remove", "tiny-copy")
    assert code == 0 and not copy.exists()


def test_add_refuses_what_cannot_load(home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out = run("models", "add", "x", str(tmp_path / "empty"))
    assert code == 2 and "no config.json" in out
    code, out = run("models", "add", "x", str(tmp_path / "missing"))
    assert code == 2 and "no such file" in out
    code, out = run("models", "add", "smollm2-135m", str(tmp_path))
    assert code == 2 and "built-in model name" in out
    code, out = run("models", "info", "nothing-by-this-name")
    assert code == 2 and "models available offline" in out
    assert not (home / "models.json").exists()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "a+b", "", " ", "x" * 65, "a..b", ".hidden",
                                  "-rf", "nul\x00", "semi;colon", "ünïcode", "$(rm -rf ~)"])
def test_hostile_names_are_refused(home: Path, tiny_model_dir: Path, name: str) -> None:
    for args in (("models", "add", name, str(tiny_model_dir)),
                 ("models", "convert", str(tiny_model_dir), "--name", name),
                 ("models", "remove", name)):
        code, out = run(*args)
        assert code == 2, (args, out)
        assert any(m in out for m in ("not a valid model name", "at most 64", "non-empty", "No such option")), out
    assert not (home / "models.json").exists() and not (home / "models").exists()


def test_removing_a_built_in_model_only_drops_its_converted_copy(home: Path) -> None:
    code, out = run("models", "remove", "smollm2-135m")
    assert code == 2 and "no converted copy" in out
    (home / "models" / "smollm2-135m").mkdir(parents=True)
    code, out = run("models", "remove", "smollm2-135m")
    assert code == 0 and "converts again on next use" in out and not (home / "models" / "smollm2-135m").exists()
    assert models.resolve("smollm2-135m").kind == "registry"  # still known


def test_a_corrupt_store_says_what_to_do(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "models.json").write_text("{not json")
    code, out = run("models", "list")
    assert code == 2 and "models.json is not readable JSON" in out and "fix or delete it" in out


def test_pull_offline_fails_fast_with_the_alternatives(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:1")  # nothing listens on port 443 here
    t0 = time.monotonic()
    code, out = run("models", "pull", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert time.monotonic() - t0 < 10  # the probe's timeout is 2 s: never a hang
    assert code == 2 and "does not answer from here" in out and "models convert" in out
    code, out = run("models", "pull", "../../etc")
    assert code == 2 and "not a hub id" in out


def test_installed_packages_register_models(home: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    def plugin() -> list[dict]:
        return [{"name": "plug-tiny", "path": str(tiny_model_dir), "license": "MIT", "context": 256},
                {"name": "../evil", "path": "/"}]

    def broken() -> list[dict]:
        raise RuntimeError("boom")

    eps = [SimpleNamespace(name="good", value="x:y", dist=SimpleNamespace(name="llm-tiny"), load=lambda: plugin),
           SimpleNamespace(name="bad", value="z:w", dist=SimpleNamespace(name="llm-broken"), load=lambda: broken)]
    monkeypatch.setattr(library.metadata, "entry_points", lambda group: eps if group == "llmasos.models" else [])
    cards = library.from_packages()
    assert "plug-tiny" not in cards  # one bad entry voids its plugin's list, never llmasos
    assert "llm-broken" in caplog.text and "boom" in caplog.text
    eps[0] = SimpleNamespace(name="good", value="x:y", dist=SimpleNamespace(name="llm-tiny"),
                             load=lambda: lambda: plugin()[:1])
    assert models.resolve("plug-tiny").path == tiny_model_dir.resolve()
    code, out = run("models", "list")
    assert code == 0, out
    assert "plug-tiny" in out and "package llm-tiny" in out and "MIT" in out


def test_finetune_command_refuses_bad_input_before_loading(home: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n')
    code, out = run("finetune", "smollm2-135m", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"))
    assert code == 2 and "bad.jsonl:1" in out
    code, out = run("finetune", "smollm2-135m", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"),
                    "--epochs", "0")
    assert code == 2 and "epochs must be" in out
    code, out = run("finetune", "smollm2-135m", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"),
                    "--register", "../x")
    assert code == 2 and "not a valid model name" in out


def test_list_and_info_over_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.daemon import daemon_env, start_daemon, stop_daemon

    env = daemon_env(tmp_path)
    daemon, url = start_daemon(env)
    try:
        monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))  # where the daemon's token is
        monkeypatch.setenv("COLUMNS", "200")
        code, out = run("models", "list", "--url", url)
        assert code == 0 and "fake" in out and "loaded" in out and "smollm2-135m" in out, out
        code, out = run("models", "--url", url)
        assert code == 0 and "fake" in out
        code, out = run("models", "info", "fake", "--url", url, "--json")
        assert code == 0 and json.loads(out)["status"].startswith("loaded"), out
        code, out = run("models", "info", "nope", "--url", url)
        assert code == 2 and "knows no model 'nope'" in out
    finally:
        rc, err = stop_daemon(daemon)
    assert rc == 0, err
    code, out = run("models", "list", "--url", "http://127.0.0.1:9")
    assert code == 2 and "llmasos:" in out  # a clear one-line error, no traceback


def test_finetune_command_trains_registers_and_the_library_shows_it(home: Path, tiny_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    from tests.toolchain.test_finetune import write_data

    data = write_data(tmp_path / "data.jsonl", 20)
    code, out = run("finetune", str(tiny_model_dir), str(data), "--out", str(tmp_path / "ad"), "--max-steps", "3",
                    "--batch-size", "4", "--max-len", "48", "--register", "tiny-tune")
    assert code == 0, out
    assert "trained: 3/3 steps" in out and "llmasos run chat --model tiny-tune" in out
    code, out = run("models", "info", "tiny-tune", "--json")
    info = json.loads(out)
    assert info["adapter"] == str((tmp_path / "ad").resolve())
    assert info["adapter_manifest"]["steps"] == 3 and info["adapter_manifest"]["base"] == str(tiny_model_dir)
    code, out = run("models", "list")
    assert "tiny-tune" in out and "registered" in out
    code, out = run("finetune", str(tiny_model_dir), str(data), "--out", str(tmp_path / "ad"))
    assert code == 2 and "--resume" in out


def test_finetune_command_ctrl_c_keeps_the_adapter_and_says_how_to_resume(
        home: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmasos.toolchain import finetune as ft
    from tests.toolchain.test_finetune import write_data

    real, calls = ft.answer_loss, []

    def interrupted_at_the_third_step(model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real(model, batch)

    monkeypatch.setattr(ft, "answer_loss", interrupted_at_the_third_step)
    data = write_data(tmp_path / "data.jsonl", 20)
    code, out = run("finetune", str(tiny_model_dir), str(data), "--out", str(tmp_path / "ad"), "--batch-size", "4",
                    "--max-len", "48")
    assert code == 130, out
    assert "interrupted: 2/" in out and "--resume" in out
    assert models.resolve(f"{tiny_model_dir}+{tmp_path / 'ad'}").adapter is not None
