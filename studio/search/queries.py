"""QueryEncoder: the text side of every search (an idea -> prompts or images, History's text search, the
rewrite's retrieval). CLIP's own text tower, or the multilingual encoder when one is configured: for
queries not in English (mode "auto"), or for all (mode "all"). Ingest never comes here: stored vectors
stay CLIP's, so a multilingual encoder must be one distilled from the store's CLIP, and is checked."""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from studio.search.language import is_english
from studio.search.store import PromptStore


class QueryEncoder:
    """clip, multilingual, store: zero-argument callables (loaded lazily); multilingual None: CLIP only.

    Why English keeps CLIP's text tower in "auto": the multilingual encoder is a distilled approximation of
    it, close for English but not the same, and the stored prompt vectors are CLIP's own, so an English
    query finds them best through CLIP itself (see the README's settings)."""

    def __init__(self, clip: Callable[[], Any], multilingual: Callable[[], Any] | None,
                 store: Callable[[], PromptStore], mode: str = "auto") -> None:
        self.clip = clip
        self.multilingual = multilingual
        self.store = store
        self.mode = mode
        self._checked: PromptStore | None = None  # the store the multilingual encoder was last checked against
        self._lock = threading.Lock()

    def encoder_for(self, text: str) -> str:
        """"clip" or "multilingual": which encoder reads this query."""
        if self.multilingual is None or (self.mode == "auto" and is_english(text)):
            return "clip"
        return "multilingual"

    def embed(self, text: str) -> tuple[np.ndarray, str]:
        """The query's unit vector in the store's CLIP space, and which encoder made it."""
        which = self.encoder_for(text)
        if which == "clip":
            return self.clip().embed_texts([text])[0], which
        encoder = self.multilingual()  # type: ignore[misc]
        store = self.store()
        with self._lock:
            if self._checked is not store:  # once per store: a compare of strings and sizes
                a = encoder.alignment
                store.check_aligned(encoder.name, encoder.dim, a.clip_model, a.fingerprint, a.said_by)
                self._checked = store
        return encoder.embed_texts([text])[0], which
