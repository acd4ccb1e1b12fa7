"""Handlers for the model syscalls, and the one place a generate request becomes a sequence.

Rule: the handler prepares and queues the request; the LLM loop of the model it names (or the process's
default model: kernel/models.py) batches it with everyone else's on that model.
``start_generate`` is the only way to the model: the generate syscall uses it, and so does chat (its
own generate, as part of the chat syscall). Tools offered to the model are turned into prompt text, a
decoding constraint and a parser of the reply here (``tools/calling.py``), not in the kernel object.
Under a token budget the prompt and max_tokens are reserved here, before the sequence is queued
(``kernel/budget.py``); a reply cut to fit the budget ends with ``finish_reason="budget"``.
A request that names a model the model library holds but the table does not loads it first
(``ModelTable.ensure``); ``models`` lists what can be served and in what state.
Score (prompt logprobs of a given text, for perplexity) is one engine call on the model thread, which
runs between the LLM loop's steps; it reads the weights only and holds no sequence.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from llmasos.engine import worker
from llmasos.engine.base import SamplingParams, Sequence
from llmasos.kernel import budget
from llmasos.kernel.errors import KernelNotRunning
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NotSupported, QuotaExceeded
from llmasos.syscalls.types import ModelInfo, Scores
from llmasos.tools.calling import prepare as prepare_tools

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.llm import TokenStream
    from llmasos.kernel.proc import Process


def start_generate(k: Kernel, p: Process, call: c.Generate) -> TokenStream:
    """Validate, prepare (template, tools, context check) and queue one generate request of p."""
    if k.llm is None or k.engine is None:
        raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
    model = k.models.get(call.model if call.model is not None else p.model)  # NoSuchModel lists the loaded
    engine = model.engine
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
    tooling = prepare_tools(call, getattr(engine, "tokenizer", None), f"{seq.sid}_",
                            native=getattr(engine, "native_tools", False), max_tokens=params.max_tokens)
    if tooling is not None:  # offer the tools in the prompt, constrain decoding, parse calls
        seq.prompt, seq.messages = tooling.prompt, tooling.messages
        params.logits_processor = tooling.logits_processor
        seq.tools = tooling.native
    engine.prepare(seq)
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
    stream = model.llm.submit(p, seq)
    if tooling is not None:
        stream.postprocess = tooling.postprocess
    return stream


def resolve_max_tokens(k: Kernel, asked: int | None) -> int:
    """The max_tokens of a generate or chat: the config's default when none is given (a 0 given is
    refused by SamplingParams, not replaced)."""
    return k.config.default_max_tokens if asked is None else asked


async def sys_generate(k: Kernel, p: Process, call: c.Generate) -> Any:
    await k.models.ensure(call.model if call.model is not None else p.model, k.config)  # a library model: load it
    stream = start_generate(k, p, call)
    if call.stream:
        return stream
    return await stream.collect()


async def sys_score(k: Kernel, p: Process, call: c.Score) -> Scores:
    """Prompt logprobs of call.text: the engine's ``score`` on the model thread, between steps."""
    if k.llm is None or k.engine is None:
        raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
    await k.models.ensure(call.model if call.model is not None else p.model, k.config)
    engine = k.models.get(call.model if call.model is not None else p.model).engine  # NoSuchModel lists them
    score = getattr(engine, "score", None)
    if score is None:
        raise NotSupported(f"the model {engine.name} does not offer score (prompt logprobs); use a local "
                           "transformers model")
    if not isinstance(call.text, str) or not call.text:
        raise InvalidArguments(f"score needs a non-empty text, not {call.text!r:.80}")
    window = min(k.config.score_window, engine.context_window) if call.window is None else call.window
    if not _whole(window) or not 2 <= window <= engine.context_window:
        raise InvalidArguments(f"score's window must be a whole number from 2 to the context window "
                               f"({engine.context_window}), not {window!r}")
    stride = window // 2 if call.stride is None else call.stride
    if not _whole(stride) or not 1 <= stride < window:
        raise InvalidArguments(f"score's stride must be a whole number from 1 to window - 1 ({window - 1}), "
                               f"not {stride!r}")
    n = engine.count_tokens(call.text)
    if n > k.config.max_score_tokens:
        raise InvalidArguments(f"score's text is {n} tokens, more than max_score_tokens "
                               f"({k.config.max_score_tokens}); split it into parts")
    left = budget.tokens_left(p)
    if left is not None and n > left:
        raise QuotaExceeded(f"process {p.pid} ({p.app.name}) has {max(left, 0)} tokens left of its "
                            f"{p.caps.token_budget}-token budget, and scoring this text takes {n}; score a "
                            "shorter text, or give the process a larger token_budget")
    t0 = time.perf_counter()
    logprobs = await worker.run(score, call.text, window, stride) if engine.threaded else score(
        call.text, window, stride)
    p.usage.prompt_tokens += len(logprobs) + 1
    p.usage.model_time += time.perf_counter() - t0
    return Scores(tokens=len(logprobs) + 1, logprobs=tuple(logprobs), window=window, stride=stride,
                  model=engine.name)


async def sys_models(k: Kernel, p: Process, call: c.Models) -> tuple[ModelInfo, ...]:
    """The models p may use and their state (kernel/models.py, ``ModelTable.infos``)."""
    if k.llm is None:
        raise KernelNotRunning("boot the kernel first: `async with Kernel(...) as kernel:`")
    return k.models.infos(k.config, p.caps.models)


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


HANDLERS = {c.Generate: sys_generate, c.Score: sys_score, c.Models: sys_models}
