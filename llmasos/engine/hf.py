"""The transformers engine: continuous batching over one causal LM, one token per sequence per step.

Rule: ``step(batch)`` runs exactly the sequences the scheduler chose. Newcomers are prefilled apart
(short prompts together, left-padded, ``prefill_chunk`` tokens a step while others decode and up to
``idle_prefill`` when none do; a prompt longer than ``prefill_chunk`` one chunk per step, so a
500-token prompt never stalls the decoding batch for more than one chunk) and then join the batch's
left-padded KV cache; every running row decodes one token in one batched forward pass with its own
position ids. A sequence left out of a batch (preempted by rr / priority / fair) keeps its cache, parked
apart, and rejoins without recompute; only when resident KV tokens exceed ``max_resident_tokens`` does
the engine drop the longest-parked caches, which are then recomputed from their tokens on resumption.
Greedy output of a sequence is the same token for token whether it ran alone or in any batch.

Chosen over transformers' own continuous batching (``generate_batch`` / ``init_continuous_batching``),
which is correct on CPU but measured 25-56 % slower than this loop here (see bench/throughput.py).
What makes a step cheaper than transformers' own ``generate`` step: for a plain fp32 Llama, every decode
step is one call into the native step (engine/native.py), whose blocked weights the model's Linear
layers also use for prefill; otherwise fp32 Linear layers are packed for oneDNN once at load
(engine/packed.py). The batch cache appends in place (kvbatch.SlackLayer), for both paths.
The model is loaded, packed and stepped on one thread only (engine/worker.py explains why).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence as Seq
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from llmasos.engine import native, worker
from llmasos.engine.base import Capacity, Message, SamplingParams, Sequence, TokenEvent
from llmasos.engine.errors import ModelUnsupported
from llmasos.engine.kvbatch import KV, KV_DTYPES, BatchKV, cache_kv, check_kv_dtype, new_cache
from llmasos.engine.packed import pack_linears
from llmasos.engine.prefix import Block, PrefixCache, shared_prefix
from llmasos.engine.quant import check_format
from llmasos.engine.sampling import TextStream, all_greedy, choose_batch, make_generator
from llmasos.syscalls.errors import ContextOverflow


@dataclass(slots=True, eq=False)
class SeqState:
    """What the engine keeps per sequence (``Sequence.engine_state``)."""

    stream: TextStream
    generator: torch.Generator | None
    kv: KV | None = None  # parked or partly-prefilled cache, batch of one, no padding
    kv_tokens: int = 0  # tokens held in kv
    in_batch: bool = False  # True: the sequence is a row of the engine's BatchKV
    prefilling: bool = False  # True: kv holds the first kv_tokens of a prompt still being prefilled
    done: bool = False
    recomputes: int = 0  # times its cache was dropped under memory pressure and rebuilt
    prefix: list[Block] = field(default_factory=list)  # prefix-cache blocks it references (engine/prefix.py)
    extra: dict[str, Any] = field(default_factory=dict)


DEFAULT_KV_DTYPE = "bf16"  # the KV cache when the native step decodes (docs/benchmarks.md, "KV cache dtype")


class HFEngine:
    """A transformers causal LM served with continuous batching (see the module docstring)."""

    threaded = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        max_batch: int = 32,
        max_resident_tokens: int = 65536,
        prefill_chunk: int = 256,
        idle_prefill: int = 2048,
        context_window: int | None = None,
        ignore_eos: bool = False,
        pack_weights: bool = True,
        native_decode: bool = True,
        native_max_batch: int = 32,
        weights: str | None = None,
        gguf: str | os.PathLike[str] | None = None,
        prefix_cache_tokens: int = 4096,
        prefix_block: int = 16,
        kv_dtype: str | None = None,
    ) -> None:
        if prefill_chunk < 1 or max_batch < 1 or idle_prefill < 1:
            raise ValueError("prefill_chunk, idle_prefill and max_batch must be at least 1")
        if weights is not None:
            check_format(weights)
        if kv_dtype is not None:
            check_kv_dtype(kv_dtype)
        self.model = model.eval()
        # The native decode step (engine/native.py) takes the weights in its own layout first; for a
        # GGUF model (gguf: its file) it reads the file's own blocks, and by default (weights=None) in
        # the file's format: as fast as any here at the shipped model's quality (docs/benchmarks.md).
        self.native, self.native_reason = (worker.call(native.for_model, model, weights, gguf) if native_decode
                                           else (None, "turned off (native_decode=False)"))
        self.weights = self.native.format if self.native is not None else "fp32"  # what decode reads
        # The KV cache's dtype (kvbatch.KV_DTYPES): by default bf16 where the native step decodes (half
        # the bytes its attention reads, docs/benchmarks.md), fp32 where transformers does (its attention
        # would widen a bf16 cache again at every step).
        self.kv_dtype = kv_dtype or (DEFAULT_KV_DTYPE if self.native is not None else "fp32")
        self._kv = KV_DTYPES[self.kv_dtype]
        self.native_max_batch = native_max_batch
        # Linear layers are swapped in place for faster ones: views of the native step's weights (one
        # copy serves both), else fp32 CPU layers packed for oneDNN (engine/packed.py).
        self.packed_layers = 0
        if pack_weights:
            self.packed_layers = worker.call(self.native.attach if self.native else pack_linears, model)
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model, "name_or_path", "") or type(model).__name__)
        config = model.config.get_text_config(decoder=True)
        layer_types = getattr(config, "layer_types", None) or ["full_attention"]
        if any(t != "full_attention" for t in layer_types):
            raise ModelUnsupported(
                f"{self.name}: HFEngine batches full-attention models only (no sliding windows); "
                "choose a model whose layers all use full attention (a Llama-family model, say)"
            )
        self.context_window = context_window or int(getattr(config, "max_position_embeddings", 2048))
        self.max_batch = max_batch
        self.max_resident_tokens = max_resident_tokens
        self.prefill_chunk = prefill_chunk
        # Short prompts prefilled together in one step: up to prefill_chunk tokens while others
        # decode (they wait for it), up to idle_prefill when nobody does (a burst starts as one batch).
        self.idle_prefill = max(idle_prefill, prefill_chunk)
        self.eos_ids = frozenset() if ignore_eos else _eos_ids(model, tokenizer)  # benchmarks: fixed lengths
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad or 0
        self.batch = BatchKV()
        # Prompt prefixes prefilled once and shared by every sequence that starts with them.
        self.prefix = PrefixCache(prefix_cache_tokens, prefix_block)
        self.parked: OrderedDict[int, Sequence] = OrderedDict()  # sid -> seq with a cache apart, oldest first
        self.resident = 0  # KV tokens held (batch + parked), as of the last step or abort
        self.steps = 0

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] | None = None, *, dtype: Any = "float32",
                        **kw: Any) -> HFEngine:
        """Load a registry name (default ``smollm2-135m``), directory, .gguf file or hub id.

        ``weights=`` ("q4_1", "q8_0", "bf16", "fp32") is the format the native decode step reads;
        a GGUF model's blocks are read from its file as shipped, in its own format by default.
        ``kv_dtype=`` ("fp32", "bf16") is the KV cache's; by default bf16 when the native step decodes."""
        from llmasos.engine import models

        model, tokenizer = worker.call(models.load, name_or_path, dtype=dtype)
        kw.setdefault("name", model.name_or_path)
        if "gguf" not in kw:
            kw["gguf"] = _gguf_source(name_or_path)
        return cls(model, tokenizer, **kw)

    # -- the request side (called from the requesting process) ------------------------------------

    def prepare(self, seq: Sequence) -> None:
        params = seq.params
        budget = self.context_window - params.max_tokens
        if seq.messages is not None:
            messages = list(seq.messages)
            ids = self._chat_ids(messages)
            while params.truncate and len(ids) > budget and (drop := _droppable(messages)) is not None:
                del messages[drop]
                ids = self._chat_ids(messages)
        else:
            ids = self.tokenizer.encode(seq.prompt or "", add_special_tokens=True)
        if not ids:
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id]
        if len(ids) > budget:
            if not params.truncate or budget < 1:
                raise ContextOverflow(
                    f"prompt is {len(ids)} tokens and max_tokens is {params.max_tokens}: "
                    f"{len(ids) + params.max_tokens} > the context window of {self.context_window} "
                    f"({self.name}); shorten the prompt, lower max_tokens, or ask for truncate=True"
                )
            ids = ids[len(ids) - budget:]
        seq.prompt_ids = list(ids)
        seq.engine_state = SeqState(TextStream(self.tokenizer, params.stop), make_generator(params))

    def _chat_ids(self, messages: list[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    # -- the step ------------------------------------------------------------------------------------

    def step(self, batch: Seq[Sequence],
             early: Callable[[list[TokenEvent]], None] | None = None) -> list[TokenEvent]:
        self.steps += 1
        rows = self.batch.rows
        if (self.native is not None and rows and len(batch) == len(rows) <= self.native_max_batch
                and all(s.engine_state.in_batch for s in batch)):
            # Only the batch's decode, which the native step runs: no torch call, not even entering
            # inference mode (~0.1 ms once the weights' stream has left the caches cold).
            events: list[TokenEvent] = []
            self._decode(events)
            self._enforce_resident_limit()
            return events
        with torch.inference_mode():
            return self._step(batch, early)

    def _step(self, batch: Seq[Sequence], early: Callable[[list[TokenEvent]], None] | None) -> list[TokenEvent]:
        chosen = {s.sid for s in batch}
        # 1. Parked sequences that are back will rejoin; the rest need (some) prefill.
        rejoin, todo = [], []
        for seq in batch:
            state: SeqState = seq.engine_state
            if state.in_batch or state.done:
                continue
            if seq.sid in self.parked and not state.prefilling:
                rejoin.append(seq)
            else:
                todo.append(seq)
        decoding = bool(rejoin) or any(row.sid in chosen for row in self.batch.rows)
        events: list[TokenEvent] = []
        # 2. Prefill what the budget allows; newcomers get their first token from it, and it goes
        #    out now if asked, before the parking and the batch's decode below.
        fresh = self._prefill(todo, events, self.prefill_chunk if decoding else self.idle_prefill)
        if early is not None and events and decoding:
            early(list(events))
        # 3. Rows the scheduler left out are parked: their cache moves apart and is kept.
        keep = []
        for i, seq in enumerate(self.batch.rows):
            if seq.sid in chosen:
                keep.append(i)
            else:
                self._park(seq, self.batch.extract(i))
        self.batch.keep(keep)
        for seq in rejoin:
            self.parked.pop(seq.sid)
            self._join(seq)
        # 4. One decode token for every row.
        if self.batch.rows:
            self._decode(events)
        for seq, kv in fresh:
            if kv is not None:
                self.batch.merge_one(seq, kv)
                seq.engine_state.in_batch = True
        self._enforce_resident_limit()
        return events

    def _park(self, seq: Sequence, kv: KV) -> None:
        state: SeqState = seq.engine_state
        state.kv, state.kv_tokens, state.in_batch = kv, kv[0][0].shape[2], False
        self.parked[seq.sid] = seq

    def _join(self, seq: Sequence) -> None:
        state: SeqState = seq.engine_state
        assert state.kv is not None
        self.batch.merge_one(seq, state.kv)
        state.kv, state.kv_tokens, state.in_batch = None, 0, True

    def _prefill(self, todo: list[Sequence], events: list[TokenEvent],
                 budget: int) -> list[tuple[Sequence, KV | None]]:
        """Prefill within the step's token budget; return newcomers that finished prefill this step."""
        fresh: list[tuple[Sequence, KV | None]] = []
        if not todo:
            return fresh
        head = todo[0]
        target = _prefill_target(head)
        if head.engine_state.kv_tokens or self._uncached(target) > self.prefill_chunk:
            # A long prompt (or one already started): one chunk of it, alone, after its cached prefix.
            state: SeqState = head.engine_state
            if not state.kv_tokens and (kv := self._take_prefix(head, target)) is not None:
                state.kv, state.kv_tokens = kv, kv[0][0].shape[2]
            self._prefill_chunk(head, target, events, fresh)
            return fresh
        group, widths = [], []
        for seq in todo:
            n = self._uncached(_prefill_target(seq))
            if seq.engine_state.kv_tokens or n > self.prefill_chunk:
                break
            if group and max(widths + [n]) * (len(group) + 1) > budget:
                break
            group.append(seq)
            widths.append(n)
        self._share_common_prefix([_prefill_target(s) for s in group])
        self._prefill_group(group, events, fresh)
        return fresh

    def _prefill_chunk(self, seq: Sequence, target: list[int], events: list[TokenEvent],
                       fresh: list[tuple[Sequence, KV | None]]) -> None:
        state: SeqState = seq.engine_state
        start = state.kv_tokens
        chunk = target[start : start + self.prefill_chunk]
        cache = new_cache(state.kv) if state.kv else new_cache(dtype=self._kv)
        out = self.model(input_ids=torch.tensor([chunk]), cache=cache, use_cache=True, logits_to_keep=1)
        state.kv, state.kv_tokens = cache_kv(out.cache), start + len(chunk)
        self.parked.pop(seq.sid, None)
        state.prefilling = state.kv_tokens < len(target)
        if state.prefilling:
            self.parked[seq.sid] = seq  # counts as resident; may be dropped under pressure
            return
        kv, state.kv, state.kv_tokens = state.kv, None, 0
        self._prefilled(seq, kv, out.logits[:, -1].float(), events, fresh)

    def _prefill_group(self, group: list[Sequence], events: list[TokenEvent],
                       fresh: list[tuple[Sequence, KV | None]]) -> None:
        """Prefill short prompts in one forward pass, each after its cached prefix: the cache's columns
        are [left padding, prefix i] (width p), then the queries' [left padding, suffix i] (width w)."""
        targets = [_prefill_target(s) for s in group]
        prefixes = [self._take_prefix(s, t) for s, t in zip(group, targets, strict=True)]
        held = [0 if kv is None else kv[0][0].shape[2] for kv in prefixes]
        suffixes = [t[n:] for t, n in zip(targets, held, strict=True)]
        p, w = max(held), max(len(t) for t in suffixes)
        ids = torch.tensor([[self.pad_id] * (w - len(t)) + t for t in suffixes])
        mask = torch.tensor([[0] * (p - n) + [1] * n + [0] * (w - len(t)) + [1] * len(t)
                             for n, t in zip(held, suffixes, strict=True)])
        positions = (mask[:, p:].cumsum(-1) - 1).clamp(min=0) + torch.tensor(held)[:, None]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=new_cache(_left_padded(prefixes, p)) if p else new_cache(dtype=self._kv),
                         use_cache=True, logits_to_keep=1)
        kv = cache_kv(out.cache)
        for i, (seq, t, n) in enumerate(zip(group, suffixes, held, strict=True)):
            row = [(_columns(k, i, p, n, p + w - len(t)), _columns(v, i, p, n, p + w - len(t))) for k, v in kv]
            self._prefilled(seq, row, out.logits[i : i + 1, -1].float(), events, fresh)

    # -- the prefix cache's hooks (engine/prefix.py) -----------------------------------------------------

    def _uncached(self, target: list[int]) -> int:
        """Tokens of target a prefill would compute: those after its cached prefix."""
        return len(target) - self.prefix.cached(target)

    def _take_prefix(self, seq: Sequence, target: list[int]) -> KV | None:
        """Reference the cached blocks target starts with, for seq; return a private copy of their KV."""
        state: SeqState = seq.engine_state
        self._release_prefix(state)
        state.prefix = self.prefix.match(target)
        self.prefix.acquire(state.prefix, len(target))
        return self.prefix.copy(state.prefix)

    def _share_common_prefix(self, targets: list[list[int]]) -> None:
        """Concurrent arrivals: the full blocks that two or more prompts of one prefill group start with
        (``shared_prefix``), not cached yet, are prefilled once (after what is cached of them) and
        cached, so each of those prompts then prefills only the rest."""
        if len(targets) < 2 or not self.prefix.enabled:
            return
        common = shared_prefix(targets, self.prefix.block)
        held = self.prefix.match(common + [self.pad_id])  # (a match never covers the last token)
        start = len(held) * self.prefix.block
        if start >= len(common):
            return
        self.prefix.hold(held)
        past = self.prefix.copy(held)
        cache = new_cache(past) if past is not None else new_cache(dtype=self._kv)
        out = self.model(input_ids=torch.tensor([common[start:]]), cache=cache, use_cache=True, logits_to_keep=1)
        self.prefix.release(self.prefix.insert(common, cache_kv(out.cache), held))

    def _release_prefix(self, state: SeqState) -> None:
        self.prefix.release(state.prefix)
        state.prefix = []

    def _prefilled(self, seq: Sequence, kv: KV, logits: torch.Tensor, events: list[TokenEvent],
                   fresh: list[tuple[Sequence, KV | None]]) -> None:
        state: SeqState = seq.engine_state
        state.prefix = self.prefix.insert(seq.prompt_ids, kv, state.prefix)
        if seq.output_ids:
            # A recompute after its cache was dropped: it decodes with the batch this very step.
            self.batch.merge_one(seq, kv)
            seq.engine_state.in_batch = True
            return
        token = choose_batch(logits, [seq])[0]
        event = self._emit(seq, token)
        events.append(event)
        fresh.append((seq, None if event.finish_reason else kv))

    def _decode(self, events: list[TokenEvent]) -> None:
        rows = self.batch.rows
        if self.native is not None and len(rows) <= self.native_max_batch:
            greedy = self._native_step(rows)
            tokens = greedy if all_greedy(rows) else choose_batch(self.native.last_logits(), rows, greedy)
        else:
            lengths = self.batch.lengths()
            ids = torch.tensor([[s.output_ids[-1]] for s in rows])
            positions = torch.tensor([[n] for n in lengths])
            mask = torch.cat([self.batch.mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             cache=self.batch.cache, use_cache=True, logits_to_keep=1)
            self.batch.cache, self.batch.mask = out.cache, mask
            tokens = choose_batch(out.logits[:, -1].float(), rows)
        keep = []
        for i, (seq, token) in enumerate(zip(rows, tokens, strict=True)):
            event = self._emit(seq, token)
            events.append(event)
            if event.finish_reason is None:
                keep.append(i)
            else:
                seq.engine_state.in_batch = False
        if len(keep) < len(rows):
            with torch.inference_mode():
                self.batch.keep(keep)

    def _native_step(self, rows: list[Sequence]) -> list[int]:
        """One decode step of every row through the native C step, appending in place to the cache;
        returns each row's greedy token (its logits are then ``native.last_logits()``)."""
        assert self.native is not None
        step = self.native.decode
        tokens = [s.output_ids[-1] for s in rows]
        lengths = self.batch.lengths()  # a row of n real tokens holds them in its last n columns
        width = self.batch.width
        first = [width - n for n in lengths]
        return self.batch.decode_in_place(
            lambda keys, values, column: step(tokens, lengths, first, keys, values, column))

    def _emit(self, seq: Sequence, token: int | Exception) -> TokenEvent:
        state: SeqState = seq.engine_state
        if isinstance(token, Exception):  # its logits processor or sampling raised
            return _failed(seq, token)
        # Invariant: first_token_at belongs to the kernel (it charges prompt tokens on the first event).
        seq.output_ids.append(token)
        finish = None
        try:
            if token in self.eos_ids:
                text, finish = state.stream.flush(), "stop"
            else:
                text, stopped = state.stream.push(token)
                if stopped:
                    finish = "stop"
                elif len(seq.output_ids) >= seq.params.max_tokens or seq.num_tokens >= self.context_window:
                    text, finish = text + state.stream.flush(), "length"
        except Exception as exc:  # its detokenizer or stop matching: this row alone fails
            return _failed(seq, exc)
        seq.text += text
        if finish is not None:
            seq.finish_reason, state.done = finish, True
            self._release_prefix(state)
        return TokenEvent(seq, token, text, finish)

    def _enforce_resident_limit(self) -> None:
        # Invariant: only parked caches are dropped; a dropped sequence recomputes prompt + output
        # (all but its last token) when it is next scheduled, and continues exactly where it was.
        # Unreferenced prefix-cache blocks go first: they cost one prefill, shared, to rebuild.
        if (excess := self._resident() - self.max_resident_tokens) > 0:
            self.prefix.shrink(excess)
        while self.parked and self._resident() > self.max_resident_tokens:
            _, seq = self.parked.popitem(last=False)
            state: SeqState = seq.engine_state
            state.kv, state.kv_tokens, state.prefilling = None, 0, False
            state.recomputes += 1
            self._release_prefix(state)
        self._resident()  # refresh the count capacity() reports

    def _resident(self) -> int:
        self.resident = (self.batch.resident_tokens() + self.prefix.tokens
                         + sum(s.engine_state.kv_tokens for s in self.parked.values()))
        return self.resident

    # -- scoring (prompt logprobs) ------------------------------------------------------------------------

    def score(self, text: str, window: int, stride: int) -> list[float]:
        """The log-probability of each token of text but the first, given the up to window - 1 tokens
        before it: targets are taken stride at a time, each block with the window that ends at it; the
        windows are independent, so they run left-padded in batches of up to ``idle_prefill`` tokens.
        Only the scored positions go through the output layer (a full window's logits would be
        window x vocabulary floats)."""
        if not 1 <= stride < window:
            raise ValueError(f"score needs 1 <= stride < window, not stride={stride}, window={window}")
        ids = self.tokenizer.encode(text, add_special_tokens=True)
        blocks = [(max(0, min(s + stride, len(ids)) - window), s, min(s + stride, len(ids)))
                  for s in range(1, len(ids), stride)]
        out: list[float] = []
        rows = max(1, min(self.max_batch, self.idle_prefill // window))
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        with torch.inference_mode():
            for g in range(0, len(blocks), rows):
                out += self._score_group(ids, blocks[g : g + rows], decoder, head)
        return out

    def _score_group(self, ids: list[int], blocks: list[tuple[int, int, int]], decoder: Any,
                     head: Any) -> list[float]:
        width = max(e - a for a, _, e in blocks)
        rows = [[self.pad_id] * (width - (e - a)) + ids[a:e] for a, _, e in blocks]
        mask = torch.tensor([[0] * (width - (e - a)) + [1] * (e - a) for a, _, e in blocks])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = decoder(input_ids=torch.tensor(rows), attention_mask=mask, position_ids=positions,
                         use_cache=False).last_hidden_state
        out: list[float] = []
        for i, (_, s, e) in enumerate(blocks):
            # Invariant: the logits at window column j predict the token at column j + 1, so the m
            # targets ids[s:e] are predicted by the m columns before the window's last one.
            m = e - s
            logits = head(hidden[i, width - 1 - m : width - 1]).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            out += logprobs.gather(1, torch.tensor(ids[s:e]).unsqueeze(1)).squeeze(1).tolist()
        return out

    # -- bookkeeping -----------------------------------------------------------------------------------

    def abort(self, seq: Sequence) -> None:
        state = seq.engine_state
        if not isinstance(state, SeqState):
            return
        i = self.batch.index(seq)
        if i >= 0:
            self.batch.keep([j for j in range(len(self.batch)) if j != i])
        self.parked.pop(seq.sid, None)
        state.kv, state.kv_tokens, state.in_batch, state.prefilling, state.done = None, 0, False, False, True
        self._release_prefix(state)
        self._resident()

    def capacity(self) -> Capacity:
        # Invariant: no torch op here. The kernel asks from its event loop, and a torch op on a
        # second thread can start a second OpenMP team (engine/worker.py); the count is refreshed
        # on the model thread by every step and abort.
        return Capacity(self.max_batch, self.max_resident_tokens, self.resident, replace(self.prefix.stats))

    def cached_tokens(self, seq: Sequence) -> int:
        # Invariant: like capacity(), no torch op and no change to the cache (a hint, not a reference).
        return 0 if seq.output_ids else self.prefix.cached(seq.prompt_ids)

    def close(self) -> None:
        self.batch = BatchKV()
        self.parked.clear()
        self.prefix.clear()
        self.resident = 0


def _failed(seq: Sequence, exc: Exception) -> TokenEvent:
    """The last event of a sequence whose own per-row work raised; the rest of the batch goes on."""
    seq.finish_reason = "error"
    seq.engine_state.done = True  # its prefix blocks are released by abort, which the kernel calls
    return TokenEvent(seq, -1, "", "error", exc)


def _left_padded(prefixes: list[KV | None], width: int) -> KV:
    """The prefixes (batch of one each, or None) as one cache of width columns, each right-aligned
    after zeros (kvbatch's rule for padding)."""
    some = next(kv for kv in prefixes if kv is not None)
    out: KV = []
    for layer, (k0, _) in enumerate(some):
        _, h, _, d = k0.shape
        keys, values = k0.new_zeros(len(prefixes), h, width, d), k0.new_zeros(len(prefixes), h, width, d)
        for i, kv in enumerate(prefixes):
            if kv is not None:
                n = kv[layer][0].shape[2]
                keys[i, :, width - n :] = kv[layer][0][0]
                values[i, :, width - n :] = kv[layer][1][0]
        out.append((keys, values))
    return out


def _columns(x: torch.Tensor, row: int, p: int, n: int, start: int) -> torch.Tensor:
    """Row's real columns of a group prefill's cache: its n prefix columns before p, then from start."""
    own = x[row : row + 1, :, start:]
    return own if n == 0 else torch.cat([x[row : row + 1, :, p - n : p], own], dim=2)


def _prefill_target(seq: Sequence) -> list[int]:
    """Tokens whose KV a (re)prefill must compute: the prompt, or everything but the last token."""
    return seq.prompt_ids if not seq.output_ids else (seq.prompt_ids + seq.output_ids)[:-1]


def _gguf_source(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """The GGUF file a registry name or .gguf path was converted from (None for anything else, and for
    a model with a LoRA adapter merged in: the file's blocks are the base's, not the merged weights)."""
    from llmasos.engine import models

    spec = models.resolve(name_or_path)
    if spec.adapter is not None:
        return None
    return spec.source if spec.kind in ("registry", "gguf") and spec.source.endswith(".gguf") else None


def _droppable(messages: list[Message]) -> int | None:
    """Index of the oldest message truncation may drop (never a system message nor the last one)."""
    for i, m in enumerate(messages[:-1]):
        if m.get("role") != "system":
            return i
    return None


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return frozenset(ids)


def default_engine(**kw: Any) -> HFEngine:
    """The embedded default model (``smollm2-135m``) on CPU in fp32; converts it on first use."""
    return HFEngine.from_pretrained(None, **kw)


__all__ = ["HFEngine", "SamplingParams", "SeqState", "default_engine"]
