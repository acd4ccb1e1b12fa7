"""open_engine: an Engine from what a user names (an Engine, a model name, a path, a remote model),
loaded off the loop.

Rule: a ready Engine is used as it is (whoever built it frees it); a remote model
(``openai:URL#MODEL``, or a ``.toml`` engine config file) is an OpenAIEngine whose in-flight limit is the
kernel's max_batch unless the file says otherwise; anything else is loaded here by the transformers
engine on the model thread (engine/worker.py), so the event loop stays free meanwhile.
"""

from __future__ import annotations

import functools
from typing import Any

from llmasos.engine import worker
from llmasos.engine.base import Engine
from llmasos.engine.models import DEFAULT_MODEL


def is_engine(spec: Any) -> bool:
    """spec is an Engine object (rather than a name or path to load)."""
    return spec is not None and not isinstance(spec, (str, bytes)) and hasattr(spec, "step")


async def open_engine(spec: Any, **options: Any) -> Engine:
    """spec if it is an Engine; else the model it names (None: the default), loaded with options."""
    if is_engine(spec):
        return spec
    from llmasos.engine import openai_wire

    if openai_wire.is_spec(spec):
        from llmasos.engine.openai import OpenAIEngine

        return OpenAIEngine.from_spec(spec, max_inflight=options.get("max_batch", 32))
    from llmasos.engine.hf import HFEngine

    return await worker.run(functools.partial(HFEngine.from_pretrained, spec or DEFAULT_MODEL, **options))
