"""Handlers for the memory syscalls: key-value, long-term notes, and the persistent context (chat).

Rule: handlers are thin. The namespace capability was checked at the chokepoint (caps.check reads the
call's ``namespace``); here None becomes the caller's own namespace, the arguments are checked against
their types and the size limits of ``KernelConfig`` (``InvalidArguments`` names the limit and the size,
so no bad argument reaches the database and no database message reaches the caller), and the memory
manager does the rest. Every write is committed before the handler returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.kernel.paging import chat, own_namespace
from llmasos.memory.keys import current_idempotency_key
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import InvalidArguments, NotSupported
from llmasos.syscalls.types import Completion, Note

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process
    from llmasos.memory.store import Store


def _store(k: Kernel) -> Store:
    memory = k.memory
    if memory is None:
        raise NotSupported("this kernel runs without a memory manager; boot it with a database")
    return memory.store


def _ns(p: Process, namespace: str | None) -> str:
    return own_namespace(p.pid) if namespace is None else namespace


def _key(k: Kernel, call: Any) -> str:
    key = call.key
    if not isinstance(key, str) or not key:
        raise InvalidArguments(f"a memory key is a non-empty string, not {_short(key)}")
    return _sized("a memory key", key, k.config.max_key_size, "max_key_size")


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArguments(f"{what} is a string, not {type(value).__name__}")
    return value


def _sized(what: str, text: str, limit: int, field: str) -> str:
    if len(text) > limit:
        raise InvalidArguments(f"{what} of {len(text):,} characters is over the limit of {limit:,} "
                               f"(KernelConfig.{field}); use a shorter one")
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def sys_mem_get(k: Kernel, p: Process, call: c.MemGet) -> Any:
    found, value = await _store(k).kv_get(_ns(p, call.namespace), _key(k, call))
    return value if found else call.default


async def sys_mem_set(k: Kernel, p: Process, call: c.MemSet) -> None:
    await _store(k).kv_set(_ns(p, call.namespace), _key(k, call), call.value, max_size=k.config.max_value_size)


async def sys_mem_delete(k: Kernel, p: Process, call: c.MemDelete) -> bool:
    return await _store(k).kv_delete(_ns(p, call.namespace), _key(k, call))


async def sys_mem_keys(k: Kernel, p: Process, call: c.MemKeys) -> list[str]:
    prefix = _sized("a key prefix", _text("a key prefix", call.prefix), k.config.max_key_size, "max_key_size")
    return await _store(k).kv_keys(_ns(p, call.namespace), prefix)


async def sys_remember(k: Kernel, p: Process, call: c.Remember) -> int:
    text = _sized("a note", _text("a note", call.text), k.config.max_note_size, "max_note_size")
    if not text.strip():
        raise InvalidArguments("remember needs some text")
    if not isinstance(call.tags, (str, list, tuple)):
        raise InvalidArguments(f"a note's tags are a list of strings, not {type(call.tags).__name__}")
    tags = (call.tags,) if isinstance(call.tags, str) else tuple(str(t) for t in call.tags)
    _sized("a note's tags", " ".join(tags), k.config.max_note_size, "max_note_size")
    return await _store(k).remember(_ns(p, call.namespace), text, tags, current_idempotency_key())


async def sys_search(k: Kernel, p: Process, call: c.Search) -> list[Note]:
    most = k.config.max_search_results
    if not isinstance(call.k, int) or isinstance(call.k, bool) or not 1 <= call.k <= most:
        raise InvalidArguments(f"search's k is a whole number from 1 to {most} "
                               f"(KernelConfig.max_search_results), not {_short(call.k)}")
    query = _sized("a search query", _text("a search query", call.query), k.config.max_note_size, "max_note_size")
    return await _store(k).search(_ns(p, call.namespace), query, call.k, max_terms=k.config.max_search_terms)


async def sys_chat(k: Kernel, p: Process, call: c.Chat) -> Completion:
    await k.models.ensure(call.model if call.model is not None else p.model, k.config)  # a library model: load it
    return await chat(k, p, call, _store(k), current_idempotency_key())


async def sys_context(k: Kernel, p: Process, call: c.Context) -> list[dict[str, Any]]:
    rows = await _store(k).context(p.pid)
    return [{"role": r.role, "content": r.content, "tokens": r.tokens, "kind": r.kind} for r in rows]


HANDLERS = {
    c.MemGet: sys_mem_get,
    c.MemSet: sys_mem_set,
    c.MemDelete: sys_mem_delete,
    c.MemKeys: sys_mem_keys,
    c.Remember: sys_remember,
    c.Search: sys_search,
    c.Chat: sys_chat,
    c.Context: sys_context,
}
