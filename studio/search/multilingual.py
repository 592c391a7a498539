"""MultilingualEncoder: a query in any language -> a vector in the store's CLIP space, from a
sentence-transformers model distilled from that CLIP's text tower (for ViT-B/32:
sentence-transformers/clip-ViT-B-32-multilingual-v1); and which CLIP a model says it was distilled from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from studio.config import Settings

# Written beside a model we distil ourselves (tests/tiny_multilingual.py does): {"clip_model", "fingerprint"}.
ALIGNMENT_FILE = "clip_alignment.json"
# Published models and the CLIP each was distilled from (their model cards say so).
KNOWN = {"clip-ViT-B-32-multilingual-v1": "openai/clip-vit-base-patch32"}


@dataclass(frozen=True)
class Alignment:
    """Which CLIP a multilingual encoder's vectors belong to, and who said so."""

    clip_model: str | None  # a name or path; compared by its last part, as store collection names are
    fingerprint: str | None  # studio.search.embed.fingerprint of that CLIP, when known: it settles the question
    said_by: str  # "STUDIO_MULTILINGUAL_CLIP", the alignment file, "the model's name", or "nothing"


def alignment_of(path: Path | None, settings: Settings) -> Alignment:
    """The setting first (the user knows best), then the folder's clip_alignment.json, then KNOWN."""
    if settings.multilingual_clip:
        return Alignment(settings.multilingual_clip, None, "STUDIO_MULTILINGUAL_CLIP")
    if path is not None and (path / ALIGNMENT_FILE).is_file():
        try:
            said = json.loads((path / ALIGNMENT_FILE).read_text(encoding="utf-8"))
            return Alignment(said.get("clip_model"), said.get("fingerprint"), str(path / ALIGNMENT_FILE))
        except (OSError, ValueError, AttributeError):
            pass  # unreadable: as if absent, so the check below asks the user to say it
    for name in (settings.multilingual_model, path.name if path is not None else ""):
        known = KNOWN.get(Path(name.rstrip("/\\")).name) if name else None
        if known:
            return Alignment(known, None, "the model's name")
    return Alignment(None, None, "nothing")


class MultilingualEncoder:
    """Query vectors from a SentenceTransformer passed in (tests pass a tiny distilled one), unit length
    like ClipEmbedder's, so that they compare with the stored CLIP vectors as they are."""

    def __init__(self, model: Any, name: str, alignment: Alignment, device: str = "cpu") -> None:
        self.model = model
        self.name = name
        self.alignment = alignment
        self.device = device
        self.dim = int(model.get_embedding_dimension())

    @classmethod
    def load(cls, settings: Settings) -> "MultilingualEncoder":
        """From STUDIO_MULTILINGUAL_MODEL (a folder, models/<name>, or a hub id fetched once when online);
        raises ModelMissingError that says what to do."""
        from studio.errors import ModelMissingError
        from studio.search.embed import pick_device
        from studio.weights import ensure

        loc = ensure("multilingual", settings)
        if loc.problem:
            raise ModelMissingError(loc.problem[:1].upper() + loc.problem[1:] + ".")
        device = pick_device(settings.device)
        try:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(loc.path), device=device, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelMissingError(
                f"The multilingual model folder {loc.path} could not be loaded as a sentence-transformers model "
                f"({type(exc).__name__}: {str(exc)[:200]}). Fetch a complete one with `python -m studio models "
                "--download multilingual`, or unset STUDIO_MULTILINGUAL_MODEL.") from exc
        if device == "cuda":
            model.half()  # as CLIP runs there: half the memory, and query vectors agree to ~0.999
        return cls(model, settings.multilingual_model, alignment_of(Path(str(loc.path)), settings), device)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = [t if t.strip() else " " for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, np.float32)
