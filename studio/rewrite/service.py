"""RewriteService: the local LLM (in its GPU slot) grounded in the stored prompts closest to the idea."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

from studio.errors import ModelMissingError, StoreMismatchError, StoreUnavailableError, StudioError
from studio.gpu import Slot
from studio.rewrite.prompting import check_counts, clean_idea
from studio.rewrite.rewriter import RewriteEvent, RewriteResult, Rewriter
from studio.search.results import Filters, Hit, SearchResult

NO_CLIP = ("No CLIP model, so no stored prompts were retrieved: this rewrite has no examples to borrow style "
           "from. Get CLIP once while online with `python -m studio models --download clip` (or set "
           "STUDIO_CLIP_MODEL to a local CLIP folder).")


class RewriteService:
    """Rewrites with the Rewriter in `llm` (loaded on first use), examples from `search`, SDXL's CLIP
    token counts (studio.tokens); works without CLIP or a store, with built-in examples and a notice."""

    def __init__(self, llm: Slot[Rewriter], search: Callable[..., SearchResult], embedder: Callable[[], Any]) -> None:
        self.llm = llm
        self.search = search
        self.embedder = embedder

    def stream(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(), *,
               seed: int | None = None, max_tokens: int | None = None) -> Iterator[RewriteEvent]:
        """rewrite() as events for the UI: "retrieved", then per candidate "start", "token"…,
        "candidate", and last "done" carrying the RewriteResult (see studio.rewrite.rewriter.RewriteEvent)."""
        idea = clean_idea(idea)  # bad input is refused before any model loads
        check_counts(k, n)
        started = time.perf_counter()
        fresh = not self.llm.loaded
        rewriter = self.llm.get()
        load_s = time.perf_counter() - started if fresh else 0.0
        started = time.perf_counter()
        hits, note, _ = self.examples_for(idea, k, filters)
        yield from rewriter.stream(idea, hits, k=k, n=n, count_tokens=self.clip_counter(), seed=seed, max_tokens=max_tokens,
                                   retrieval_s=time.perf_counter() - started, load_s=load_s, retrieval_note=note)

    def rewrite(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(),
                on_token: Callable[[int, str], None] | None = None, *, seed: int | None = None,
                max_tokens: int | None = None) -> RewriteResult:
        """An idea -> n prompts written by the local LLM in the style of the k closest stored prompts
        (NSFW-filtered as search is), with their CLIP token counts and suggested cfg/steps.
        on_token(candidate index, text piece) as the model streams (a retry streams its index again)."""
        for event in self.stream(idea, k, n, filters, seed=seed, max_tokens=max_tokens):
            if event.kind == "token" and on_token is not None:
                on_token(event.index, event.text)
            elif event.kind == "done" and event.result is not None:
                return event.result
        raise StudioError("The rewrite ended without a result.")  # the stream always ends with "done"

    def examples_for(self, idea: str, k: int, filters: Filters) -> tuple[list[Hit], str | None, bool]:
        """(the stored prompts closest to the idea, why there are none, whether CLIP is missing).
        Over-fetched: near-duplicates and unsafe records are dropped before k are kept."""
        if not k:
            return [], None, False
        try:
            return self.search(idea, "prompts", k=max(3 * k, k + 8), filters=filters).results, None, False
        except ModelMissingError as exc:
            return [], f"{NO_CLIP} ({exc})", True
        except (StoreMismatchError, StoreUnavailableError) as exc:
            return [], f"No stored prompts were retrieved, so this rewrite has no style examples: {exc}", False

    def clip_counter(self) -> Callable[[str], int] | None:
        """SDXL's real CLIP token count (the shipped vocabulary: whichever CLIP searches, none needed)."""
        from studio.tokens import count

        return count
