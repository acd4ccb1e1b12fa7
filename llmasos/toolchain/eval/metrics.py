"""The scores: answer normalisation, exact match, contains, BLEU, numeric match, perplexity.

Rule: pure functions of predictions and references, no I/O and no model, so every number in a report
can be checked by hand. Normalisation follows SQuAD's (lower case, no punctuation, no articles, single
spaces); BLEU is sacrebleu's corpus BLEU (13a tokenizer, nothing downloaded), 0-100.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize(text: str) -> str:
    """SQuAD-style normal form: lower case, punctuation and articles removed, spaces collapsed."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, references: Iterable[str]) -> bool:
    """The normalised prediction equals one of the normalised references."""
    p = normalize(prediction)
    return any(p == normalize(r) for r in references)


def contains(prediction: str, references: Iterable[str]) -> bool:
    """One of the normalised references appears, as whole words, in the normalised prediction."""
    p = f" {normalize(prediction)} "
    return any(normalize(r) and f" {normalize(r)} " in p for r in references)


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu's corpus BLEU (0-100); items with fewer references repeat their first."""
    import sacrebleu

    if not predictions:
        return 0.0
    width = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


def last_number(text: str) -> float | None:
    """The last number written in text (1,234.5 reads as 1234.5), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def answer_matches(prediction: str, reference: str | int | float) -> bool:
    """An agent's final answer is right: numerically (the last number in it equals a numeric reference,
    to 1e-6 relative), else by exact match after normalisation."""
    ref = reference if isinstance(reference, (int, float)) else last_number(reference) \
        if _NUMBER.fullmatch(str(reference).strip()) else None
    if ref is not None:
        got = last_number(prediction)
        return got is not None and math.isclose(got, float(ref), rel_tol=1e-6, abs_tol=1e-9)
    return exact_match(prediction, [str(reference)])


def perplexity(logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-likelihood per token (inf for no tokens)."""
    if not logprobs:
        return math.inf
    return math.exp(-sum(logprobs) / len(logprobs))


def chunk_perplexities(logprobs: Sequence[float], size: int) -> list[float]:
    """The perplexity of each run of size consecutive tokens (the last run may be shorter)."""
    return [perplexity(logprobs[i : i + size]) for i in range(0, len(logprobs), size)]


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


__all__ = ["answer_matches", "bleu", "chunk_perplexities", "contains", "exact_match", "last_number", "mean",
           "normalize", "perplexity"]
