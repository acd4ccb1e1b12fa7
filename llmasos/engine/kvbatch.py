"""The batched KV cache of the sequences decoding together, stored left-padded in one DynamicCache.

Rule: row i of every layer holds the keys and values of ``rows[i]``, right-aligned: its first ``pad[i]``
columns are zeros masked out by ``mask``. Rows join (``merge``), leave (``keep``) and are taken out
whole (``extract``) between forward steps; the columns that are padding in every row are trimmed so a
long sequence that finished costs nothing afterwards.

Each layer is a ``SlackLayer``: a decode step writes its new column into spare room at the end of the
layer's buffer instead of concatenating a new copy of the whole cache (transformers' ``DynamicLayer``
copies every key and value once per token; at 32 rows that copy cost as much as the attention).

The cache's dtype (``KV_DTYPES``: fp32, or bf16 at half the bytes) is one per engine: every key and
value is rounded to it once, when stored, and every attention - the transformers forward's and the
native step's - reads the stored values (widened to fp32 for the arithmetic), so a sequence's result
does not depend on which path or which prefill chunk computed its columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar, overload

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

T = TypeVar("T")

KV = list[tuple[torch.Tensor, torch.Tensor]]
"""Keys and values per layer, each [rows, kv_heads, tokens, head_dim]."""

KV_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""The KV cache's element types by name (``kv_dtype=``), as the native step reads them."""


class KVDtypeError(ValueError):
    """A KV cache dtype that is not one of ``KV_DTYPES``."""


def check_kv_dtype(name: Any) -> str:
    """The KV cache dtype's name, or KVDtypeError saying which ones exist."""
    if not isinstance(name, str) or name not in KV_DTYPES:
        raise KVDtypeError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}, not {name!r}"[:200])
    return name


class SlackLayer(DynamicLayer):
    """A DynamicLayer that appends into spare columns of a buffer it owns, growing it by a quarter.

    ``keys`` / ``values`` read as plain tensors (views of the buffer), so code that replaces them from
    outside (row selection, trimming, merging) keeps working: a replaced tensor is adopted into a
    fresh buffer at the next append. The first update keeps the prefill's own tensors, uncopied.
    Columns appended with ``extend`` join the views only when ``keys`` / ``values`` are next read: a
    native decode step appends to every layer and nobody reads them in between, and building two
    views per layer per token cost ~0.25 ms a step (30 layers).
    ``store``: the dtype held (None: that of the first tensors given). ``update`` converts what it is
    given to the held dtype and returns the held keys and values in the given dtype, so attention
    always reads the stored (rounded) values.
    """

    SLACK = 64  # spare columns at least, per growth

    _keys: torch.Tensor | None = None
    _values: torch.Tensor | None = None
    _kview: torch.Tensor | None = None  # the view this layer last made of its key buffer
    _pending = 0  # columns written into the buffers beyond _keys / _values, not yet in the views
    _kbuf: torch.Tensor
    _vbuf: torch.Tensor

    def __init__(self, store: torch.dtype | None = None) -> None:
        super().__init__()
        self.store = store

    keys = property(lambda self: self._folded("_keys"), lambda self, v: self._replace("_keys", v))
    values = property(lambda self: self._folded("_values"), lambda self, v: self._replace("_values", v))

    def _folded(self, name: str) -> torch.Tensor | None:
        if self._pending:
            self._fold()
        return getattr(self, name)

    def _replace(self, name: str, value: torch.Tensor | None) -> None:
        if self._pending:  # pending columns join first, so keys and values never disagree
            self._fold()
        setattr(self, name, value)

    def _fold(self) -> None:
        assert self._keys is not None
        n = self._keys.shape[-2] + self._pending
        self._pending = 0
        self._keys = self._kview = self._kbuf.narrow(2, 0, n)  # narrow: ~2x cheaper than [:, :, :n]
        self._values = self._vbuf.narrow(2, 0, n)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        given = key_states.dtype
        if self.keys is None or self.keys.numel() == 0:
            self.keys, self.values = key_states.to(self.store or given), value_states.to(self.store or given)
        else:
            t = key_states.shape[-2]
            n = self.reserve(t)
            self._kbuf[:, :, n : n + t].copy_(key_states)  # (copy_ rounds to the buffer's dtype)
            self._vbuf[:, :, n : n + t].copy_(value_states)
            self.extend(t)
        return self.keys.to(given), self.values.to(given)

    def reserve(self, t: int) -> int:
        """Make room for t more columns after the held ones, in buffers that start at column 0;
        return the number of columns held (where the next column goes)."""
        assert self._keys is not None
        # Pending columns exist only while _keys is this layer's own view (_replace folds them first),
        # so this counts them without building a view.
        n = self._keys.shape[-2] + self._pending
        if self._keys is not self._kview or n + t > self._kbuf.shape[-2]:
            held_k, held_v = self.keys, self.values  # (folds pending columns in)
            cap = n + t + max(self.SLACK, n // 4)
            self._kbuf = _with_room(held_k, cap)
            self._vbuf = _with_room(held_v, cap)
            self._keys = self._kview = self._kbuf.narrow(2, 0, n)
            self._values = self._vbuf.narrow(2, 0, n)
        return n

    def extend(self, t: int) -> None:
        """The next t columns of the buffers (written by the caller) become part of the cache."""
        self._pending += t

    def appending(self, kbuf: torch.Tensor) -> bool:
        """Whether the next column goes into kbuf, this layer's key buffer, with nothing to adopt."""
        return self._kbuf is kbuf and self._keys is self._kview

    def buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole key and value buffers (after ``reserve``): [rows, kv_heads, capacity, head_dim]."""
        return self._kbuf, self._vbuf


class LayerBuffers(Sequence[torch.Tensor]):
    """Each layer's whole key (or value) buffer, as the native step takes them: an immutable sequence
    that can be weakly referenced (tuples cannot), so the native step remembers the buffers it has
    checked without keeping them alive, and checks again when new LayerBuffers come."""

    __slots__ = ("__weakref__", "_items")

    def __init__(self, items: Iterable[torch.Tensor]) -> None:
        self._items = tuple(items)

    @overload
    def __getitem__(self, i: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[torch.Tensor, ...]: ...
    def __getitem__(self, i: int | slice) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self._items)


def _with_room(x: torch.Tensor, cap: int) -> torch.Tensor:
    b, h, n, d = x.shape
    buf = x.new_empty(b, h, cap, d)
    buf[:, :, :n].copy_(x)
    return buf


def new_cache(kv: KV | None = None, dtype: torch.dtype | None = None) -> DynamicCache:
    """A cache of SlackLayers, empty or holding kv (batch-first, unpadded or left-padded), storing dtype
    (None: kv's own, or for an empty cache the model's)."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = partial(SlackLayer, dtype)  # empty: layers appear as the model writes
    if kv is not None:
        cache.layers = [SlackLayer(dtype) for _ in kv]
        for layer, (k, v) in zip(cache.layers, kv, strict=True):
            layer.update(k, v)
    return cache


def cache_kv(cache: DynamicCache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


class BatchKV:
    """The rows (sequences) of the decode batch and their left-padded cache."""

    def __init__(self) -> None:
        self.rows: list[Any] = []  # the Sequence in each row
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)  # [rows, columns]: 1 for real tokens
        self._buffers: tuple[LayerBuffers, LayerBuffers, int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    # Invariant: a native decode step makes no torch call here (each costs ~0.1 ms after the weights
    # streamed through the caches): its column joins the mask when the mask is next read, and the
    # width and lengths are kept as plain ints.
    @property
    def mask(self) -> torch.Tensor:
        if self._appended:
            self._mask = F.pad(self._mask, (0, self._appended), value=1)
            self._appended = 0
        return self._mask

    @mask.setter
    def mask(self, mask: torch.Tensor) -> None:
        self._mask, self._appended, self._width, self._lengths = mask, 0, mask.shape[1], None

    @property
    def width(self) -> int:
        return self._width

    def lengths(self) -> list[int]:
        """Real (unpadded) tokens held per row."""
        if self._lengths is None:
            self._lengths = self.mask.sum(dim=1).tolist()
        return list(self._lengths)

    def resident_tokens(self) -> int:
        return sum(self.lengths())

    def index(self, seq: Any) -> int:
        for i, row in enumerate(self.rows):
            if row is seq:
                return i
        return -1

    # -- rows leave ------------------------------------------------------------------------------

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows (in this order), then trim all-padding columns."""
        if len(indices) == len(self.rows) and indices == list(range(len(self.rows))):
            return
        if not indices:
            self.__init__()
            return
        assert self.cache is not None
        idx = torch.tensor(indices, dtype=torch.long)
        self.rows = [self.rows[i] for i in indices]
        self.mask = self.mask[idx]
        for layer in self.cache.layers:
            layer.keys = layer.keys[idx]
            layer.values = layer.values[idx]
        self._trim()

    def _trim(self) -> None:
        assert self.cache is not None
        real = self.mask.any(dim=0)
        first = int(torch.nonzero(real)[0]) if bool(real.any()) else self.width
        if first == 0:
            return
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[:, :, first:]
            layer.values = layer.values[:, :, first:]

    def extract(self, i: int) -> KV:
        """Copy row i's real keys and values out (batch of one, no padding); the row stays."""
        assert self.cache is not None
        pad = self.width - int(self.mask[i].sum())
        return [
            (layer.keys[i : i + 1, :, pad:].clone(), layer.values[i : i + 1, :, pad:].clone())
            for layer in self.cache.layers
        ]

    def decode_in_place(self, write: Callable[[LayerBuffers, LayerBuffers, int], T]) -> T:
        """Append one column to every row, written by ``write(keys, values, column)``; return its result.

        keys / values: per layer, the whole contiguous buffer [rows, kv_heads, capacity, head_dim]
        (capacity > column); write fills column ``column`` of every row (native decode does)."""
        assert self.cache is not None
        layers = self.cache.layers
        column = self.width
        held = self._buffers
        # The same buffers as last step while every layer still appends to its own (none was
        # replaced from outside) and has room; otherwise reserve again (~0.15 ms for 30 layers).
        if held is None or column >= held[2] or len(held[0]) != len(layers) \
                or not all(layer.appending(k) for layer, k in zip(layers, held[0])):
            if {layer.reserve(1) for layer in layers} != {column}:
                raise RuntimeError("batch cache layers disagree with the mask on the number of columns")
            bufs = [layer.buffers() for layer in layers]
            keys, values = LayerBuffers(k for k, _ in bufs), LayerBuffers(v for _, v in bufs)
            held = self._buffers = (keys, values, min(k.shape[2] for k in keys))
        result = write(held[0], held[1], column)
        for layer in layers:
            layer.extend(1)
        self._appended += 1
        self._width += 1
        if self._lengths is not None:
            self._lengths = [n + 1 for n in self._lengths]
        return result

    # -- rows join --------------------------------------------------------------------------------

    def merge(self, seqs: list[Any], kv: KV, mask: torch.Tensor) -> None:
        """Append rows: kv is [len(seqs), H, T, D] per layer, left-padded as mask [len(seqs), T] says."""
        # Invariant: padded columns must hold zeros, not whatever a pad token produced, so that a
        # masked column can never turn an attention sum into NaN.
        keep = mask.bool()[:, None, :, None]
        kv = [(k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)) for k, v in kv]
        if self.cache is None or not self.rows:
            self.rows = list(seqs)
            self.mask = mask.clone()
            self.cache = new_cache(kv)
            self._trim()
            return
        width = max(self.width, mask.shape[1])
        old_pad, new_pad = width - self.width, width - mask.shape[1]
        self.mask = torch.cat([F.pad(self.mask, (old_pad, 0)), F.pad(mask, (new_pad, 0))], dim=0)
        for layer, (k, v) in zip(self.cache.layers, kv, strict=True):
            layer.keys = torch.cat(
                [F.pad(layer.keys, (0, 0, old_pad, 0)), F.pad(k, (0, 0, new_pad, 0))], dim=0
            )
            layer.values = torch.cat(
                [F.pad(layer.values, (0, 0, old_pad, 0)), F.pad(v, (0, 0, new_pad, 0))], dim=0
            )
        self.rows.extend(seqs)
        self._trim()

    def merge_one(self, seq: Any, kv: KV) -> None:
        """Append one sequence's unpadded cache (batch of one)."""
        tokens = kv[0][0].shape[2]
        self.merge([seq], kv, torch.ones(1, tokens, dtype=torch.long))
