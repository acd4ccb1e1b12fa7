"""LoRA adapters on a library model: which base an adapter folder needs, and merging it at load time.

Rule: an adapter is merged into its base's weights when the model loads (peft ``merge_and_unload``), so
what the engine gets is a plain transformers model: the native decode step and the packed layers serve it
as they serve the base. An adapter that does not fit the base is a ModelUnsupported naming the base it
needs, never a traceback from inside peft.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmasos.engine.errors import ModelUnsupported

ADAPTER_CONFIG = "adapter_config.json"  # what peft writes next to a LoRA adapter's weights
ADAPTER_MANIFEST = "llmasos-adapter.json"  # what `llmasos finetune` writes: the base model's name, the data


def adapter_base(adapter: Path) -> str | None:
    """The base model an adapter directory was trained on: our manifest's name, else peft's record."""
    for file, key in ((ADAPTER_MANIFEST, "base"), (ADAPTER_CONFIG, "base_model_name_or_path")):
        try:
            value = json.loads((adapter / file).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


@contextmanager
def quiet_peft() -> Iterator[None]:
    """While peft wraps a model: its use of transformers' deprecated ``is_gradient_checkpointing``
    (peft 0.21 on transformers 5) warns once per wrap about peft's code, not the user's."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def merge_adapter(model: Any, adapter: Path, name: str) -> Any:
    """model with the LoRA adapter in the folder adapter merged into its weights (peft
    ``merge_and_unload``): a plain transformers model again, so the native decode step and the packed
    layers serve it like any other."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelUnsupported(f"{name}: loading a LoRA adapter needs peft; pip install peft") from None
    from llmasos.engine.models import _status, quiet_transformers

    try:
        with quiet_transformers(), quiet_peft():
            merged = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        raise ModelUnsupported(
            f"{name}: the adapter in {adapter} does not fit this base model ({type(exc).__name__}: "
            f"{str(exc)[:300]}); name the base it was trained on (its {ADAPTER_MANIFEST} says which)"
        ) from exc
    _status(f"merged the LoRA adapter {adapter} into {name}")
    return merged
