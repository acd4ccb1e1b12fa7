"""The prefix cache: the KV of prompt prefixes that several sequences share, prefilled once ("shared pages").

Rule: the cache is a chain of hashed blocks of ``block`` tokens. A block's key is its parent block's
number and its own tokens (a block's number is never reused, so the key names its whole prefix and
hashes in O(block)); two prompts share a block exactly when they agree on every token up to its end,
and a block's keys and values are those its tokens have after exactly that prefix, at those positions.
Invariants:
- Blocks are immutable once inserted (their tensors are private copies), and only full blocks are cached.
- A match never covers a prompt's last token: the sequence always prefills at least one token itself, so
  its first token comes from its own logits.
- A sequence never writes into a block: the engine copies the matched prefix into the sequence's own
  cache (the decode step reads each row's KV contiguously), so what is shared is the prefill compute and
  the single resident copy held here, not the decoding rows' memory.
- Each block counts the live sequences that matched or inserted it (``refs``); only blocks with no
  references and no children are evicted, least recently used first, when the cache holds more than
  ``max_tokens``; a block that would not fit is not inserted. ``max_tokens=0`` (or less than one
  block) turns the cache off.
- The cache is memory only and belongs to one engine, i.e. one model with its weights (an adapter is
  merged at load, so an adapted model is another engine with its own cache): a crashed kernel starts
  with an empty cache and recovery re-prefills.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import torch

from llmasos.engine.base import PrefixStats

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [1, kv_heads, tokens, head_dim] (as kvbatch.KV)

Key = tuple[int, tuple[int, ...]]  # (the parent block's number, or -1 for a first block; its tokens)


@dataclass(slots=True, eq=False)
class Block:
    """One cached block: its tokens' keys and values, given every token before it."""

    number: int  # unique in its cache, never reused
    key: Key = field(repr=False)
    parent: Block | None = field(repr=False)
    kv: KV = field(repr=False)
    refs: int = 0  # live sequences holding it
    children: int = 0  # cached blocks that extend it


@dataclass(slots=True)
class PrefixCache:
    """Hashed, refcounted, immutable KV blocks of prompt prefixes, evicted LRU under a token budget."""

    max_tokens: int
    block: int = 16
    _blocks: OrderedDict[Key, Block] = field(default_factory=OrderedDict)  # least recently used first
    stats: PrefixStats = field(default_factory=PrefixStats)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "block" else 0):
                raise ValueError(f"prefix cache {name} must be an integer >= {1 if name == 'block' else 0}, "
                                 f"not {value!r}")

    @property
    def enabled(self) -> bool:
        return self.max_tokens >= self.block

    @property
    def tokens(self) -> int:
        return len(self._blocks) * self.block

    def match(self, ids: Seq[int]) -> list[Block]:
        """The cached blocks that start ids, longest first-to-last chain, never covering its last token.
        Touches them (most recently used); takes no reference."""
        out = self._chain(ids)
        for node in out:
            self._blocks.move_to_end(node.key)
        return out

    def cached(self, ids: Seq[int]) -> int:
        """How many tokens of ids match() would cover now, without touching the blocks' recency."""
        return len(self._chain(ids)) * self.block

    def _chain(self, ids: Seq[int]) -> list[Block]:
        out: list[Block] = []
        if not self.enabled:
            return out
        parent: Block | None = None
        for start in range(0, len(ids) - 1 - self.block + 1, self.block):
            node = self._blocks.get((parent.number if parent else -1, tuple(ids[start : start + self.block])))
            if node is None:
                break
            out.append(node)
            parent = node
        return out

    def acquire(self, blocks: list[Block], prompt_tokens: int) -> None:
        """Reference blocks for a sequence whose prompt (prompt_tokens long) starts with them, and count
        the lookup for the hit rate."""
        self.stats.lookups += prompt_tokens
        self.stats.hits += len(blocks) * self.block
        self.hold(blocks)

    def hold(self, blocks: list[Block]) -> None:
        """Reference blocks (each once), so that they are not evicted until released."""
        for node in blocks:
            node.refs += 1

    def copy(self, blocks: list[Block]) -> KV | None:
        """A private copy of the blocks' KV, one after the other (None when blocks is empty)."""
        if not blocks:
            return None
        return [(torch.cat([b.kv[i][0] for b in blocks], dim=2), torch.cat([b.kv[i][1] for b in blocks], dim=2))
                for i in range(len(blocks[0].kv))]

    def insert(self, ids: Seq[int], kv: KV, held: list[Block]) -> list[Block]:
        """Cache the full blocks of ids whose KV is the first columns of kv (batch of one, unpadded),
        after held (blocks the sequence already references, a prefix of ids' chain); return the chain the
        sequence now references (held and the new or found blocks, each referenced once). Blocks that
        do not fit the budget after evicting what may be evicted are left out."""
        if not self.enabled:
            return held
        chain = list(held)
        parent = chain[-1] if chain else None
        tokens = min(len(ids), kv[0][0].shape[2])
        for start in range(len(chain) * self.block, tokens - self.block + 1, self.block):
            key = (parent.number if parent else -1, tuple(ids[start : start + self.block]))
            node = self._blocks.get(key)
            if node is None:
                if not self._make_room(self.block):
                    break
                own = [(k[:, :, start : start + self.block].clone(), v[:, :, start : start + self.block].clone())
                       for k, v in kv]
                node = Block(next(self._numbers), key, parent, own)
                self._blocks[key] = node
                if parent is not None:
                    parent.children += 1
            else:
                self._blocks.move_to_end(key)
            node.refs += 1
            chain.append(node)
            parent = node
        self._count()
        return chain

    def release(self, blocks: list[Block]) -> None:
        """A sequence that held blocks is done with them (finished, aborted, or its cache dropped)."""
        for node in blocks:
            node.refs -= 1
            assert node.refs >= 0, "prefix block released more often than acquired"
        self._count()

    def shrink(self, excess: int) -> int:
        """Evict unreferenced blocks (LRU, leaves first) until excess tokens are freed or none is left;
        return the tokens freed (the engine's resident limit asks this before dropping parked caches)."""
        freed = 0
        while freed < excess and self._evict_one():
            freed += self.block
        self._count()
        return freed

    def clear(self) -> None:
        self._blocks.clear()
        self._count()

    def _make_room(self, tokens: int) -> bool:
        while self.tokens + tokens > self.max_tokens:
            if not self._evict_one():
                return False
        return True

    def _evict_one(self) -> bool:
        for key, node in self._blocks.items():  # least recently used first
            if node.refs == 0 and node.children == 0:
                del self._blocks[key]
                if node.parent is not None:
                    node.parent.children -= 1
                self.stats.evicted += 1
                return True
        return False

    def _count(self) -> None:
        self.stats.blocks = len(self._blocks)
        self.stats.tokens = self.tokens
        self.stats.shared = sum(1 for b in self._blocks.values() if b.refs >= 2)


def shared_prefix(targets: list[list[int]], block: int) -> list[int]:
    """The prefix of whole blocks that saves the most prefill if computed once for targets (prompts
    arriving together): shared by k >= 2 of them, each longer than it, saving (k - 1) x its length
    tokens; [] when no two share a block."""
    best: list[int] = []
    saved = 0
    ordered = sorted(targets)
    for a, b in itertools.pairwise(ordered):  # the longest shared prefixes are those of sorted neighbours
        common = os.path.commonprefix([a, b])[: min(len(a), len(b)) - 1]
        common = common[: len(common) - len(common) % block]
        k = sum(1 for t in targets if len(t) > len(common) and t[: len(common)] == common)
        if (k - 1) * len(common) > saved:
            best, saved = common, (k - 1) * len(common)
    return best
