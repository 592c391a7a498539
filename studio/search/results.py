"""Typed search results and filters, shared by the Studio, the CLI and the UI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.images import ImageSource

SETTING_KEYS = ("seed", "cfg", "steps", "sampler", "width", "height")
MINE = ("generated", "user")  # the user's own images: made here, or ingested from another tool


@dataclass(frozen=True)
class Filters:
    """What a search may return. DiffusionDB's NSFW scores are 0..1; 2.0 means SD blurred the image."""

    nsfw: bool = False  # True: show NSFW results too
    # "diffusiondb" | "generated" | "user" | a prompt library's name, or several (MINE); None: all
    source: str | tuple[str, ...] | None = None
    threshold: float = 0.5

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else tuple(self.source or ())

    @property
    def passes_all(self) -> bool:
        """Nothing is hidden: a search can ask the store for exactly k."""
        return self.nsfw and not self.sources

    def where(self) -> dict[str, Any] | None:
        """The source filter as a Chroma `where` (used only where over-fetching would not do)."""
        s = self.sources
        return None if not s else {"source": s[0]} if len(s) == 1 else {"source": {"$in": list(s)}}

    def allows(self, meta: dict[str, Any], kind: str) -> bool:
        if self.sources and meta.get("source") not in self.sources:
            return False
        if self.nsfw:
            return True
        scores = [meta.get("prompt_nsfw")] + ([meta.get("image_nsfw")] if kind == "images" else [])
        # Unknown scores (tables without them) pass: the threshold only hides what was scored.
        return not any(isinstance(s, (int, float)) and s >= self.threshold for s in scores)


@dataclass
class Hit:
    """One search result; `settings` lists the seed/cfg/steps/sampler/size of the images behind it."""

    id: str
    prompt: str
    distance: float
    metadata: dict[str, Any]
    kind: str = "prompt"  # "prompt" | "image"
    settings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def file(self) -> str | None:
        return self.metadata.get("file")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"file": self.file}


@dataclass
class SearchResult:
    query: str
    target: str  # "prompts" | "images" | "similar" | "reverse"
    results: list[Hit]
    hidden: int = 0  # results the filters held back
    encoder: str | None = None  # a text query's: "clip", or "multilingual" (STUDIO_MULTILINGUAL_MODEL)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "target": self.target, "hidden": self.hidden, "encoder": self.encoder,
                "results": [h.to_dict() for h in self.results]}


def settings_of(meta: dict[str, Any]) -> dict[str, Any]:
    out = {k: meta[k] for k in SETTING_KEYS if meta.get(k) is not None}
    if "seed" not in out and meta.get("seed_text"):  # a seed past int64, kept as text (ingest.cells.exact_seed)
        out = {"seed": meta["seed_text"], **out}
    if "width" in out and "height" in out:
        out["size"] = f"{out['width']}x{out['height']}"
    return out


def label_of(image: ImageSource) -> str:
    return str(image) if isinstance(image, (str, Path)) else "uploaded image"
