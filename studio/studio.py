"""Studio: a thin façade that composes the services (search, ingest, rewrite, the GPU's models, the
library) and is the one API the UI, the CLI and scripts call. Studio.from_settings() builds it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Callable

from studio.config import Settings
from studio.errors import ModelMissingError, StoreMismatchError, StudioError
from studio.gpu import Card, Gpu, LlmShape, MemoryPlan, Slot
from studio.images import ImageSource
from studio.ingest.ingester import Ingester
from studio.ingest.pipeline import IngestReport
from studio.library.compare import Comparer
from studio.library.history import History
from studio.rewrite.request import RewriteRequest
from studio.rewrite.results import RewriteEvent, RewriteResult
from studio.rewrite.service import RewriteService
from studio.search.results import Filters, Hit, SearchResult
from studio.search.queries import QueryEncoder
from studio.search.searcher import Searcher, query_text
from studio.search.stats import StoreStats, has_prompts, read_stats
from studio.search.store import PromptStore, open_client
from studio.weights import ROLES, how_to_get, locate

# The typed values and limits the UI passes in and reads back: studio/ui imports only this module,
# studio.errors and studio.config (tests/test_layers.py holds it to that), so these are re-exported here.
from studio.generate.request import (  # noqa: E402
    MAX_CFG, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS, MIN_SIDE, PROFILES, SCHEDULERS, SDXL_SIZES,
    SEED_RANGE, GenerationRequest, scheduler_name,
)
from studio.images import open_image  # noqa: E402
from studio.ingest.sources import IMAGE_SUFFIXES  # noqa: E402
from studio.ingest.uploads import UPLOAD_TYPES  # noqa: E402
from studio.library.compare import VARIANTS  # noqa: E402
from studio.library.history import ImageDetails  # noqa: E402
from studio.library.imageinfo import ImageInfo  # noqa: E402
from studio.library.lineage import Lineage  # noqa: E402
from studio.rewrite.prompting import MAX_CANDIDATES, MAX_IDEA_CHARS  # noqa: E402
from studio.rewrite.steering import MAX_NOTE_CHARS  # noqa: E402
from studio.search.results import MINE, settings_of  # noqa: E402
from studio.search.searcher import MAX_QUERY_CHARS  # noqa: E402
from studio.tokens import LIMIT as TOKEN_LIMIT, chunks as token_chunks, count as count_tokens  # noqa: E402
from studio.generate.wildcards import has_syntax as has_wildcards  # noqa: E402

__all__ = [
    "Studio", "Progress", "Filters", "Hit", "SearchResult", "MINE", "settings_of", "GenerationRequest", "Lineage",
    "ImageDetails", "ImageInfo", "IngestReport", "StoreStats", "RewriteRequest", "RewriteResult", "RewriteEvent", "ImageSource", "open_image", "IMAGE_SUFFIXES", "UPLOAD_TYPES", "VARIANTS", "MAX_CFG",
    "MAX_IMAGES", "MAX_PROMPT_CHARS", "MAX_SIDE", "MAX_STEPS", "MIN_SIDE", "PROFILES", "SCHEDULERS", "SDXL_SIZES",
    "SEED_RANGE", "scheduler_name", "MAX_CANDIDATES", "MAX_IDEA_CHARS", "MAX_NOTE_CHARS", "MAX_QUERY_CHARS",
    "TOKEN_LIMIT", "token_chunks", "count_tokens", "has_wildcards",
]

Progress = Callable[[str, int, int], None]


class Studio:
    """Parts may be passed in (tests pass tiny real models and recording fakes); the rest load on first
    use, each in its own slot, so a slow load (the LLM, SDXL) never blocks a search.
    `loaders` overrides how a part loads: {"clip": () -> embedder, "llm": (plan) -> Rewriter,
    "sdxl": (plan) -> Generator, "chroma": () -> client, "multilingual": () -> MultilingualEncoder}.
    `multilingual`: the encoder for queries in other languages (else loaded when STUDIO_MULTILINGUAL_MODEL is set).
    `card`: the CUDA memory queries (studio.gpu.Card; tests play cards of any size)."""

    def __init__(self, settings: Settings, embedder: Any = None, client: Any = None, generator: Any = None,
                 rewriter: Any = None, *, loaders: dict[str, Callable[..., Any]] | None = None,
                 multilingual: Any = None, card: Card | None = None) -> None:
        self.settings = settings
        load = dict(loaders or {})
        self.clip: Slot[Any] = Slot("clip", load.get("clip") or self._load_clip, embedder)
        self.chroma: Slot[Any] = Slot("chroma", load.get("chroma") or self._open_client, client)
        self.gpu = Gpu(settings.device, load_llm=load.get("llm") or self._load_llm,
                       load_sdxl=load.get("sdxl") or self._load_sdxl, llm_shape=self._llm_shape,
                       llm=rewriter, sdxl=generator, card=card, offload=settings.offload, llm_gpu=self._llm_gpu)
        self._store: PromptStore | None = None
        self._store_created = False
        self._store_lock = threading.Lock()
        self.multilingual: Slot[Any] = Slot("multilingual", load.get("multilingual") or self._load_multilingual,
                                            multilingual)
        use = multilingual is not None or bool(settings.multilingual_model) or "multilingual" in load
        # Only the text side of searches: ingest and write-back embed with CLIP (self.clip) as before.
        self.queries = QueryEncoder(self.clip.get, self.multilingual.get if use else None, lambda: self.store,
                                    settings.multilingual_queries)
        self.searcher = Searcher(self.clip.get, lambda: self.store, self.queries)
        self.ingester = Ingester(settings, self.store_for, self.clip.get)
        self.rewriting = RewriteService(self.gpu.llm, self.searcher.search, self.clip.get, lambda: self.store,
                                        ready=self.gpu.ready_llm)
        self.history_ = History(lambda: self.store, self.clip.get, self.queries)
        self.comparer = Comparer(self.rewrite, self._generate_once, self.clip.get, self._write_back)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **parts: Any) -> "Studio":
        """The studio for these settings (default: the STUDIO_* environment), models loading on first use."""
        return cls(settings or Settings.from_env(), **parts)

    # -- default loaders (heavy imports happen here, never at import time) -----------------
    def _load_clip(self) -> Any:
        from studio.search.embed import ClipEmbedder

        return ClipEmbedder.load(self.settings)

    def _load_multilingual(self) -> Any:
        from studio.search.multilingual import MultilingualEncoder

        return MultilingualEncoder.load(self.settings)

    def _open_client(self) -> Any:
        return open_client(self.settings.store_dir, self.settings.chroma_url)

    def _load_llm(self, plan: MemoryPlan | None) -> Any:
        from studio.rewrite.rewriter import Rewriter

        return Rewriter.load(self.settings, gpu_layers=None if plan is None else plan.layers)

    def _load_sdxl(self, plan: MemoryPlan | None) -> Any:
        from studio.generate.generator import Generator

        return Generator.load(self.settings, placement=plan.placement if plan else None)

    def _llm_shape(self) -> LlmShape | None:
        """What the configured GGUF holds on the GPU (None: no file yet)."""
        from studio.rewrite.llamacpp import gguf_shape

        loc = locate("llm", self.settings)
        return gguf_shape(loc.path) if loc.path is not None and loc.path.is_file() else None

    def _llm_gpu(self) -> bool:
        from studio.rewrite.llamacpp import gpu_offload

        return gpu_offload()

    # -- parts -------------------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        return self.clip.get()

    @property
    def client(self) -> Any:
        return self.chroma.get()

    def store_for(self, create: bool) -> PromptStore:
        with self._store_lock:
            if self._store is None or (create and not self._store_created):
                embedder = self.embedder
                self._store = PromptStore(self.client, embedder.name, embedder.dim, create=create,
                                          fingerprint=getattr(embedder, "fingerprint", None),
                                          probe=getattr(embedder, "embed_texts", None))
                self._store_created = create
            return self._store

    def claim_store(self) -> None:
        """Hold the embedded store for this process now (the web app, for its whole life); StoreBusyError when
        another process holds it. A Chroma server is shared by design: nothing to hold."""
        if not self.settings.chroma_url:
            from studio.search import lock

            lock.claim(self.settings.store_dir, "the web app")

    def close(self) -> None:
        """Let the embedded store go (Chroma's in-memory index dropped, the lock released), so another process may
        open it; this Studio opens it afresh on its next use."""
        if self.settings.chroma_url:
            return
        from studio.search.store import close_client

        with self._store_lock:
            self._store, self._store_created = None, False
            self.chroma.set(None)
            close_client(self.settings.store_dir)

    @property
    def store(self) -> PromptStore:
        return self.store_for(create=False)

    @property
    def rewriter(self) -> Any:
        """The local LLM (studio.rewrite.rewriter.Rewriter), loaded on first use and again after unload_llm()."""
        return self.gpu.llm.get()

    @rewriter.setter
    def rewriter(self, value: Any) -> None:
        self.gpu.llm.set(value)

    @property
    def llm_loaded(self) -> bool:
        return self.gpu.llm.loaded

    @property
    def generator(self) -> Any:
        """SDXL (studio.generate.generator.Generator), loaded once on first use, after making room on the GPU."""
        return self.gpu.sdxl.get()

    @property
    def sdxl_loaded(self) -> bool:
        return self.gpu.sdxl.loaded

    def make_room(self, role: str) -> MemoryPlan | None:
        return self.gpu.make_room(role)

    def unload_llm(self) -> bool:
        """Free the LLM's RAM/VRAM (so SDXL can claim the GPU); the next rewrite reloads it. False: none loaded."""
        return self.gpu.unload_llm()

    # -- search ------------------------------------------------------------------------------
    def search(self, text: str, target: str = "prompts", k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An idea -> the closest stored prompts, or (target="images") images of that style."""
        return self.searcher.search(text, target, k, filters)

    def similar_images(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the stored images closest to it."""
        return self.searcher.similar_images(image, k, filters)

    def reverse(self, image: ImageSource, k: int = 10, filters: Filters = Filters()) -> SearchResult:
        """An image -> the prompts that likely made it, each with the settings of its images."""
        return self.searcher.reverse(image, k, filters)

    def image_bytes(self, hit: Hit) -> bytes | None:
        return self.searcher.image_bytes(hit)

    def image_details(self, image_id: str) -> ImageDetails | None:
        """One stored image (a Hit) and the texts of the stored prompts its rewrite was shown; None: not stored."""
        return self.history_.details(image_id)

    def image_info(self, image: ImageSource) -> ImageInfo | None:
        """What an image file says about how it was made (PNG Info: ours, A1111, ComfyUI, Fooocus, InvokeAI,
        NovelAI); None when it carries no prompt. Reads the file only: no model loads."""
        from studio.library.imageinfo import read_info

        return read_info(image)

    # -- ingest and status -------------------------------------------------------------------
    def ingest(self, source: str, limit: int | None = None, source_tag: str | None = None,
               progress: Progress | None = None) -> IngestReport:
        return self.ingester.ingest(source, limit, source_tag, progress)

    def ingest_sample(self, progress: Progress | None = None) -> list[IngestReport]:
        return self.ingester.ingest_sample(progress)

    def ingest_uploads(self, files: Sequence[tuple[str, str]], limit: int | None = None,
                       progress: Progress | None = None) -> list[IngestReport]:
        """Files uploaded from the browser ((temporary path, the user's file name) each): images (kept under
        STUDIO_HOME/uploads, as the user's), a .zip of a folder (unpacked there), tables and DiffusionDB parts;
        each report and message names the user's file. What went in before a failing file stays in."""
        from studio.ingest.uploads import stage

        reports: list[IngestReport] = []
        for up in stage(files, self.settings.home / "uploads"):
            try:
                report = self.ingest(up.path, limit=limit, progress=progress)
            except StudioError as exc:
                done = " ".join(r.summary() for r in reports)
                said = str(exc).replace(up.path, up.name)
                raise type(exc)(f"{done} Then {said}" if done else said) from exc
            report.source = up.name
            reports.append(report)
        return reports

    def hub_offer(self, ask_hub: bool = False) -> Any:
        """The offer of real DiffusionDB pictures (studio.ingest.hub_offer.HubOffer): its size before it starts,
        what is already downloaded; ask_hub: the hub's own sizes (one request; never when offline)."""
        from studio.ingest.hub_offer import hub_sizes, offer

        return offer(self.settings, hub_sizes if ask_hub else None)

    def wants_pictures(self) -> bool:
        """The library holds no more DiffusionDB images than the shipped sample's few: Explore's "Images of this
        style" would show the same ones for every idea, so the real ones are offered."""
        from studio.ingest.hub_offer import SAMPLE_IMAGES

        return self.stats().by_source("images").get("diffusiondb", 0) <= SAMPLE_IMAGES

    def remove_source(self, source: str, progress: Progress | None = None) -> Any:
        """Take a source out of the library (one ingested by mistake): its images and the prompts only it holds
        go; prompts other sources also hold stay, with their counts; the counters stay exact. Returns a
        studio.library.removal.RemovalReport. Pages through the store by source, never all of it."""
        from studio.library.removal import remove_source

        return remove_source(self.store, source, progress)

    def warm(self) -> float:
        """One search of each kind, so the first real search finds CLIP and both indexes in memory;
        returns the seconds it took."""
        import time

        started = time.perf_counter()
        for target in ("prompts", "images"):
            self.searcher.search("a painting", target, 1, Filters(nsfw=True))
        if self.queries.multilingual is not None:
            try:  # its model loads now too; a missing or mismatched one is said by the search that needs it
                self.searcher.search("una pintura al óleo", "prompts", 1, Filters(nsfw=True))
            except StudioError:
                pass
        return time.perf_counter() - started

    def is_empty(self) -> bool:
        """No collections at all yet (a new store): first launch ingests the sample."""
        return not has_prompts(self.client)

    def stats(self, wait: bool = False) -> StoreStats:
        """Counts per collection and source, from the writers' counters (no scan); works without CLIP
        weights. Counters that lag (a killed ingest) are recounted in the background (wait: right now);
        until then that index says exact=False."""
        return read_stats(self.client, self.settings.chroma_url or str(self.settings.store_dir), wait)

    def models(self) -> list[dict[str, Any]]:
        """Each role: where it would load from and whether it is there (no network)."""
        return [{"role": role, "ref": (loc := locate(role, self.settings)).ref, "found": loc.found,
                 "path": str(loc.path) if loc.path else None, "starter": loc.starter, "status": loc.describe(),
                 "problem": loc.problem, "unset": loc.unset}
                for role in ROLES]

    def machine(self) -> dict[str, Any]:
        """The GPU, whether the installed llama-cpp can use it (and the command that fixes it when not), and the
        memory plan for SDXL and the LLM on it."""
        from studio.gpu import machine_plan
        from studio.rewrite.llamacpp import CUDA_INSTALL, gpu_offload

        try:
            llm_gpu = gpu_offload()
        except ImportError:
            llm_gpu = False
        out = machine_plan(self.gpu.card, self.settings.device, self._llm_shape(), llm_gpu, self.settings.offload)
        out.update(precision=self.settings.precision, offload=self.settings.offload, compile=self.settings.compile)
        if out["device"] == "cuda" and not llm_gpu:
            out["fix"] = f"llama-cpp-python was built for the CPU only; rebuild it with CUDA: {CUDA_INSTALL}"
        return out

    def check_store(self) -> str | None:
        """None when the store opens with this CLIP; else the message that says why not."""
        try:
            self.store  # noqa: B018 - opening is the check
        except StoreMismatchError as exc:
            return str(exc)
        return None

    # -- rewrite -----------------------------------------------------------------------------
    def rewrite_stream(self, request: RewriteRequest | str, **fields: Any) -> Iterator[RewriteEvent]:
        """rewrite() as RewriteEvents (studio.rewrite.results) for the UI."""
        return self.rewriting.stream(_rewrite_request(request, fields))

    def rewrite(self, request: RewriteRequest | str, on_token: Callable[[int, str], None] | None = None,
                **fields: Any) -> RewriteResult:
        """An idea (or a RewriteRequest) -> RewriteResult: n candidates in the style of the k closest stored
        prompts, or of the examples the user chose (example_ids, example_texts); `note` is a wish the LLM
        follows; the idea's LoRA tags, weighted groups and quoted phrases and the `locked` terms come back in
        every candidate. `fields` (k, n, filters, seed, max_tokens, example_ids, example_texts, note, locked)
        fill the request; bad values are refused before any model loads."""
        return self.rewriting.rewrite(_rewrite_request(request, fields), on_token)

    # -- generate, compare, history ----------------------------------------------------------
    def generate(self, request: Any, *, on_preview: Callable[[Any], None] | None = None, cancel: Any = None,
                 lineage: Any = None, **fields: Any) -> Any:
        """A prompt (or a GenerationRequest) -> GenerationResult: images saved to outputs/ as PNGs with
        A1111 metadata, then stored (source=generated) with `lineage` (studio.library.lineage.Lineage).
        `fields` (negative_prompt, seed, steps, cfg, width, height, n, scheduler, profile) fill the
        request; bad values are refused before any model loads. `cancel`: a threading.Event."""
        from studio.generate.request import GenerationRequest

        if isinstance(request, GenerationRequest):
            req = replace(request, **fields) if fields else request
        else:
            req = GenerationRequest(prompt=request, **fields)
        result = self._generate_once(req.validated(), on_preview=on_preview, cancel=cancel)
        if result.images:
            result.saved = self._write_back(result, lineage, None)
        return result

    def generate_each(self, template: str, *, mode: str = "random", on_preview: Callable[[Any], None] | None = None,
                      cancel: Any = None, lineage: Any = None, **fields: Any) -> Any:
        """A wildcard prompt ({a|b}, __name__) -> one image per expansion, `n` of them (random expansions drawn
        with the seed: the same seed gives the same prompts), image i at seed + i; each saved and stored as
        generate() does. One GenerationResult whose notes list each expansion and its seed."""
        from studio.generate.batch import each_expansion
        from studio.generate.request import GenerationRequest

        request = GenerationRequest(prompt=template, **fields).validated()
        expansion = self.expand(template, mode=mode, n=request.n, seed=request.seed, repeats=True)
        request = replace(request, n=len(expansion.prompts))
        return each_expansion(request, expansion.prompts, list(expansion.notes),
                              lambda one: self.generate(one, on_preview=on_preview, cancel=cancel, lineage=lineage),
                              cancel)

    def _generate_once(self, request: Any, *, on_preview: Any = None, cancel: Any = None) -> Any:
        from studio.generate.loras import loras_of

        loras = loras_of(request.prompt, self.settings.loras_dir)  # a missing LoRA is refused before SDXL loads
        return self.gpu.ready_sdxl(request.n, request.width, request.height).generate(request, on_preview=on_preview, cancel=cancel, loras=loras)

    def loras(self) -> list[dict[str, Any]]:
        """The LoRAs in models/loras that `<lora:NAME:WEIGHT>` can name: name and file."""
        from studio.generate.loras import available

        return [{"name": name, "file": str(path)} for name, path in available(self.settings.loras_dir).items()]

    def _write_back(self, result: Any, lineage: Any, vectors: Any) -> list[Any]:
        from studio.library.writeback import write_back

        connect = lambda: (self.store_for(create=True), self.embedder)  # noqa: E731 - opened once the PNGs are safe
        return write_back(result, self.settings.outputs_dir, lineage or Lineage(), connect, image_vectors=vectors)

    def compare(self, idea: str, seed: int | None = None, *, on_preview: Callable[[str, Any], None] | None = None,
                cancel: Any = None, **fields: Any) -> Any:
        """The idea as typed, the best retrieved prompt and the rewritten prompt, generated with one
        seed and the same settings (one image each), CLIP-scored against the idea and stored with a
        shared comparison id. on_preview(variant, Preview)."""
        from studio.generate.loras import loras_of
        from studio.generate.request import GenerationRequest

        idea = query_text(idea)
        base = replace(GenerationRequest(prompt=idea, seed=seed, **fields), n=1).validated()  # the seed is fixed here
        loras_of(idea, self.settings.loras_dir)  # a missing LoRA is refused before the LLM or SDXL loads
        self.need_sdxl("Compare")  # said before the rewrite runs, not after it
        return self.comparer.compare(idea, base, on_preview=on_preview, cancel=cancel)

    def sdxl_missing(self) -> bool:
        """SDXL is neither loaded nor on this machine (a hub id may still fetch it: need_sdxl says)."""
        return not self.sdxl_loaded and not locate("sdxl", self.settings).found

    def need_sdxl(self, what: str) -> None:
        """ModelMissingError now, when SDXL is neither loaded nor on this machine and cannot be fetched."""
        if self.sdxl_loaded:
            return
        loc = locate("sdxl", self.settings)
        if not loc.found and (self.settings.offline or loc.hub_id is None):
            raise ModelMissingError(f"{what} needs SDXL, and nothing was run. {how_to_get(loc)}")

    def comparison(self, comparison_id: str) -> list[Hit]:
        return self.history_.comparison(comparison_id)

    def history(self, query: str | ImageSource | None = None, limit: int = 20,
                favourites: bool = False) -> SearchResult:
        return self.history_.history(query, limit, favourites)

    def favourite(self, image_id: str, on: bool = True) -> bool:
        """Mark one of your images as a favourite (History can show only those); False: not stored."""
        return self.history_.favourite(image_id, on)

    def delete_image(self, image_id: str) -> Any:
        """Remove one of your images from the library; its PNG moves to outputs/.deleted/ (returned)."""
        return self.history_.delete(image_id, self.settings.outputs_dir)

    def restore_image(self, deleted: str, original: str) -> Any:
        """Undo delete_image: its PNG back from outputs/.deleted/ to where it was, and stored again (lineage and
        settings read from the PNG); returns the restored Hit."""
        return self.history_.restore(deleted, original, self.settings.outputs_dir, self.embedder)

    # -- grid, wildcards, styles, negatives (issue 24) ----------------------------------------
    @property
    def grids(self) -> Any:
        """The X/Y grid service (studio.library.gridservice.GridService), made on first use."""
        if getattr(self, "_grids", None) is None:
            from studio.library.grid import GridRunner
            from studio.library.gridservice import GridService

            def find(keys: list[str]) -> list[Any]:
                return self.store_for(create=True).get("images", where={"cell_key": {"$in": keys}}, embeddings=True)

            from studio.library.writeback import save_pending, store_pending

            def save(result: Any, lineage: Any, vectors: Any) -> Any:
                return save_pending(result, self.settings.outputs_dir, lineage, image_vectors=vectors)

            def store(pending: list[Any]) -> None:
                store_pending(pending, lambda: (self.store_for(create=True), self.embedder))

            runner = GridRunner(self._generate_once, self.clip.get, save, store, find,
                                lambda: self.settings.sdxl_model, self.settings.home / "grids")
            self._grids = GridService(lambda text, n: self.rewrite(text, n=n),
                                      lambda text, k: self.search(text, "prompts", k), runner,
                                      lambda: self.settings.models_dir / "wildcards", self.library_prompts)
        return self._grids

    def grid(self, idea: str, *, seeds: int = 4, candidates: int = 3, retrieved: int | None = None,
             axis: str | None = None, variants: Sequence[str] = (), wildcards: bool = False,
             wildcard_mode: str = "random", expansions: int = 4, locked: Sequence[str] = (),
             on_cell: Callable[[int, int, Any], None] | None = None, on_plan: Callable[[Any], None] | None = None,
             on_preview: Callable[[Any, Any], None] | None = None, cancel: Any = None, **fields: Any) -> Any:
        """Rows of prompts (the idea, the best retrieved, rewrite candidates, typed variants, wildcard
        expansions) by columns of seeds (from `seed`) or one axis ("cfg=4,6,8"), each cell made once (a stored
        image with the same cell key is reused), CLIP-scored against the idea, stored with the grid's id and
        ranked by mean score. `fields`: the settings of GenerationRequest. Returns a GridResult."""
        from studio.generate.loras import loras_of
        from studio.generate.request import GenerationRequest

        idea = query_text(idea)
        base = replace(GenerationRequest(prompt=idea, **fields), n=1).validated()  # the first seed is fixed here
        loras_of(idea, self.settings.loras_dir)  # a missing LoRA is refused before the LLM or SDXL loads
        self.need_sdxl("A grid")
        plan = self.grids.plan(idea, base, seeds=seeds, candidates=candidates, retrieved=retrieved, axis=axis,
                               typed=variants, wildcards=wildcards, mode=wildcard_mode, expansions=expansions,
                               locked=locked)
        if on_plan:
            on_plan(plan)
        return self.grids.run(plan, on_cell=on_cell, on_preview=on_preview, cancel=cancel)

    def reopen_grid(self, grid_id: str, *, fill: bool = True, on_cell: Callable[[int, int, Any], None] | None = None,
                    on_preview: Callable[[Any, Any], None] | None = None, cancel: Any = None) -> Any:
        """An earlier grid: the cells in the store reused, only the missing ones generated (fill=False: none)."""
        if fill:
            self.need_sdxl("Filling a grid")
        return self.grids.reopen(grid_id, fill=fill, on_cell=on_cell, on_preview=on_preview, cancel=cancel)

    def grid_list(self) -> list[Any]:
        """The grids made here, newest first (GridPlans)."""
        return self.grids.listing()

    def grid_sheet(self, result: Any, path: Any = None) -> Any:
        """One labelled PNG of the grid (A1111's grid), its prompts and seeds in the metadata; returns the path."""
        from pathlib import Path

        from studio.library.sheet import save_sheet

        return save_sheet(result, Path(path) if path else self.settings.home / "grids" / f"{result.plan.grid_id}.png")

    def expand(self, template: str, *, mode: str = "random", n: int = 4, seed: int | None = 0,
               locked: Sequence[str] = (), repeats: bool = False) -> Any:
        """A template's prompts through dynamicprompts ({a|b}, __name__ from models/wildcards and the library);
        repeats: keep a random draw that repeats an earlier one (Create's batch: one image per draw)."""
        return self.grids.expand(template, mode=mode, n=n, seed=seed, locked=locked, repeats=repeats)

    def library_prompts(self, name: str, limit: int = 1000) -> list[str] | None:
        """__library/NAME__'s values: the prompts of your ★ favourites ("favourites"), or of a source."""
        from studio.library.history import FAVOURITES

        try:
            where = FAVOURITES if name in ("favourites", "favorites") else {"source": name}
            kind = "images" if name in ("favourites", "favorites") else "prompts"
            records = self.store.get(kind, where=where, limit=limit)
        except StudioError:
            return None
        return sorted({r.document for r in records if r.document}) or None

    def styles(self, refresh: bool = False, limit: int = 24) -> Any:
        """Styles mined from the stored prompts (studio.library.styles.Mined): modifier phrases counted in three
        streaming passes and grouped by co-occurrence, each with its prompt count and a stored image; your ★
        favourites make one of their own. Cached under STUDIO_HOME/cache until the prompt count changes."""
        from studio.library.styles import favourites_style
        from studio.library.stylecache import mined_styles

        store = self.store
        mined = mined_styles(store, self.settings.home / "cache" / "styles.json", refresh=refresh, limit=limit)
        from studio.library.history import FAVOURITES

        favs = [(r.document or "", r.id, r.metadata.get("file") or "") for r in store.get("images", where=FAVOURITES)]
        own = favourites_style(favs)
        if own is not None:
            mined.styles.insert(0, own)
        return mined

    def apply_style(self, idea: str, phrases: Sequence[str]) -> dict[str, Any]:
        """The idea with a style's phrases appended (those it holds left out) and its CLIP token count."""
        from studio.library.styles import apply_style

        return apply_style(idea, phrases)

    @staticmethod
    def add_negatives(negative: str, terms: Sequence[str]) -> str:
        """The negative prompt with these terms appended, those it already has left out."""
        from studio.library.negatives import add_negatives

        return add_negatives(negative or "", list(terms))

    def negatives(self, idea: str, k: int = 40, top: int = 12) -> Any:
        """The negative terms the idea's nearest stored images carry (A1111, ComfyUI, Civitai images), each
        with how many of those neighbours used it (studio.library.negatives.Negatives)."""
        from studio.library.negatives import common_negatives

        hits = self.search(idea, "images", k, Filters(nsfw=True)).results
        return common_negatives(hits, top=top)

def _rewrite_request(request: RewriteRequest | str, fields: dict[str, Any]) -> RewriteRequest:
    """The request as given, with `fields` replacing its own; an idea alone becomes one (validated later)."""
    if isinstance(request, RewriteRequest):
        return replace(request, **fields) if fields else request
    return RewriteRequest(request, **fields)
