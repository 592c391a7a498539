"""Searcher: the four searches over the store (an idea -> prompts or images, an image -> similar
images or the prompts that likely made it), with filters that cost no Chroma `where` on the hot path."""

from __future__ import annotations

from typing import Any, Callable

from studio.errors import InputError, bounded_text
from studio.images import ImageSource, open_image
from studio.search.results import Filters, Hit, SearchResult, label_of, settings_of
from studio.images import read_location
from studio.search.store import PromptStore, Record, prompt_id

MAX_QUERY_CHARS = 10_000  # CLIP reads ~77 tokens (~300 characters); past this it is a paste accident
# Reverse search: weight of image-text similarity next to image-image similarity (see Searcher.reverse).
TEXT_WEIGHT = 0.1
# Image-image similarity at which a stored image is taken to be the very same picture (re-encoded).
SAME_IMAGE = 0.995
# Over-fetch for post-filtering stops growing here when a source filter can go to Chroma instead.
MAX_OVERFETCH = 4096


def query_text(text: str) -> str:
    """A search text, stripped; InputError when empty or absurdly long."""
    return bounded_text((text or "").strip(), MAX_QUERY_CHARS, "Type an idea or a prompt to search for.",
                        "That text is {n:,} characters; CLIP reads only the first 77 tokens "
                        "(about 300 characters). Shorten it to under {limit:,}.")


class Searcher:
    """Searches one store with one CLIP; both come from zero-argument callables (loaded lazily).
    queries: the text side (studio.search.queries.QueryEncoder: CLIP, or a multilingual encoder); default CLIP."""

    def __init__(self, embedder: Callable[[], Any], store: Callable[[], PromptStore], queries: Any = None) -> None:
        self.embedder = embedder
        self.store = store
        if queries is None:
            from studio.search.queries import QueryEncoder

            queries = QueryEncoder(embedder, None, store)
        self.queries = queries

    def query(self, kind: str, vector: Any, k: int, filters: Filters) -> tuple[list[Record], int]:
        """The k nearest records that pass the filters, and how many closer ones they hid.

        Chroma's `where` costs ~0.5 s at 1M vectors, so we over-fetch unfiltered neighbours and
        filter here, widening only when too few pass. A rare source (your own images among
        millions) would need a huge fetch: past MAX_OVERFETCH, Chroma filters on the source.
        No count() either: Chroma counts by scanning, and a query for more than it holds returns
        what there is, so fewer records than asked for means the end."""
        # Nothing can be filtered out: exactly k. Else a margin over k (DiffusionDB's NSFW share is ~10%),
        # widened 4x at a time when a neighbourhood is denser in hidden records than that.
        n, where = (k if filters.passes_all else k + max(8, k // 2)), None
        while True:
            records = self.store().query(kind, vector, n, where=where)
            kept, hidden = _take(records, k, lambda meta: filters.allows(meta, kind))
            if len(kept) >= k or len(records) < n:
                return kept, hidden
            if n >= MAX_OVERFETCH and filters.sources and where is None:
                n, where = k + max(8, k // 2), filters.where()
            else:
                n *= 4

    def search(self, text: str, target: str = "prompts", k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An idea -> the closest stored prompts, or (target="images") images of that style."""
        if target not in ("prompts", "images"):
            raise InputError(f"target={target!r}: use prompts or images.")
        text = query_text(text)
        vector, encoder = self.queries.embed(text)
        records, hidden = self.query(target, vector, k, filters)
        return SearchResult(text, target, [to_hit(r, target) for r in records], hidden, encoder)

    def similar_images(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the stored images closest to it."""
        vector = self.embedder().embed_images([open_image(image)])[0]
        records, hidden = self.query("images", vector, k, filters)
        return SearchResult(label_of(image), "similar", [to_hit(r, "images") for r in records], hidden)

    def reverse(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the prompts that likely made it: the prompts of its nearest images fused with
        the prompts nearest to it across modalities; each with the settings of its images.

        Fusion is on similarities, not ranks: an image at distance 0 is this very image, and rank
        fusion would forget that. score = image similarity + TEXT_WEIGHT x text similarity: CLIP's
        image-image similarities (0.5-1) are the strong evidence; image-text ones (0.15-0.35) are
        noisier, so they break near-ties and bring in prompts with no stored image. A prompt none
        of whose images is among the neighbours gets no image credit; a missing text score is
        bounded by the weakest one retrieved (it is at most that close)."""
        vector = self.embedder().embed_images([open_image(image)])[0]
        images, hidden_i = self.query("images", vector, 4 * k, filters)
        prompts, hidden_p = self.query("prompts", vector, 4 * k, filters)
        img_sim: dict[str, float] = {}
        txt_sim = {rec.id: 1.0 - (rec.distance or 0.0) for rec in prompts}
        settings: dict[str, list[dict[str, Any]]] = {}
        for rec in images:
            if not (rec.metadata.get("prompt_id") or (rec.document or "").strip()):
                continue  # an image stored without a prompt (a user's file with no metadata): none to offer
            pid = rec.metadata.get("prompt_id") or prompt_id(rec.document or "")
            img_sim[pid] = max(img_sim.get(pid, -1.0), 1.0 - (rec.distance or 0.0))
            settings.setdefault(pid, []).append(settings_of(rec.metadata) | {"image_id": rec.id})
        txt_floor = min(txt_sim.values(), default=0.0)
        score = {pid: img_sim.get(pid, 0.0) + TEXT_WEIGHT * txt_sim.get(pid, txt_floor) for pid in img_sim | txt_sim}
        distance = {pid: 1.0 - img_sim[pid] if pid in img_sim else 1.0 - txt_sim[pid] for pid in score}
        # A stored copy of this very image settles it: its prompt comes first, whatever the text says.
        best = sorted(score, key=lambda pid: (img_sim.get(pid, 0.0) < SAME_IMAGE, -score[pid], distance[pid]))[:k]
        records = {r.id: r for r in self.store().get("prompts", best)}
        hits = []
        for pid in best:
            rec = records.get(pid)
            if rec is None or not filters.allows(rec.metadata, "prompts"):
                continue
            found = settings.get(pid) or [settings_of(rec.metadata) | {"image_id": rec.metadata.get("image_id")}]
            meta = rec.metadata | {"score": round(score[pid], 6), "from_images": pid in settings}
            hits.append(Hit(pid, rec.document or "", distance[pid], meta, "prompt", found))
        return SearchResult(label_of(image), "reverse", hits, hidden_i + hidden_p)

    @staticmethod
    def image_bytes(hit: Hit) -> bytes | None:
        """The pixels of an image hit (a file, or a member of a part zip), if still on disk."""
        try:
            return read_location(hit.file) if hit.file else None
        except (OSError, KeyError):
            return None


def to_hit(rec: Record, kind: str) -> Hit:
    """A stored record as a typed search result."""
    settings = [settings_of(rec.metadata)] if settings_of(rec.metadata) else []
    return Hit(rec.id, rec.document or "", float(rec.distance or 0.0), rec.metadata,
               "image" if kind == "images" else "prompt", settings)


def _take(records: list[Record], k: int, allows: Callable[[dict[str, Any]], bool]) -> tuple[list[Record], int]:
    """The first k allowed records, and how many were held back before the k-th (what a user missed)."""
    kept: list[Record] = []
    hidden = 0
    for rec in records:
        if len(kept) == k:
            break
        if allows(rec.metadata):
            kept.append(rec)
        else:
            hidden += 1
    return kept, hidden
