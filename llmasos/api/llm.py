"""LLM: the seed's model handle (``LLM.from_pretrained(...)``, ``generate_text``, ``chat``).

Rule: every call is a generate syscall, so it is batched with everyone else's and passes the chokepoint.
Inside a process (its code, or a worker thread it started) the call is that process's syscall. Outside
one, the call is made by a request process of its own (``kernel.session("llm")``): visible in ps and
strace while it runs, charged to ``KernelConfig.request_caps``; in a plain script a private kernel is
booted in a background thread on first use, and shut down by ``close()``, when the handle is collected,
or when the script ends (before the interpreter joins its threads, so a script exits by itself).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.from_thread

from llmasos.errors import LlmasosError
from llmasos.syscalls.calls import Generate
from llmasos.syscalls.types import Completion


class LLMUsageError(LlmasosError):
    """A blocking LLM call was made from a place where blocking would freeze the kernel."""


class LLM:
    """A language model served by llmasos.

    ``LLM.from_pretrained("smollm2-135m")`` takes a registry name, a transformers directory, a
    ``.gguf`` file, or a hub id (offline: only if it is in the local cache). The weights load on first
    use, once, and are shared by every kernel this handle is given to.
    """

    def __init__(self, name_or_path: str | None = None, *, engine: Any = None, config: Any = None,
                 weights: str | None = None, kv_dtype: str | None = None) -> None:
        self.name_or_path = name_or_path
        self.weights = weights  # the native step's weight format (HFEngine's weights=); None: its default
        self.kv_dtype = kv_dtype  # the KV cache's element type (HFEngine's kv_dtype=); None: its default
        self._engine = engine
        self.config = config  # the KernelConfig of the private kernel that serves blocking calls in a plain
        # script (e.g. its request_caps); its engine defaults to this model's. None: no database, no limits
        self._lock = threading.RLock()
        self._runtime: _Runtime | None = None
        self._closer: weakref.finalize | None = None  # closes _runtime at exit or when self is collected

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] | None = None, *,
                        weights: str | None = None, kv_dtype: str | None = None) -> LLM:
        """Find the model now (a clear ModelNotFound if it is not available); load it on first use.

        weights: "q4_1" (a GGUF model's own blocks), "q8_0", "bf16" or "fp32", the format the native
        decode step reads; None: the engine's default. An unknown one raises WeightFormatError now.
        kv_dtype: "bf16" or "fp32", the KV cache's element type; None: the engine's default (bf16 where
        the native step decodes). An unknown one raises KVDtypeError now."""
        from llmasos.engine import models
        from llmasos.engine.kvbatch import check_kv_dtype
        from llmasos.engine.quant import check_format

        if weights is not None:
            check_format(weights)
        if kv_dtype is not None:
            check_kv_dtype(kv_dtype)
        spec = models.resolve(name_or_path)
        return cls(os.fspath(name_or_path) if name_or_path is not None else spec.name, weights=weights,
                   kv_dtype=kv_dtype)

    @property
    def engine(self) -> Any:
        """The loaded engine (loads the weights the first time)."""
        with self._lock:
            if self._engine is None:
                from llmasos.engine.hf import HFEngine

                formats = {k: v for k, v in (("weights", self.weights), ("kv_dtype", self.kv_dtype))
                           if v is not None}
                self._engine = HFEngine.from_pretrained(self.name_or_path, **formats)
            return self._engine

    @property
    def name(self) -> str:
        return getattr(self._engine, "name", None) or str(self.name_or_path or "smollm2-135m")

    # -- blocking API (the seed's) -----------------------------------------------------------

    def generate_text(self, prompt: str, max_length: int = 256, *, temperature: float = 0.0,
                      stop: str | Iterable[str] | None = None, seed: int | None = None,
                      chat: bool | None = None) -> str:
        """Continue or answer prompt; return at most max_length new tokens of text.

        For a chat model (one with a chat template) the prompt is sent as a user message unless
        chat=False. Unlike transformers' ``max_length``, the prompt does not count against it.
        """
        return self._call(self._request(prompt, None, max_length, temperature, stop, seed, chat)).text

    def chat(self, messages: Iterable[dict[str, Any]], max_tokens: int = 256, *, temperature: float = 0.0,
             stop: str | Iterable[str] | None = None, seed: int | None = None) -> str:
        """Answer a conversation (OpenAI-style messages) with the model's chat template."""
        return self._call(self._request(None, list(messages), max_tokens, temperature, stop, seed, True)).text

    # -- async API ---------------------------------------------------------------------------

    async def agenerate_text(self, prompt: str, max_length: int = 256, **kw: Any) -> str:
        """generate_text for async code (inside a process, or beside a booted kernel)."""
        call = self._request(prompt, None, max_length, kw.get("temperature", 0.0), kw.get("stop"),
                             kw.get("seed"), kw.get("chat"))
        return (await self._acall(call)).text

    async def achat(self, messages: Iterable[dict[str, Any]], max_tokens: int = 256, **kw: Any) -> str:
        """chat for async code."""
        call = self._request(None, list(messages), max_tokens, kw.get("temperature", 0.0), kw.get("stop"),
                             kw.get("seed"), True)
        return (await self._acall(call)).text

    # -- plumbing ----------------------------------------------------------------------------

    def _request(self, prompt: str | None, messages: list | None, max_tokens: int, temperature: float,
                 stop: Any, seed: int | None, chat: bool | None) -> Generate:
        if max_tokens < 1:
            raise ValueError(f"max_length must be at least 1, not {max_tokens}")
        if prompt is not None and chat is not False and (chat or self._has_chat_template()):
            messages, prompt = [{"role": "user", "content": prompt}], None
        stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return Generate(prompt=prompt, messages=tuple(messages) if messages is not None else None,
                        max_tokens=max_tokens, temperature=temperature, stop=stop, seed=seed)

    def _has_chat_template(self) -> bool:
        tokenizer = getattr(self.engine, "tokenizer", None)
        return bool(getattr(tokenizer, "chat_template", None))

    async def _acall(self, call: Generate) -> Completion:
        from llmasos.client.kernel import current_sys

        sys = current_sys.get()
        if sys is not None:
            return await sys.syscall(call)
        if self._runtime is not None and self._runtime.kernel is not None:
            return await _request(self._runtime.kernel, call)
        raise LLMUsageError("outside a kernel process, use the blocking generate_text()/chat(), "
                            "or run your code as an app (llmasos run file.py)")

    def _call(self, call: Generate) -> Completion:
        from llmasos.client.kernel import current_sys

        sys = current_sys.get()
        in_loop = _in_event_loop()
        if sys is not None and not in_loop:  # a worker thread of a process (e.g. an Application route)
            return anyio.from_thread.run(sys.syscall, call)
        if in_loop:
            raise LLMUsageError("generate_text() blocks, and this code runs on the kernel's event loop; "
                                "use `await model.agenerate_text(...)` or `await sys.generate(...)`")
        with self._lock:
            if self._runtime is None:
                self._runtime = _Runtime(self)
                self._closer = _closer(self, self._runtime)
        return self._runtime.call(call)

    def close(self) -> None:
        """Stop the private kernel (if one was started); a later blocking call starts a new one."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
            if runtime is not None and self._closer is not None:
                self._closer.detach()
                runtime.close()


async def _request(kernel: Any, call: Generate) -> Completion:
    """call, made by a request process of the LLM face."""
    async with kernel.session("llm") as sys:
        return await sys.syscall(call)


def _in_event_loop() -> bool:
    try:
        anyio.get_current_task()
    except Exception:
        return False
    return True


def _closer(llm: LLM, runtime: _Runtime) -> weakref.finalize:
    """Close runtime when llm is collected, or when the interpreter starts to shut down.

    Invariant: at exit it runs before the interpreter joins non-daemon threads (the model thread's
    pool is one), while the portal's daemon thread still runs; closing later, during finalization,
    would wait forever on a loop that no longer runs.
    """
    finalizer = weakref.finalize(llm, runtime.close, quiet=True)
    finalizer.atexit = False
    try:
        threading._register_atexit(finalizer)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # another Python, or already shutting down
        finalizer.atexit = True
    return finalizer


class _Runtime:
    """A private kernel in a background thread, for blocking calls from plain scripts."""

    def __init__(self, llm: LLM) -> None:
        from llmasos.client.kernel import Kernel, KernelConfig

        self._closed = False
        self._portal_cm = anyio.from_thread.start_blocking_portal(name="llmasos-llm")
        self.portal = self._portal_cm.__enter__()
        self.kernel: Any = None
        if llm.config is None:
            config = KernelConfig(engine=llm.engine, memory=False)
        else:
            engine = llm.config.engine if llm.config.engine is not None else llm.engine
            config = dataclasses.replace(llm.config, engine=engine)
        kernel = Kernel(config)
        # Invariant: the kernel's task group is entered and exited by one task, so the portal runs
        # the kernel as a context manager rather than calling boot() and shutdown() apart.
        self._kernel_cm = self.portal.wrap_async_context_manager(kernel)
        self._kernel_cm.__enter__()
        self.kernel = kernel

    def call(self, call: Generate) -> Completion:
        return self.portal.call(_request, self.kernel, call)

    def close(self, quiet: bool = False) -> None:
        """Shut the kernel down, then stop the portal's thread (once; quiet: errors are dropped)."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._kernel_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)
        except Exception:
            if not quiet:
                raise
