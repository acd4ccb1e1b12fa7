"""Handlers for the model syscalls, and the one place a generate request becomes a sequence.

Rule: the handler prepares and queues the request; the LLM loop batches it with everyone else's.
``start_generate`` is the only way to the model: the generate syscall uses it, and so does chat (its
own generate, as part of the chat syscall). Tools offered to the model are turned into prompt text, a
decoding constraint and a parser of the reply here (``tools/calling.py``), not in the kernel object.
Under a token budget the prompt and max_tokens are reserved here, before the sequence is queued
(``kernel/budget.py``); a reply cut to fit the budget ends with ``finish_reason="budget"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.engine.base import SamplingParams, Sequence
from llmasos.kernel import budget
from llmasos.kernel.errors import KernelNotRunning
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, QuotaExceeded
from llmasos.tools.calling import prepare as prepare_tools

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.llm import TokenStream
    from llmasos.kernel.proc import Process


def start_generate(k: Kernel, p: Process, call: c.Generate) -> TokenStream:
    """Validate, prepare (template, tools, context check) and queue one generate request of p."""
    if k.llm is None or k.engine is None:
        raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
    if (call.prompt is None) == (call.messages is None):
        raise InvalidArguments("generate needs exactly one of a prompt or messages")
    params = SamplingParams(
        max_tokens=resolve_max_tokens(k, call.max_tokens), temperature=call.temperature,
        top_p=call.top_p, seed=call.seed, stop=call.stop, truncate=call.truncate,
    )
    seq = Sequence(
        pid=p.pid, params=params, prompt=call.prompt,
        messages=[dict(m) for m in call.messages] if call.messages is not None else None, priority=p.priority,
    )
    tooling = prepare_tools(call, getattr(k.engine, "tokenizer", None), f"{seq.sid}_", max_tokens=params.max_tokens)
    if tooling is not None:  # offer the tools in the prompt, constrain decoding, parse calls
        seq.prompt, seq.messages = tooling.prompt, tooling.messages
        params.logits_processor = tooling.logits_processor
    k.engine.prepare(seq)
    left = budget.tokens_left(p)
    if left is not None:  # reserve the prompt and the reply, cut to what is left of the budget
        prompt = len(seq.prompt_ids)
        if left - prompt < 1:
            raise QuotaExceeded(
                f"process {p.pid} ({p.app.name}) has {max(left, 0)} tokens left of its {p.caps.token_budget}-token "
                f"budget, and this prompt alone takes {prompt} (tokens used, reserved by its running generates "
                "or given to its children are spent); shorten it, or give the process a larger token_budget")
        if params.max_tokens > left - prompt:
            if tooling is not None and left - prompt < tooling.min_tokens:
                raise QuotaExceeded(
                    f"process {p.pid} ({p.app.name}) has {left - prompt} tokens of its budget left after this "
                    f"prompt, and the shortest valid tool call takes {tooling.min_tokens}; give the process a "
                    "larger token_budget, or shorten the prompt")
            params.max_tokens, seq.capped = left - prompt, True
            if tooling is not None and tooling.logits_processor is not None:
                tooling.logits_processor.max_tokens = params.max_tokens  # close within the cut budget
        budget.reserve(p, seq, prompt + params.max_tokens)
    stream = k.llm.submit(p, seq)
    if tooling is not None:
        stream.postprocess = tooling.postprocess
    return stream


def resolve_max_tokens(k: Kernel, asked: int | None) -> int:
    """The max_tokens of a generate or chat: the config's default when none is given (a 0 given is
    refused by SamplingParams, not replaced)."""
    return k.config.default_max_tokens if asked is None else asked


async def sys_generate(k: Kernel, p: Process, call: c.Generate) -> Any:
    stream = start_generate(k, p, call)
    if call.stream:
        return stream
    return await stream.collect()


HANDLERS = {c.Generate: sys_generate}
