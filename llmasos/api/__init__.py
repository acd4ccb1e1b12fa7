"""The user-facing APIs beyond apps: the seed's LLM and Application, and the HTTP API (http.py: `llmasos
serve`, with OpenAI-compatible endpoints in openai.py; client.py is the shell's RemoteClient)."""

from llmasos.api.application import Application
from llmasos.api.llm import LLM

__all__ = ["LLM", "Application"]
