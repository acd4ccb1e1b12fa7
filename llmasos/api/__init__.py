"""The user-facing APIs beyond apps: the seed's LLM and Application, and (later) the HTTP syscall API."""

from llmasos.api.application import Application
from llmasos.api.llm import LLM

__all__ = ["LLM", "Application"]
