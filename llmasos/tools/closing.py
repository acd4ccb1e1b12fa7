"""Closing within the budget: the token cost of finishing a partial tool call, and the path that does it.

Rule: a constrained tool call always closes before ``max_tokens``. The ``Closer`` computes, from any
state of the grammar's matcher, one concrete way to finish the call (its *closing path*: the forced
tokens, else the token that ends the current string, number, array or object soonest, else the cheapest
of the few allowed choices) and its length in tokens. ``ToolCallProcessor`` keeps the invariant
"closing cost <= tokens left": a token stays allowed only if the cost after it still fits the tokens
left after it, and the first token of the closing path always does (the path gets one token shorter
along itself). So no budget check has to estimate: costs are counted by running the matcher itself.
The same count, from the start, is the smallest budget a request may ask for (``min_call_tokens``).
"""

from __future__ import annotations

from typing import Any

# A JSON lexer state: (inside a string, the previous byte was a backslash inside it).
Lex = tuple[bool, bool]
START: Lex = (False, False)

IN_STRING = (b'"', b")", b"0", b"a", b" ")  # close the string; else balance a pattern's parentheses, fill
OUTSIDE = (b"}", b"]", b"0", b'"')  # close the object or array; else a minimal number, or a string
LOOKAHEAD = 48  # a choice among at most this many allowed tokens is costed one by one (names, enums)
NO_LIMIT = 4096


def advance(lex: Lex, data: bytes) -> Lex:
    """The lexer state after data."""
    inside, escaped = lex
    for ch in data:
        if escaped:
            escaped = False
        elif inside and ch == 0x5C:
            escaped = True
        elif ch == 0x22:
            inside = not inside
    return inside, escaped


class Closer:
    """Closing paths over one llguidance tokenizer."""

    def __init__(self, tok: Any) -> None:
        import llguidance.torch as llt

        self.tok = tok
        self.ids = {}
        for b in {*IN_STRING, *OUTSIDE}:
            ids = tok.tokenize_bytes(b)
            if len(ids) == 1:
                self.ids[b] = ids[0]
        self.eos = set(tok.eos_tokens) | {tok.eos_token}
        self.bitmask = llt.allocate_token_bitmask(1, tok.vocab_size)
        self._bytes: dict[int, bytes] = {}

    def token_bytes(self, t: int) -> bytes:
        b = self._bytes.get(t)
        if b is None:
            b = self._bytes[t] = self.tok.decode_bytes([t])
        return b

    def path(self, matcher: Any, lex: Lex, limit: int = NO_LIMIT, depth: int = 1) -> list[int] | None:
        """The tokens that finish the call from matcher's state (not changed), or None if that takes
        more than limit tokens. A state that already accepts (a finished call, or a plain answer under
        "auto") needs none. At a choice the forced tokens and the closing characters do not settle,
        each allowed token is costed by a path of depth - 1 (depth 0: the first one is taken)."""
        m = matcher.deep_copy()
        out: list[int] = []
        while not m.is_accepting():
            if len(out) >= limit or m.is_error() or m.is_stopped():
                return None
            t = self._next(m, lex, limit - len(out) - 1, depth)
            if t is None or not m.consume_token(t):
                return None
            out.append(t)
            lex = advance(lex, self.token_bytes(t))
        return out

    def _next(self, m: Any, lex: Lex, left: int, depth: int) -> int | None:
        forced = m.compute_ff_tokens()
        if forced:
            return int(forced[0])
        for b in IN_STRING if lex[0] else OUTSIDE:
            t = self.ids.get(b)
            if t is not None and m.validate_tokens([t]) == 1:
                return t
        allowed = self._allowed(m)
        if not allowed:
            return None
        if depth <= 0 or len(allowed) > LOOKAHEAD:
            return allowed[0]
        best, best_len = allowed[0], None
        for t in allowed:  # a choice (a tool's name, an enum member, a bool): the one that finishes soonest
            c = m.deep_copy()
            if not c.consume_token(t):
                continue
            rest = self.path(c, advance(lex, self.token_bytes(t)), left if best_len is None else best_len - 1,
                             depth - 1)
            if rest is not None and (best_len is None or len(rest) < best_len):
                best, best_len = t, len(rest)
        return best

    def _allowed(self, m: Any) -> list[int]:
        """The allowed tokens, those ending in a closing character first (``{}``, ``"]``)."""
        import llguidance.torch as llt
        import numpy as np

        llt.fill_next_token_bitmask(m, self.bitmask, 0)
        bits = np.unpackbits(self.bitmask[0].numpy().view(np.uint8), bitorder="little")
        ids = [int(t) for t in np.flatnonzero(bits) if int(t) not in self.eos]
        return sorted(ids, key=lambda t: not self.token_bytes(t).endswith((b"}", b"]", b'"')))


_paths: dict[tuple[int, str], list[int] | None] = {}


def start_path(tok: Any, grammar: str, closer: Closer | None = None) -> list[int] | None:
    """The closing path from the start of grammar (cached per tokenizer and grammar): its length is the
    least max_tokens a request with this grammar may ask for (None: the grammar does not compile, or
    no reply can finish)."""
    import llguidance

    key = (id(tok), grammar)
    if key not in _paths:
        m = llguidance.LLMatcher(tok, grammar)
        found = None if m.is_error() else (closer or Closer(tok)).path(m, START, depth=2)
        if len(_paths) > 256:
            _paths.clear()
        _paths[key] = found
    path = _paths[key]
    return None if path is None else list(path)
