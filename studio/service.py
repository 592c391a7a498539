"""Studio: the one API the UI, CLI and tests call: search four ways, ingest, stats, model status;
rewrite (studio.rewriting), generate, compare and history (studio.generating)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from studio.config import Settings
from studio.errors import InputError, StoreMismatchError, bounded_text
from studio.images import ImageSource, open_image
from studio.generating import Generating
from studio.ingest import IngestReport, ingest_rows, prompt_id
from studio.results import Filters, Hit, SearchResult, label_of, settings_of
from studio.rewriting import Rewriting
from studio.sources import is_outputs_folder, read_location, read_source
from studio.store import PromptStore, Record, open_client
from studio.weights import ROLES, locate

MAX_QUERY_CHARS = 10_000  # CLIP reads ~77 tokens (~300 characters); past this it is a paste accident
# The shipped sample, as ingested on first launch (the part-style JSON repeats the 99-row CSV).
SAMPLE_SOURCES = ("metadata-2m-every400th-image_name-prompt.csv", "metadata-fullparams-promptsdvis-first99.csv", "images")
# Reverse search: weight of image-text similarity next to image-image similarity (see Studio.reverse).
TEXT_WEIGHT = 0.1
# Image-image similarity at which a stored image is taken to be the very same picture (re-encoded).
SAME_IMAGE = 0.995
# Over-fetch for post-filtering stops growing here when a source filter can go to Chroma instead.
MAX_OVERFETCH = 4096


class Studio(Rewriting, Generating):
    """Holds the settings and lazily loads CLIP and the store; models may be passed in (tests do)."""

    def __init__(self, settings: Settings, embedder: Any = None, client: Any = None, generator: Any = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._client = client
        self._generator = generator  # studio.generate.Generator; loaded on the first generate() when None
        self._store: PromptStore | None = None
        self._store_created = False
        self._lock = threading.RLock()

    # -- lazy parts ------------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from studio.embed import ClipEmbedder

                self._embedder = ClipEmbedder.load(self.settings)
            return self._embedder

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = open_client(self.settings.store_dir, self.settings.chroma_url)
            return self._client

    def store_for(self, create: bool) -> PromptStore:
        with self._lock:
            if self._store is None or (create and not self._store_created):
                self._store = PromptStore(self.client, self.embedder.name, self.embedder.dim, create=create)
                self._store_created = create
            return self._store

    @property
    def store(self) -> PromptStore:
        return self.store_for(create=False)

    # -- search ----------------------------------------------------------------------------
    def _query(self, kind: str, vector: Any, k: int, filters: Filters) -> tuple[list[Record], int]:
        """The k nearest records that pass the filters, and how many closer ones they hid.

        Chroma's `where` costs ~0.5 s at 1M vectors, so we over-fetch unfiltered neighbours and
        filter here, widening only when too few pass. A rare source (your own images among
        millions) would need a huge fetch: past MAX_OVERFETCH, Chroma filters on the source.
        No count() either: Chroma counts by scanning, and a query for more than it holds returns
        what there is, so fewer records than asked for means the end."""
        n, where = max(4 * k, 32), None
        while True:
            records = self.store.query(kind, vector, n, where=where)
            kept, hidden = _take(records, k, lambda meta: filters.allows(meta, kind))
            if len(kept) >= k or len(records) < n:
                return kept, hidden
            if n >= MAX_OVERFETCH and filters.source and where is None:
                n, where = max(4 * k, 32), {"source": filters.source}
            else:
                n *= 4

    @staticmethod
    def _text(text: str) -> str:
        return bounded_text((text or "").strip(), MAX_QUERY_CHARS, "Type an idea or a prompt to search for.",
                            "That text is {n:,} characters; CLIP reads only the first 77 tokens "
                            "(about 300 characters). Shorten it to under {limit:,}.")

    def search(self, text: str, target: str = "prompts", k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An idea -> the closest stored prompts, or (target="images") images of that style."""
        if target not in ("prompts", "images"):
            raise InputError(f"target={target!r}: use prompts or images.")
        text = self._text(text)
        vector = self.embedder.embed_texts([text])[0]
        records, hidden = self._query(target, vector, k, filters)
        return SearchResult(text, target, [self._hit(r, target) for r in records], hidden)

    def similar_images(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the stored images closest to it."""
        vector = self.embedder.embed_images([open_image(image)])[0]
        records, hidden = self._query("images", vector, k, filters)
        return SearchResult(label_of(image), "similar", [self._hit(r, "images") for r in records], hidden)

    def reverse(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the prompts that likely made it: the prompts of its nearest images fused with
        the prompts nearest to it across modalities; each with the settings of its images.

        Fusion is on similarities, not ranks: an image at distance 0 is this very image, and rank
        fusion would forget that. score = image similarity + TEXT_WEIGHT x text similarity: CLIP's
        image-image similarities (0.5-1) are the strong evidence; image-text ones (0.15-0.35) are
        noisier, so they break near-ties and bring in prompts with no stored image. A prompt none
        of whose images is among the neighbours gets no image credit; a missing text score is
        bounded by the weakest one retrieved (it is at most that close)."""
        vector = self.embedder.embed_images([open_image(image)])[0]
        images, hidden_i = self._query("images", vector, 4 * k, filters)
        prompts, hidden_p = self._query("prompts", vector, 4 * k, filters)
        img_sim: dict[str, float] = {}
        txt_sim = {rec.id: 1.0 - (rec.distance or 0.0) for rec in prompts}
        settings: dict[str, list[dict[str, Any]]] = {}
        for rec in images:
            pid = rec.metadata.get("prompt_id") or prompt_id(rec.document or "")
            img_sim[pid] = max(img_sim.get(pid, -1.0), 1.0 - (rec.distance or 0.0))
            settings.setdefault(pid, []).append(settings_of(rec.metadata) | {"image_id": rec.id})
        txt_floor = min(txt_sim.values(), default=0.0)
        score = {pid: img_sim.get(pid, 0.0) + TEXT_WEIGHT * txt_sim.get(pid, txt_floor) for pid in img_sim | txt_sim}
        distance = {pid: 1.0 - img_sim[pid] if pid in img_sim else 1.0 - txt_sim[pid] for pid in score}
        # A stored copy of this very image settles it: its prompt comes first, whatever the text says.
        best = sorted(score, key=lambda pid: (img_sim.get(pid, 0.0) < SAME_IMAGE, -score[pid], distance[pid]))[:k]
        records = {r.id: r for r in self.store.get("prompts", best)}
        hits = []
        for pid in best:
            rec = records.get(pid)
            if rec is None or not filters.allows(rec.metadata, "prompts"):
                continue
            found = settings.get(pid) or [settings_of(rec.metadata) | {"image_id": rec.metadata.get("image_id")}]
            meta = rec.metadata | {"score": round(score[pid], 6), "from_images": pid in settings}
            hits.append(Hit(pid, rec.document or "", distance[pid], meta, "prompt", found))
        return SearchResult(label_of(image), "reverse", hits, hidden_i + hidden_p)

    def _hit(self, rec: Record, kind: str) -> Hit:
        settings = [settings_of(rec.metadata)] if settings_of(rec.metadata) else []
        return Hit(rec.id, rec.document or "", float(rec.distance or 0.0), rec.metadata,
                   "image" if kind == "images" else "prompt", settings)

    def image_bytes(self, hit: Hit) -> bytes | None:
        """The pixels of an image hit (a file, or a member of a part zip), if still on disk."""
        try:
            return read_location(hit.file) if hit.file else None
        except (OSError, KeyError):
            return None

    # -- ingest and status -----------------------------------------------------------------
    def ingest(self, source: str, limit: int | None = None, source_tag: str = "diffusiondb",
               progress: Callable[[str, int, int], None] | None = None) -> IngestReport:
        if is_outputs_folder(Path(source).expanduser()):
            # Our own PNGs (STUDIO_HOME/outputs): stored as source=generated with the lineage they carry.
            from studio.writeback import repair

            return repair(Path(source).expanduser(), self.store_for(create=True), self.embedder, progress=progress)
        rows = read_source(source, self.settings.home / "cache" / "diffusiondb", self.settings.offline)
        store = self.store_for(create=True)
        return ingest_rows(rows, store, self.embedder, source=source_tag, label=source,
                           batch_size=self.settings.batch_size, limit=limit, progress=progress)

    def is_empty(self) -> bool:
        """No collections at all yet (a new store): first launch ingests the sample."""
        return not any(c.name.startswith("prompts__") for c in self.client.list_collections())

    def ingest_sample(self, progress: Callable[[str, int, int], None] | None = None) -> list[IngestReport]:
        sample = Path(self.settings.sample_dir)
        return [self.ingest(str(sample / name), progress=progress) for name in SAMPLE_SOURCES
                if (sample / name).exists()]

    def stats(self) -> dict[str, Any]:
        """Counts per collection and source; works without CLIP weights."""
        out: dict[str, Any] = {"store": self.settings.chroma_url or str(self.settings.store_dir), "indexes": []}
        for col in self.client.list_collections():
            meta = col.metadata or {}
            kind = meta.get("kind") or col.name.split("__")[0]
            by_source: dict[str, int] = {}
            for m in col.get(include=["metadatas"])["metadatas"] if col.count() <= 200_000 else []:
                by_source[(m or {}).get("source", "?")] = by_source.get((m or {}).get("source", "?"), 0) + 1
            out["indexes"].append({"collection": col.name, "kind": kind, "clip_model": meta.get("clip_model"),
                                   "dim": meta.get("dim"), "count": col.count(), "by_source": by_source})
        return out

    def models(self) -> list[dict[str, Any]]:
        """Each role: where it would load from and whether it is there (no network)."""
        return [{"role": role, "ref": (loc := locate(role, self.settings)).ref, "found": loc.found,
                 "path": str(loc.path) if loc.path else None, "starter": loc.starter, "status": loc.describe()}
                for role in ROLES]

    def check_store(self) -> str | None:
        """None when the store opens with this CLIP; else the message that says why not."""
        try:
            self.store  # noqa: B018 - opening is the check
        except StoreMismatchError as exc:
            return str(exc)
        return None


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
