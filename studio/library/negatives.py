"""Negative prompts from the neighbours: the negative terms that retrieved images carry, counted per neighbour."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from studio.library.styles import phrase_of

NEGATIVE_KEYS = ("negative_prompt", "negative")


@dataclass
class Negatives:
    """The common negative terms of the idea's neighbours: (term, neighbours using it), most used first."""

    terms: list[tuple[str, int]]
    neighbours: int  # neighbours looked at
    with_negative: int  # of them, those that carried a negative prompt
    examples: list[str] = field(default_factory=list)  # the neighbours' ids that had one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"terms": [{"term": t, "count": c} for t, c in self.terms]}


def terms_of(negative: str) -> list[str]:
    """A negative prompt's terms, each once (weights and brackets gone: "(worst quality:1.4)" -> "worst quality")."""
    out: list[str] = []
    for segment in negative.replace("\n", ",").split(","):
        term = phrase_of(segment)
        if term and term not in out:
            out.append(term)
    return out


def common_negatives(hits: Iterable[Any], top: int = 12, least: int = 1) -> Negatives:
    """Count each term once per neighbour (a Hit with a negative prompt in its metadata)."""
    counts: Counter[str] = Counter()
    seen, having, ids = 0, 0, []
    for hit in hits:
        seen += 1
        text = next((hit.metadata.get(k) for k in NEGATIVE_KEYS if hit.metadata.get(k)), None)
        if not isinstance(text, str) or not text.strip():
            continue
        having += 1
        ids.append(hit.id)
        counts.update(terms_of(text))
    terms = [(t, c) for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= least][:top]
    return Negatives(terms, seen, having, ids)


def add_negatives(current: str, terms: Sequence[str]) -> str:
    """The negative prompt with the terms appended, those it already has left out."""
    have = set(terms_of(current or ""))
    new = [t for t in terms if phrase_of(t) not in have]
    return ", ".join([p for p in [(current or "").strip().rstrip(","), *new] if p])
