"""Errors raised while finding, converting or loading a model.

Rule: each message says what was asked for, what exists instead, and the command that fixes it; the
CLI and the shell show these as they are, never as a traceback.
"""

from __future__ import annotations

from llmasos.errors import LlmasosError


class EngineSetupError(LlmasosError):
    """A model could not be found, converted or loaded."""


class ModelNotFound(EngineSetupError):
    """No model by that name, path or hub id is available on this machine."""


class ModelUnsupported(EngineSetupError):
    """The model exists but this engine cannot run it (e.g. not a causal language model)."""
