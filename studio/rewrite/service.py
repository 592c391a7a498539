"""RewriteService: the local LLM (in its GPU slot) grounded in the stored prompts closest to the idea, or
in the examples the user chose (stored prompt ids, texts brought from Explore or History)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from studio.errors import InputError, ModelMissingError, StoreMismatchError, StoreUnavailableError, StudioError
from studio.gpu import Slot
from studio.rewrite.prompting import MAX_K, check_counts, clean_idea
from studio.rewrite.results import TEXT_KIND
from studio.rewrite.rewriter import RewriteEvent, RewriteResult, Rewriter
from studio.rewrite.steering import steer
from studio.rewrite.untrusted import one_line
from studio.search.results import Filters, Hit, SearchResult
from studio.search.searcher import to_hit

if TYPE_CHECKING:
    from studio.search.store import PromptStore

NO_CLIP = ("No CLIP model, so no stored prompts were retrieved: this rewrite has no examples to borrow style "
           "from. Get CLIP once while online with `python -m studio models --download clip` (or set "
           "STUDIO_CLIP_MODEL to a local CLIP folder).")
MAX_EXAMPLE_TEXT_CHARS = 2_000  # a pasted example is one prompt; the model sees its first ~300 characters


class RewriteService:
    """Rewrites with the Rewriter in `llm` (loaded on first use), examples from `search`, SDXL's CLIP
    token counts (studio.tokens); works without CLIP or a store, with built-in examples and a notice."""

    def __init__(self, llm: Slot[Rewriter], search: Callable[..., SearchResult], embedder: Callable[[], Any],
                 store: Callable[[], PromptStore] | None = None, ready: Callable[[], Rewriter] | None = None) -> None:
        self.llm = llm
        self.ready = ready or llm.get  # the LLM for the next job (studio.gpu.Gpu.ready_llm plans its layers)
        self.search = search
        self.embedder = embedder
        self.store = store  # where examples chosen by id are read

    def stream(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(), *,
               seed: int | None = None, max_tokens: int | None = None, example_ids: Sequence[str] = (),
               example_texts: Sequence[str] = (), note: str | None = None,
               locked: Sequence[str] = ()) -> Iterator[RewriteEvent]:
        """rewrite() as events for the UI: "retrieved", then per candidate "start", "token"…,
        "candidate", and last "done" carrying the RewriteResult (see studio.rewrite.results.RewriteEvent)."""
        idea = clean_idea(idea)  # bad input is refused before any model loads
        check_counts(k, n)
        plan = steer(idea, note, locked)
        ids, texts = chosen_inputs(example_ids, example_texts)
        started = time.perf_counter()
        chosen = self.chosen_hits(plan.view, ids, texts) if ids or texts else None  # an unknown id: before the LLM
        picked_s = time.perf_counter() - started
        started = time.perf_counter()
        fresh = not self.llm.loaded
        rewriter = self.ready()
        load_s = time.perf_counter() - started if fresh else 0.0
        started = time.perf_counter()
        if chosen is not None:
            hits, why = chosen, None
        else:
            hits, why, _ = self.examples_for(plan.view, k, filters)  # searched by words, not LoRA tags or weights
        yield from rewriter.stream(idea, hits, k=k, n=n, count_tokens=self.clip_counter(), seed=seed, max_tokens=max_tokens,
                                   retrieval_s=picked_s + time.perf_counter() - started, load_s=load_s,
                                   retrieval_note=why, chosen=chosen is not None, note=plan.note, locked=locked)

    def rewrite(self, idea: str, k: int = 5, n: int = 1, filters: Filters = Filters(),
                on_token: Callable[[int, str], None] | None = None, *, seed: int | None = None,
                max_tokens: int | None = None, example_ids: Sequence[str] = (), example_texts: Sequence[str] = (),
                note: str | None = None, locked: Sequence[str] = ()) -> RewriteResult:
        """An idea -> n prompts written by the local LLM in the style of the k closest stored prompts
        (NSFW-filtered as search is), with their CLIP token counts and suggested cfg/steps.
        on_token(candidate index, text piece) as the model streams (a retry streams its index again).
        example_ids / example_texts: the user's own picks, shown instead of a retrieval (k then does not
        apply); still untrusted text, sanitised as retrieved prompts are. note: a wish the model follows
        ("warmer light, no people"). locked: terms every candidate carries verbatim, besides the idea's
        LoRA tags, weighted groups and quoted phrases."""
        for event in self.stream(idea, k, n, filters, seed=seed, max_tokens=max_tokens, example_ids=example_ids,
                                 example_texts=example_texts, note=note, locked=locked):
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

    def chosen_hits(self, idea: str, ids: Sequence[str], texts: Sequence[str]) -> list[Hit]:
        """The user's picks as hits, in their order: stored prompts by id (InputError naming any the store
        lacks), then texts; each with its CLIP distance to the idea when CLIP is at hand (else 1.0). No NSFW
        filter: the user picked these (from a search that applied theirs)."""
        stored = self._stored(ids) if ids else []
        hits = [h for h, _ in stored] + [Hit(text_id(t), t, 1.0, {"source": "chosen text"}, TEXT_KIND, []) for t in texts]
        try:
            embedder = self.embedder()
        except ModelMissingError:
            return hits  # texts only (ids need CLIP, above): no distances to show
        vectors = embedder.embed_texts([idea, *texts])
        for hit, vector in zip(hits, [v for _, v in stored] + list(vectors[1:])):
            cosine = float(np.dot(vectors[0], vector)) / float(np.linalg.norm(vectors[0]) * np.linalg.norm(vector) or 1.0)
            hit.distance = round(1.0 - cosine, 6)
        return hits

    def _stored(self, ids: Sequence[str]) -> list[tuple[Hit, np.ndarray]]:
        """The stored prompts with these ids, in this order, each with its CLIP vector."""
        if self.store is None:
            raise StudioError("This studio has no store to read chosen examples from; pass their texts instead.")
        try:
            records = {r.id: r for r in self.store().get("prompts", ids, embeddings=True)}
        except ModelMissingError as exc:
            raise ModelMissingError(f"Examples chosen by id are read from the store, which needs CLIP: {exc} "
                                    "Or pass the examples' texts instead (example_texts, or --example TEXT).") from exc
        missing = [i for i in ids if i not in records]
        if missing:
            raise InputError(f"No stored prompt has the id {', '.join(missing[:5])}; pick rows from a search "
                             "(their ids start with p-), or pass the prompt's text instead.")
        out = []
        for i in ids:
            vector = records[i].metadata.pop("_embedding")
            out.append((to_hit(records[i], "prompts"), vector))
        return out

    def clip_counter(self) -> Callable[[str], int] | None:
        """SDXL's real CLIP token count (the shipped vocabulary: whichever CLIP searches, none needed)."""
        from studio.tokens import count

        return count


def text_id(text: str) -> str:
    """An id for an example brought as text (it is no stored record): a hash of its words."""
    return "text-" + hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()[:12]


def chosen_inputs(ids: Sequence[str] | str | None, texts: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
    """The chosen ids and texts, blanks and repeats dropped; InputError for the wrong type or too many."""
    out: list[list[str]] = []
    for name, values in (("example_ids", ids), ("example_texts", texts)):
        values = [values] if isinstance(values, str) else list(values or [])
        if not all(isinstance(v, str) for v in values):
            raise InputError(f"{name} must be a list of strings, for example ['p-0123…'] or ['a castle, oil painting'].")
        out.append(list(dict.fromkeys(one_line(v) for v in values if v and v.strip())))
    if len(out[0]) + len(out[1]) > MAX_K:
        raise InputError(f"{len(out[0]) + len(out[1])} chosen examples; choose at most {MAX_K} (the model's "
                         "context holds about that many).")
    if too_long := [t for t in out[1] if len(t) > MAX_EXAMPLE_TEXT_CHARS]:
        raise InputError(f"An example text is {len(too_long[0]):,} characters; an example is one prompt (under "
                         f"{MAX_EXAMPLE_TEXT_CHARS:,} characters; the model sees its first 300 or so).")
    return out[0], out[1]
