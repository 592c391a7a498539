"""Same-seed comparison: the idea as typed, the best retrieved prompt and the rewrite, CLIP-scored."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from studio.search.results import MINE

VARIANTS = ("original", "retrieved", "rewritten")


@dataclass
class Variant:
    """One prompt to try: which kind it is, its text, and the record it came from."""

    name: str  # one of VARIANTS
    prompt: str
    parent: str | None = None


@dataclass
class CompareEntry:
    variant: str
    prompt: str
    result: Any  # GenerationResult, with .saved after the write-back
    score: float | None  # cosine similarity of the image's and the idea's CLIP vectors (higher: closer)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "prompt": self.prompt, "score": self.score, **self.result.to_dict()}


@dataclass
class CompareResult:
    """Three generations with one seed and the same settings, linked by `comparison_id`."""

    idea: str
    seed: int
    comparison_id: str
    entries: list[CompareEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def best(self) -> CompareEntry | None:
        scored = [e for e in self.entries if e.score is not None]
        return max(scored, key=lambda e: e.score) if scored else None  # type: ignore[arg-type,return-value]

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"idea": self.idea, "seed": self.seed, "comparison_id": self.comparison_id, "cancelled": self.cancelled,
                "best": best.variant if best else None, "notes": self.notes,
                "entries": [e.to_dict() for e in self.entries]}

    def describe(self) -> str:
        lines = [f"comparison {self.comparison_id}, seed {self.seed}: {self.idea}"]
        for e in self.entries:
            where = (e.result.saved[0].path if e.result.saved else None) or "(not saved)"
            score = "-" if e.score is None else f"{e.score:.3f}"
            lines.append(f"  {e.variant:9s} [{score}] {e.prompt}\n            {where}")
        if self.best:
            lines.append(f"closest to the idea (CLIP): {self.best.variant}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def new_comparison_id() -> str:
    return "c-" + uuid.uuid4().hex[:16]


def variants(idea: str, rewrite: Any) -> tuple[list[Variant], list[str]]:
    """The three prompts from a RewriteResult (`.retrieved[0].prompt`, `.candidates[0].text`), and notes
    on any that could not be had (an empty store retrieves nothing)."""
    out, notes = [Variant("original", idea)], []
    retrieved = list(getattr(rewrite, "retrieved", None) or [])
    # The closest prompt someone else wrote: not the user's own work (an earlier generation of this very
    # idea would compare the idea with itself), and not the idea again in other case or spacing.
    theirs = [h for h in retrieved if (h.prompt or "").strip() and h.metadata.get("source") not in MINE
              and _words(h.prompt) != _words(idea)]
    if theirs:
        out.append(Variant("retrieved", theirs[0].prompt, theirs[0].id))
    elif retrieved:
        notes.append("Every stored prompt close to this idea is your own work or the idea itself: no "
                     "'retrieved' image. Ingest DiffusionDB or a prompt library for a real comparison.")
    else:
        notes.append("No stored prompt was retrieved for this idea (is the store empty?): no 'retrieved' image.")
    candidates = list(getattr(rewrite, "candidates", None) or [])
    if candidates and (candidates[0].text or "").strip():
        out.append(Variant("rewritten", candidates[0].text, retrieved[0].id if retrieved else None))
    else:
        notes.append("The rewriter returned no text: no 'rewritten' image.")
    return out, notes


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())


def clip_score(image_vector: Any, idea_vector: Any) -> float:
    """Cosine similarity of an image to the idea text (the embedder's vectors are L2-normalised)."""
    return float(np.asarray(image_vector) @ np.asarray(idea_vector))


class Comparer:
    """Runs a comparison with the parts it is given: rewrite(idea) -> RewriteResult, generate(request,
    on_preview, cancel) -> GenerationResult, embedder() (scores), write(result, lineage, vectors) -> saved."""

    def __init__(self, rewrite: Callable[[str], Any], generate: Callable[..., Any], embedder: Callable[[], Any],
                 write: Callable[[Any, Any, Any], list[Any]]) -> None:
        self.rewrite = rewrite
        self.generate = generate
        self.embedder = embedder
        self.write = write

    def compare(self, idea: str, base: Any, *, on_preview: Callable[[str, Any], None] | None = None,
                cancel: Any = None) -> CompareResult:
        """The idea as typed, the best retrieved prompt and the rewritten prompt, generated with the seed
        and settings of `base` (a validated GenerationRequest, n=1), CLIP-scored against the idea."""
        from studio.library.writeback import Lineage

        rewritten = self.rewrite(idea)  # the LLM first; SDXL then makes room
        tried, notes = variants(idea, rewritten)
        out = CompareResult(idea, int(base.seed or 0), new_comparison_id(), notes=notes)
        retrieved_ids = [hit.id for hit in rewritten.retrieved]
        embedder = self.embedder()
        idea_vector = embedder.embed_texts([idea])[0]  # once; each image is embedded once, for score and store
        for v in tried:
            preview = (lambda p, name=v.name: on_preview(name, p)) if on_preview else None
            result = self.generate(replace(base, prompt=v.prompt), on_preview=preview, cancel=cancel)
            if result.cancelled:
                out.cancelled = True
                break
            vectors = embedder.embed_images(result.images[:1])
            score = clip_score(vectors[0], idea_vector)
            lineage = Lineage(idea=idea, retrieved_ids=retrieved_ids, llm_model=getattr(rewritten, "model", None),
                              parent=v.parent, comparison_id=out.comparison_id, variant=v.name, score=score)
            result.saved = self.write(result, lineage, vectors)
            out.entries.append(CompareEntry(v.name, v.prompt, result, score))
        return out
