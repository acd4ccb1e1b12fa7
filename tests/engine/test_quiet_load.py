"""Loading a model shows llmasos's own progress only: no transformers bars or info logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from llmasos.engine import models
from llmasos.errors import LlmasosError

ROOT = Path(__file__).resolve().parents[2]


def test_loading_a_model_prints_no_transformers_progress_bar(tiny_model_dir: Path, capfd) -> None:
    hf_logging.enable_progress_bar()
    before = hf_logging.get_verbosity()
    models.load(tiny_model_dir)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err
    # the settings are the caller's again afterwards
    assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == before


def test_a_failed_load_gives_transformers_its_settings_back(tmp_path: Path) -> None:
    hf_logging.enable_progress_bar()
    before = hf_logging.get_verbosity()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LlmasosError):
        models.load(tmp_path)
    assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == before


@pytest.mark.slow
def test_llmasos_run_on_the_default_model_prints_no_loading_bar() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "llmasos.cli", "run", "echo", "hi"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and "hi" in done.stdout, done
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr, done.stderr
