"""Model execution: the Engine protocol, the transformers engine, remote and fake engines."""

from llmasos.engine.base import Capacity, Engine, SamplingParams, Sequence, SeqStatus, TokenEvent
from llmasos.engine.fake import FakeEngine

__all__ = ["Capacity", "Engine", "FakeEngine", "SamplingParams", "SeqStatus", "Sequence", "TokenEvent"]
