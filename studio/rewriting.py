"""The Studio's rewrite face: the local LLM, grounded in retrieved prompts, loaded and unloaded on demand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Callable

from studio.errors import StudioError
from studio.results import Filters
from studio.rewrite import RewriteEvent, RewriteResult, Rewriter


class Rewriting:
    """Mixed into studio.service.Studio: uses its settings, _lock, embedder, search and make_room."""

    _rewriter: Rewriter | None = None  # loaded on first use, again after unload_llm()

    @property
    def rewriter(self) -> Rewriter:
        """The local LLM (studio.rewrite.Rewriter), loaded on first use and again after unload_llm()."""
        with self._lock:
            if self._rewriter is None:
                plan = self.make_room("llm")
                self._rewriter = Rewriter.load(self.settings, gpu=None if plan is None else plan.placement == "gpu")
            return self._rewriter

    @rewriter.setter
    def rewriter(self, value: Rewriter | None) -> None:
        with self._lock:
            self._rewriter = value

    @property
    def llm_loaded(self) -> bool:
        return self._rewriter is not None

    def rewrite_stream(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(), *,
                       seed: int | None = None, max_tokens: int | None = None) -> Iterator[RewriteEvent]:
        """rewrite() as events for the UI: "retrieved", then per candidate "start", "token"…,
        "candidate", and last "done" carrying the RewriteResult (see studio.rewrite.RewriteEvent)."""
        from studio.rewrite import check_counts, clean_idea

        idea = clean_idea(idea)  # bad input is refused before any model loads
        check_counts(k, n)
        started = time.perf_counter()
        fresh = not self.llm_loaded
        rewriter = self.rewriter
        load_s = time.perf_counter() - started if fresh else 0.0
        started = time.perf_counter()
        # Over-fetch: near-duplicates and unsafe records are dropped before k examples are kept.
        hits = self.search(idea, "prompts", k=max(3 * k, k + 8), filters=filters).results if k else []
        yield from rewriter.stream(idea, hits, k=k, n=n, count_tokens=self.embedder.count_tokens, seed=seed,
                                   max_tokens=max_tokens, retrieval_s=time.perf_counter() - started, load_s=load_s)

    def rewrite(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(),
                on_token: Callable[[int, str], None] | None = None, *, seed: int | None = None,
                max_tokens: int | None = None) -> RewriteResult:
        """An idea -> n prompts written by the local LLM in the style of the k closest stored prompts
        (NSFW-filtered as search is), with their CLIP token counts and suggested cfg/steps.
        on_token(candidate index, text piece) as the model streams (a retry streams its index again)."""
        for event in self.rewrite_stream(idea, k, n, filters, seed=seed, max_tokens=max_tokens):
            if event.kind == "token" and on_token is not None:
                on_token(event.index, event.text)
            elif event.kind == "done" and event.result is not None:
                return event.result
        raise StudioError("The rewrite ended without a result.")  # the stream always ends with "done"

    def unload_llm(self) -> bool:
        """Free the LLM's RAM/VRAM (so SDXL can claim the GPU); the next rewrite reloads it. False: none loaded."""
        with self._lock:
            rewriter, self._rewriter = self._rewriter, None
        if rewriter is None:
            return False
        rewriter.close()
        return True
