"""OpenAIEngine: the Engine protocol over any OpenAI-compatible server (vLLM, SGLang, llama.cpp's
server, Ollama, OpenAI, or another llmasos daemon).

    KernelConfig(engine=OpenAIEngine("http://127.0.0.1:8001/v1", "smollm2-135m", api_key_env="MY_KEY"))
    KernelConfig(engine="openai:http://127.0.0.1:8001/v1#smollm2-135m")    # the same, by spec

Rule: the kernel's scheduler still decides which requests run and how many at once: a sequence's
HTTP request starts when the scheduler first puts it in a batch, and at most ``max_inflight`` are open
at a time. The requests stream on one I/O thread with its own event loop and one httpx connection
pool; ``step`` (on a worker thread: ``runs_model = False`` keeps it off the model thread, which a
local model in the same kernel needs) waits for what arrives (at most ``poll``
seconds, and only until a new request is prepared, so the scheduler can admit it at once; an idle wait
is not a busy loop) and hands it on as TokenEvents, one per streamed chunk, carrying text and
the token id -1 (the server's token ids are not sent). A request runs to its end once started, even
while the scheduler leaves its sequence out of a batch; what arrives meanwhile waits for its next step.
Counts: one token per chunk and a prompt estimated from its length while the reply streams, then the
server's ``usage`` (asked for with ``stream_options.include_usage``) on the last event, so the
Completion and the process's accounts hold the server's counts.
Failures: 429, 5xx and connection errors are retried with exponential backoff and jitter (honouring
Retry-After) while nothing of the reply has arrived; anything else, and a timeout, ends that request
alone with an EngineError naming the server and what to do. The API key is read once from an
environment variable, sent only in the Authorization header, and never logged or shown.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence as Seq
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmasos.engine import openai_wire as wire
from llmasos.engine.base import Capacity, Sequence, TokenEvent
from llmasos.engine.errors import EngineSetupError
from llmasos.syscalls.errors import ContextOverflow, EngineError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
GATHER = 0.002  # seconds a step waits, after the first chunk, for the other running requests' chunks
NO_ID = -1  # the token id of a remote token (the server sends text, not ids)
TOOL_MODES = ("auto", "native", "prompt")


@dataclass(slots=True, eq=False)
class RemoteState:
    """What the engine keeps per sequence (``Sequence.engine_state``)."""

    pending: deque[tuple[str, Any]] = field(default_factory=deque)  # ("text", str) | ("end", Delta) | ("error", exc)
    future: Future | None = None  # the running request, on the I/O thread's loop
    received: bool = False  # some of the reply arrived (no retry after that)
    finished: bool = False  # its last event went out


class OpenAIEngine:
    """Sequences served by an OpenAI-compatible server (see the module docstring)."""

    threaded = True
    runs_model = False  # its step waits on a server: the kernel runs it off the model thread
    native_tools = True  # generate with tools passes them on in Sequence.tools (tools/calling.py)

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 max_inflight: int = 32, context_window: int = 8192, timeout: float = 60.0,
                 connect_timeout: float = 10.0, retries: int = 4, backoff: float = 0.5,
                 max_backoff: float = 30.0, tools: str = "auto", poll: float = 0.25,
                 max_event_bytes: int = 1 << 20, name: str | None = None) -> None:
        self.base_url = wire.check_base_url(base_url)
        if not isinstance(model, str) or not model.strip():
            raise EngineSetupError(f"model must be the server's model name (see its /v1/models), not {model!r}")
        self.model = model
        self.name = name or model
        for key, value, low in (("max_inflight", max_inflight, 1), ("context_window", context_window, 16),
                                ("retries", retries, 0), ("max_event_bytes", max_event_bytes, 1024)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 1 << 30:
                raise EngineSetupError(f"OpenAIEngine {key} must be a whole number from {low} to 2**30, not {value!r}")
        for key, value in (("timeout", timeout), ("connect_timeout", connect_timeout), ("backoff", backoff),
                           ("max_backoff", max_backoff), ("poll", poll)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
                raise EngineSetupError(f"OpenAIEngine {key} must be a number of seconds in (0, 86400], not {value!r}")
        if tools not in TOOL_MODES:
            raise EngineSetupError(f"OpenAIEngine tools is one of {', '.join(TOOL_MODES)}, not {tools!r}")
        self.max_inflight, self.context_window, self.retries = max_inflight, context_window, retries
        self.timeout, self.backoff, self.max_backoff, self.poll = timeout, backoff, max_backoff, poll
        self.max_event_bytes, self.tools_mode = max_event_bytes, tools
        self.server_tools: bool | None = None if tools == "auto" else tools == "native"  # None: not yet known
        self.api_key_env = api_key_env
        headers = {"Accept": "text/event-stream"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EngineSetupError(
                    f"OpenAIEngine reads its API key from ${api_key_env}, which is not set: export it (any "
                    f"value for a server without auth), or name another variable with api_key_env=...")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight))
        self._cond = threading.Condition()
        self._open: set[int] = set()  # sids whose request is running
        self._arrivals = 0  # sequences prepared so far (a step's wait ends when one arrives)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmasos-openai-io", daemon=True)
        self._thread.start()
        self.requests = self.retried = self.fallbacks = 0  # for tests and `top`

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.base_url!r}, {self.model!r}, api_key_env={self.api_key_env!r})"

    @classmethod
    def from_spec(cls, spec: str, **defaults: Any) -> OpenAIEngine:
        """``openai:URL#MODEL`` or an engine config file; defaults fill what the spec does not set."""
        options = wire.parse_spec(spec)
        try:
            return cls(**{**defaults, **options})
        except TypeError as exc:
            raise EngineSetupError(f"{spec}: {exc}; OpenAIEngine's arguments are listed in docs/architecture.md "
                                   "(Remote models)") from None

    # -- the request side (called from the requesting process) ------------------------------------

    def prepare(self, seq: Sequence) -> None:
        budget = self.context_window - seq.params.max_tokens
        prompt = wire.prompt_estimate(seq)
        if seq.params.truncate and budget > 0 and prompt > budget:  # drop the oldest text, as the local engine
            if seq.messages is not None:
                seq.messages = list(seq.messages)
                while prompt > budget and (drop := _droppable(seq.messages)) is not None:
                    del seq.messages[drop]
                    prompt = wire.prompt_estimate(seq)
            else:
                seq.prompt = (seq.prompt or "")[-budget * wire.CHARS_PER_TOKEN:]
                prompt = wire.prompt_estimate(seq)
        if prompt > budget:
            raise ContextOverflow(
                f"the prompt is about {prompt} tokens and max_tokens is {seq.params.max_tokens}: more than "
                f"the context window of {self.context_window} set for {self.name} at {self.base_url}; shorten "
                "the prompt, lower max_tokens, or build OpenAIEngine with the server's context_window")
        seq.prompt_ids = [NO_ID] * prompt
        seq.engine_state = RemoteState()
        with self._cond:  # a step waiting on the server returns, so the scheduler can admit this one
            self._arrivals += 1
            self._cond.notify_all()

    def count_tokens(self, text: str) -> int:
        return wire.estimate_tokens(text)

    # -- the step (model thread) --------------------------------------------------------------------

    def step(self, batch: Seq[Sequence],
             early: Callable[[list[TokenEvent]], None] | None = None) -> list[TokenEvent]:
        """Start the batch's new requests (while fewer than max_inflight are open), then wait for the
        first of their chunks (at most ``poll`` seconds, and no longer than until a new request is
        prepared) and return every chunk that arrived."""
        deadline = time.monotonic() + self.poll
        with self._cond:
            arrivals = self._arrivals
            while True:
                self._start(batch)  # (again after a wait: a slot may have freed)
                if any(s.engine_state.pending for s in batch):
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self._arrivals != arrivals:  # a new request waits for the scheduler
                    return []
                self._cond.wait(left)
            # The server steps its batch too: gather the chunks of one of its steps into one of ours.
            deadline = time.monotonic() + min(self.poll, GATHER)
            while not all(s.engine_state.pending for s in batch if s.sid in self._open):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            drained = [(seq, list(seq.engine_state.pending)) for seq in batch]
            for seq, _ in drained:
                seq.engine_state.pending.clear()
        events = []
        for seq, items in drained:
            for kind, payload in items:
                if seq.engine_state.finished:
                    break
                events.append(self._event(seq, kind, payload))
        return events

    def _start(self, batch: Seq[Sequence]) -> None:
        """Start the requests of batch's new sequences while fewer than max_inflight are open (under _cond)."""
        for seq in batch:
            state: RemoteState = seq.engine_state
            if state.future is None and not state.finished and len(self._open) < self.max_inflight:
                self._open.add(seq.sid)
                self.requests += 1
                state.future = asyncio.run_coroutine_threadsafe(self._request(seq, state), self._loop)
                # Invariant: the slot is freed when the request ends, however it ends (a request
                # cancelled before it started never runs a line of its own).
                state.future.add_done_callback(lambda _f, sid=seq.sid: self._closed(sid))

    def _event(self, seq: Sequence, kind: str, payload: Any) -> TokenEvent:
        state: RemoteState = seq.engine_state
        if kind == "error":
            state.finished = True
            return TokenEvent(seq, NO_ID, "", "error", error=payload)
        if kind == "text":
            if len(seq.output_ids) >= seq.params.max_tokens:  # a server that sends more than it was asked
                return self._add_text(seq, "", "length")
            seq.output_ids.append(NO_ID)
            return self._add_text(seq, payload, None)
        delta: wire.Delta = payload  # the end of the reply
        text = ""
        if delta.tool_calls:
            from llmasos.tools.calling import format_call

            text = "".join(format_call(call) for call in delta.tool_calls)
        if delta.usage is not None:  # the server's counts replace the estimates (within what was asked)
            prompt, completion = delta.usage
            seq.prompt_ids = [NO_ID] * min(prompt, self.context_window)
            seq.output_ids = [NO_ID] * min(max(completion, 1 if text else 0), seq.params.max_tokens)
        return self._add_text(seq, text, wire.FINISH.get(delta.finish or "stop", "stop"))

    def _add_text(self, seq: Sequence, text: str, finish: str | None) -> TokenEvent:
        """Append text to seq's reply, cut at a stop string (the server is sent at most MAX_STOPS of
        them, and may ignore them)."""
        state: RemoteState = seq.engine_state
        before = seq.text
        full = before + text
        for stop in seq.params.stop:
            cut = full.find(stop, max(len(before) - len(stop), 0))
            if cut != -1:
                full, finish = full[:cut], "stop"
        seq.text = full
        if finish is not None:
            state.finished = True
            self._cancel(state)
        return TokenEvent(seq, NO_ID, full[len(before):], finish)

    def abort(self, seq: Sequence) -> None:
        state = seq.engine_state
        if isinstance(state, RemoteState):
            state.finished = True
            self._cancel(state)

    def _cancel(self, state: RemoteState) -> None:
        if state.future is not None and not state.future.done():
            state.future.cancel()  # cancels the task on the I/O loop, which closes its connection

    def capacity(self) -> Capacity:
        with self._cond:
            running = len(self._open)
        return Capacity(self.max_inflight, self.context_window * self.max_inflight, running)

    def cached_tokens(self, seq: Sequence) -> int:
        return 0  # the server's own prefix cache is its business; each request costs a slot, not tokens

    def close(self) -> None:
        """Cancel every request, close the connection pool and stop the I/O thread."""
        if self._loop.is_closed():
            return

        async def shut() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    # -- the I/O thread -------------------------------------------------------------------------------

    def _push(self, seq: Sequence, state: RemoteState, kind: str, payload: Any) -> None:
        with self._cond:
            state.pending.append((kind, payload))
            self._cond.notify_all()

    def _closed(self, sid: int) -> None:
        with self._cond:
            self._open.discard(sid)
            self._cond.notify_all()

    async def _request(self, seq: Sequence, state: RemoteState) -> None:
        try:
            await self._attempts(seq, state)
        except asyncio.CancelledError:
            raise
        except EngineError as exc:
            self._push(seq, state, "error", exc)
        except httpx.TimeoutException as exc:
            self._push(seq, state, "error", EngineError(
                f"{self.base_url} sent nothing for {self.timeout:g} s ({type(exc).__name__}); the server is "
                "overloaded or stuck: check it, or give OpenAIEngine a larger timeout"))
        except Exception as exc:  # noqa: BLE001 - any other failure ends this request alone
            self._push(seq, state, "error", EngineError(
                f"the request to {self.base_url} failed: {type(exc).__name__}: {exc}"))

    async def _attempts(self, seq: Sequence, state: RemoteState) -> None:
        """Send seq's request, retrying what may pass (429, 5xx, no connection) while nothing arrived."""
        attempt = 0
        while True:
            native = self.server_tools is not False and seq.tools is not None
            path, body = wire.request(seq, self.model, native)
            url = self.base_url + path
            wait: float | None = None
            try:
                async with self._client.stream("POST", url, json=body) as resp:
                    if resp.status_code < 400:
                        await self._read(seq, state, resp)
                        if native and seq.tools.get("tools"):
                            self.server_tools = True
                        return
                    detail = wire.error_text(await _read_capped(resp, self.max_event_bytes))
                    if native and self.server_tools is None and wire.rejects_tools(resp.status_code, detail):
                        self.server_tools = False  # from now on: tools in the prompt, replies validated
                        self.fallbacks += 1
                        continue
                    if resp.status_code not in RETRY_STATUS or attempt >= self.retries:
                        raise EngineError(_refused(url, resp.status_code, detail, self.api_key_env, attempt))
                    wait = wire.retry_after(resp.headers.get("retry-after"), self.max_backoff)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if state.received or attempt >= self.retries:
                    raise EngineError(
                        f"cannot reach {self.base_url} ({type(exc).__name__}: {exc}) after {attempt + 1} "
                        "attempt(s); check that the server runs and that base_url (up to /v1) is right") from None
            except wire.MalformedReply as exc:
                raise EngineError(f"{self.base_url} sent a reply that is not an OpenAI stream ({exc}); "
                                  "check that base_url points at an OpenAI-compatible API") from None
            attempt += 1
            self.retried += 1
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            await asyncio.sleep(wait)

    async def _read(self, seq: Sequence, state: RemoteState, resp: httpx.Response) -> None:
        """Turn the server-sent events into pending items: text pieces, then one end (or an error)."""
        lines = wire.Lines(self.max_event_bytes)
        calls: dict[int, dict[str, Any]] = {}
        end = wire.Delta()
        async for data in resp.aiter_bytes():
            for line in lines.feed(data):
                delta = wire.parse_line(line)
                if delta is None:
                    continue
                if delta.done:
                    break
                if delta.text:
                    state.received = True
                    self._push(seq, state, "text", delta.text)
                if delta.tool_calls:
                    state.received = True
                    wire.merge_tool_calls(calls, delta.tool_calls, self.max_event_bytes)
                end.finish = delta.finish or end.finish
                end.usage = delta.usage or end.usage
            else:
                continue
            break
        else:
            if end.finish is None:
                raise EngineError(f"{self.base_url} closed the stream before the reply ended; the server may "
                                  "have crashed or dropped the connection: try again")
        end.tool_calls = wire.render_tool_calls(calls)
        self._push(seq, state, "end", end)


def _droppable(messages: list[dict[str, Any]]) -> int | None:
    """Index of the oldest message truncation may drop (never a system message nor the last one)."""
    for i, m in enumerate(messages[:-1]):
        if m.get("role") != "system":
            return i
    return None


async def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    out = bytearray()
    async for data in resp.aiter_bytes():
        out += data
        if len(out) > limit:
            break
    return bytes(out[:limit])


def _refused(url: str, status: int, detail: str, key_env: str | None, attempt: int) -> str:
    if status in (401, 403):
        where = f"${key_env}" if key_env else "no key (api_key_env=None)"
        return (f"{url} refused the API key ({status}: {detail}); the key comes from {where}: set it to a key "
                "this server accepts")
    if status == 404:
        return (f"{url} answered 404 ({detail}); check base_url (it ends before /chat/completions, usually "
                "in /v1) and the model name (the server's /v1/models lists them)")
    tries = f" after {attempt + 1} attempts" if attempt else ""
    if status in RETRY_STATUS:
        return (f"{url} answered {status}{tries} ({detail}); the server is overloaded or failing: try again "
                "later, or give OpenAIEngine more retries")
    return f"{url} refused the request ({status}: {detail}); check the request's arguments for this server"


__all__ = ["OpenAIEngine", "RemoteState"]
