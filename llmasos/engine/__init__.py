"""Model execution: the Engine protocol, the transformers engine (with its native decode step), the
scripted fake engine for tests, the model registry, and ``open_engine`` (an Engine from a name or path).
"""

from llmasos.engine.base import Capacity, Engine, SamplingParams, Sequence, SeqStatus, TokenEvent
from llmasos.engine.fake import FakeEngine
from llmasos.engine.loader import open_engine

__all__ = ["Capacity", "Engine", "FakeEngine", "SamplingParams", "SeqStatus", "Sequence", "TokenEvent", "open_engine"]
