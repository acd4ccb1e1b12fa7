"""qa: question answering over your documents, with retrieval from long-term memory and citations.

``qa add [TEXT...] [--source=NAME]`` cuts a document (the words, or stdin: ``llmasos run qa add
--source=manual.txt < manual.txt``) into passages (a paragraph each, long ones cut) and keeps each as a
note tagged with its source; ``qa ask QUESTION...``
searches the notes, puts the best ``k`` passages in the prompt, numbered, and the model answers citing
them (``[1]``); the sources are listed after the answer. A question nothing matches is answered without
the model.

Syscalls: ``read`` (a document on stdin), ``remember`` and ``search`` (the passages, in the namespace
``qa``), ``generate`` (streamed), ``write``.

Rule: the manifest asks for the namespace ``qa`` and nothing else (no tools, no spawning); the documents
persist there across processes and kernel restarts, shared by every ``qa`` process.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from llmasos.apps.app import App
from llmasos.apps.errors import NoInput, TooMuchInput
from llmasos.apps.summarize import chunks
from llmasos.syscalls.sys import Sys

NS = "qa"
PASSAGE_CHARS = 600  # a passage: short enough that k of them fit a small model's prompt
MAX_CHARS = 1_000_000  # characters one `qa add` takes
MAX_TERMS = 24  # words of a question searched for (KernelConfig.max_search_terms is 32 by default)
STOP = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has", "have", "how", "i", "in", "is", "it", "its", "of", "on", "or", "the", "this", "that", "to", "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your"])
# The prompt that did best with SmolLM2-135M of nine measured (longer instructions about citing made it
# talk about the question instead of answering it); the app lists the sources itself.
SYSTEM = "Answer from the numbered passages."

app = App("qa", "Answer questions over your documents: qa add < FILE, then qa ask QUESTION", memory=[NS])

Count = Annotated[int, Field(ge=1, le=20)]
Tokens = Annotated[int, Field(ge=1, le=2048)]
Source = Annotated[str, Field(min_length=1, max_length=200)]


@app.main
async def main(sys: Sys, command: Literal["add", "ask"], *words: str, source: Source = "stdin",
               k: Count = 2, max_tokens: Tokens = 96) -> dict:
    text = " ".join(words)
    if command == "add":
        if not words:
            text = await _read_all(sys)
        passages = [p for para in re.split(r"\n\s*\n", text) for p in chunks(para, PASSAGE_CHARS)]
        if not passages:
            raise NoInput("qa: nothing to add; give the document as words or on stdin: qa add < FILE")
        ids = [await sys.memory.remember(p, tags=[source], namespace=NS) for p in passages]
        await sys.write(f"[qa] kept {len(ids)} passages of {source}\n")
        return {"source": source, "passages": ids}
    if not text.strip():
        raise NoInput("qa: ask what? give the question: qa ask QUESTION")
    return await ask(sys, text.strip(), k=k, max_tokens=max_tokens)


async def ask(sys: Sys, question: str, *, k: int = 2, max_tokens: int = 96) -> dict:
    """Answer question from the k passages that best match it; {answer, sources}."""
    found = await sys.memory.search(search_terms(question), k=k, namespace=NS)
    if not found:
        await sys.write("I found nothing about that in the documents; add some with: qa add < FILE\n")
        return {"answer": None, "sources": []}
    numbered = "\n".join(f"[{i}] {n.text}" for i, n in enumerate(found, 1))
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{numbered}\n\nQuestion: {question}\nAnswer in one sentence."}]
    reply = sys.generate(messages=messages, max_tokens=max_tokens, stream=True)
    async for piece in reply:
        await sys.write(piece)
    sources = [{"n": i, "note": n.id, "source": n.tags[0] if n.tags else ""} for i, n in enumerate(found, 1)]
    await sys.write("\nSources: " + "; ".join(f"[{s['n']}] {s['source']} (note {s['note']})" for s in sources)
                    + "\n")
    return {"answer": reply.completion.text.strip(), "sources": sources}


def search_terms(question: str) -> str:
    """The question's words worth searching for: no stop words, each once, at most MAX_TERMS."""
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", question)))
    kept = [w for w in words if w not in STOP] or words
    return " ".join(kept[:MAX_TERMS])


async def _read_all(sys: Sys) -> str:
    lines: list[str] = []
    size = 0
    while (line := await sys.read()) is not None:
        size += len(line)
        if size > MAX_CHARS:
            raise TooMuchInput(f"qa: a document of more than {MAX_CHARS:,} characters is more than one "
                               "qa add takes; add it in parts")
        lines.append(line)
    return "".join(lines)
