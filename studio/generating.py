"""The Studio's generation face: SDXL on the GPU (taking turns with the LLM), compare, history."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from studio.config import Settings
from studio.images import ImageSource, open_image
from studio.results import SearchResult, label_of
from studio.sources import IMAGE_SUFFIXES
from studio.weights import locate


class Generating:
    """Mixed into studio.service.Studio: uses its settings, _lock, embedder, store, search and rewrite."""

    _generator: Any  # set by Studio.__init__

    @property
    def generator(self) -> Any:
        """SDXL (studio.generate.Generator), loaded once on first use, after making room on the GPU."""
        with self._lock:
            if self._generator is None:
                from studio.generate import Generator

                plan = self.make_room("sdxl")
                self._generator = Generator.load(self.settings, placement=plan.placement if plan else None)
            return self._generator

    def make_room(self, role: str) -> Any:
        """Before `role` ("sdxl" | "llm") takes the GPU: unload the other one where VRAM is short
        (studio.memory.plan_load). Returns the MemoryPlan; None without CUDA (nothing to share)."""
        from studio.memory import cuda_memory, llm_need, plan_load

        memory = None if self.settings.device == "cpu" else cuda_memory()
        if memory is None:
            return None
        held: dict[str, int] = {}
        if self._generator is not None:
            held["sdxl"] = self._generator.vram_bytes()
        rewriter = self._rewriter  # type: ignore[attr-defined]  # studio.rewriting.Rewriting
        if rewriter is not None:
            held["llm"] = rewriter.vram_bytes()
        need = llm_need(_gguf_bytes(self.settings)) if role == "llm" else None
        plan = plan_load(role, memory[0], held, need)
        for other in plan.unload:
            if other == "sdxl" and self._generator is not None:
                self._generator.place("cpu")  # kept in RAM: coming back is seconds, not a reload
            elif other == "llm":
                self.unload_llm()
        if plan.unload:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()
        return plan

    def _ready_generator(self) -> Any:
        gen = self.generator
        if gen.device == "cuda" and gen.placement == "cpu":  # moved aside for the LLM: take the GPU back
            plan = self.make_room("sdxl")
            gen.place(plan.placement if plan else "gpu")
        return gen

    def generate(self, request: Any, *, on_preview: Callable[[Any], None] | None = None, cancel: Any = None,
                 lineage: Any = None, **fields: Any) -> Any:
        """A prompt (or a GenerationRequest) -> GenerationResult: images saved to outputs/ as PNGs with
        A1111 metadata, then stored (source=generated) with `lineage` (studio.writeback.Lineage).
        `fields` (negative_prompt, seed, steps, cfg, width, height, n, scheduler, profile) fill the
        request; bad values are refused before any model loads. `cancel`: a threading.Event."""
        from studio.generate import GenerationRequest
        from studio.writeback import Lineage, write_back

        if isinstance(request, GenerationRequest):
            req = replace(request, **fields) if fields else request
        else:
            req = GenerationRequest(prompt=request, **fields)
        req = req.validated()
        result = self._ready_generator().generate(req, on_preview=on_preview, cancel=cancel)
        if result.images:
            result.saved = write_back(result, self.settings.outputs_dir, lineage or Lineage(), self._connect)
        return result

    def _connect(self) -> tuple[Any, Any]:
        """The store and CLIP for write-back, opened only once the PNGs are safe on disk."""
        return self.store_for(create=True), self.embedder

    def compare(self, idea: str, seed: int | None = None, *, on_preview: Callable[[str, Any], None] | None = None,
                cancel: Any = None, **fields: Any) -> Any:
        """The idea as typed, the best retrieved prompt and the rewritten prompt, generated with one
        seed and the same settings (one image each), CLIP-scored against the idea and stored with a
        shared comparison id. on_preview(variant, Preview)."""
        from studio.compare import CompareEntry, CompareResult, clip_score, new_comparison_id, variants
        from studio.generate import GenerationRequest
        from studio.writeback import Lineage, write_back

        idea = self._text(idea)
        base = replace(GenerationRequest(prompt=idea, seed=seed, **fields), n=1).validated()  # the seed is fixed here
        rewritten = self.rewrite(idea)  # type: ignore[attr-defined]  # the LLM first; SDXL then makes room
        tried, notes = variants(idea, rewritten)
        out = CompareResult(idea, int(base.seed or 0), new_comparison_id(), notes=notes)
        retrieved_ids = [hit.id for hit in rewritten.retrieved]
        idea_vector = self.embedder.embed_texts([idea])[0]  # once; each image is embedded once, for score and store
        for v in tried:
            preview = (lambda p, name=v.name: on_preview(name, p)) if on_preview else None
            result = self._ready_generator().generate(replace(base, prompt=v.prompt), on_preview=preview, cancel=cancel)
            if result.cancelled:
                out.cancelled = True
                break
            vectors = self.embedder.embed_images(result.images[:1])
            score = clip_score(vectors[0], idea_vector)
            lineage = Lineage(idea=idea, retrieved_ids=retrieved_ids, llm_model=getattr(rewritten, "model", None),
                              parent=v.parent, comparison_id=out.comparison_id, variant=v.name, score=score)
            result.saved = write_back(result, self.settings.outputs_dir, lineage, self._connect, image_vectors=vectors)
            out.entries.append(CompareEntry(v.name, v.prompt, result, score))
        return out

    def comparison(self, comparison_id: str) -> list[Any]:
        """The stored images (Hits) of one compare(), found by their shared comparison id."""
        records = self.store.get("images", where={"comparison_id": comparison_id})
        return [self._hit(r, "images") for r in records]

    def history(self, query: str | ImageSource | None = None, limit: int = 20) -> SearchResult:
        """Our own generations: newest first, or (query: text, or an image) the closest ones."""
        mine = {"source": "generated"}
        if query is None or (isinstance(query, str) and not query.strip()):
            records = self.store.get("images", where=mine)
            records.sort(key=lambda r: (-float(r.metadata.get("created") or 0.0), r.metadata.get("seed") or 0))
            return SearchResult("", "history", [self._hit(r, "images") for r in records[:limit]])
        if isinstance(query, str) and not _is_image_path(query):
            vector = self.embedder.embed_texts([self._text(query)])[0]
        else:
            vector = self.embedder.embed_images([open_image(query)])[0]
        # Chroma's `where` here, not the over-fetch of _query: our images are few among millions.
        records = self.store.query("images", vector, limit, where=mine)
        return SearchResult(label_of(query), "history", [self._hit(r, "images") for r in records])


def _gguf_bytes(settings: Settings) -> int:
    loc = locate("llm", settings)
    return loc.path.stat().st_size if loc.path is not None and loc.path.is_file() else 0


def _is_image_path(text: str) -> bool:
    path = Path(text.strip())
    return len(text) < 4096 and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
