"""Write-back: each generated image saved as a PNG first, then stored (image + prompt, with lineage)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from studio.errors import disk_full, disk_full_message, free_bytes
from studio.ingest.outputs import row_of
from studio.ingest.pipeline import IngestReport, ingest_rows
from studio.library.lineage import APP, Lineage
from studio.library.pngmeta import Parameters, write_png
from studio.search.store import PromptStore, prompt_id
from studio.upkeep import journal


@dataclass
class SavedImage:
    """One image of a generation: its file once written (`path` None: it was not), `stored` once its records
    are in Chroma; `error` says what went wrong and what to do."""

    path: Path | None
    image_id: str
    prompt_id: str
    seed: int
    stored: bool = False
    error: str | None = None

    @property
    def written(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path) if self.path is not None else None}


def chunk_for(result: Any, index: int, lineage: Lineage, now: datetime) -> dict[str, Any]:
    """Our JSON chunk for image `index` of a GenerationResult: settings, model and lineage."""
    req = result.request
    chunk = {"app": APP, "image_id": str(uuid.uuid4()), "prompt": req.prompt,
             "negative_prompt": req.negative_prompt, "seed": req.seeds[index], "steps": req.steps, "cfg": req.cfg,
             "sampler": req.scheduler, "width": req.width, "height": req.height, "profile": req.profile,
             "model": result.model, "timestamp": now.isoformat(timespec="milliseconds"), "lineage": lineage.to_dict()}
    if getattr(result, "loras", None):  # the prompt keeps its <lora:...> tags; this says which files they were
        chunk["loras"] = list(result.loras)
    return chunk


def parameters_for(chunk: dict[str, Any]) -> Parameters:
    from studio.generate.request import model_label

    extra = {}
    if chunk.get("loras"):  # as A1111 writes it; Civitai links the LoRAs by these hashes
        extra["Lora hashes"] = ", ".join(f"{lo['name']}: {lo['hash']}" for lo in chunk["loras"])
    return Parameters(chunk["prompt"], chunk.get("negative_prompt") or "", chunk["steps"], chunk["sampler"],
                      chunk["cfg"], chunk["seed"], chunk["width"], chunk["height"], model_label(chunk["model"]), extra)


def save_outputs(result: Any, folder: Path, lineage: Lineage,
                 write: Callable[..., Path] = write_png) -> list[tuple[SavedImage, dict[str, Any], Image.Image]]:
    """Step 1: the PNG files, each with A1111 `parameters` and our lineage chunk. An image that could not be
    written (a full disk) is returned with no path and the reason, and the others are still tried.
    `write`: how one PNG is written (write_png; a seam for tests)."""
    now = datetime.now(timezone.utc)
    saved = []
    for i, image in enumerate(result.images):
        chunk = chunk_for(result, i, lineage, now)
        name = f"{now:%Y%m%d-%H%M%S}-{chunk['seed']}-{chunk['image_id'][:8]}.png"
        entry = SavedImage(None, chunk["image_id"], prompt_id(chunk["prompt"]), chunk["seed"])
        try:
            entry.path = write(image, Path(folder) / name, parameters_for(chunk), chunk)
        except OSError as exc:
            entry.error = (disk_full_message(folder, "saving it", "generate again with this seed") if disk_full(exc)
                           else f"not saved ({type(exc).__name__}: {exc}); check that {folder} is writable, then "
                                "generate again with this seed")
        saved.append((entry, chunk, image))
    return saved


def store_outputs(items: Sequence[tuple[dict[str, Any], Image.Image, Path]], store: PromptStore, embedder: Any,
                  image_vectors: Any = None) -> IngestReport:
    """Step 2: the images and their prompts into the store, through the one ingest pipeline (the rows a
    repair of outputs/ would read from these PNGs). Counts add up without a scan: only images not yet
    stored are written. `image_vectors`: the images' CLIP vectors when the caller has them (compare)."""
    vectors = list(image_vectors) if image_vectors is not None else [None] * len(items)
    rows = [row_of(chunk, str(Path(path).resolve()), pixels=image, vector=v)
            for (chunk, image, path), v in zip(items, vectors)]
    stored = store.existing_ids("images", [r.image_name for r in rows])
    rows = [r for r in rows if r.image_name not in stored]
    return ingest_rows(rows, store, embedder, source="generated", label="write-back", incremental=True, bars=False)


def unsaved_note(saved: Sequence[SavedImage]) -> str | None:
    """What a generation's notes say when some of its images were not written: which, why, and that the
    others were (never that nothing was lost)."""
    lost = [s for s in saved if not s.written]
    if not lost:
        return None
    kept = [s for s in saved if s.written]
    seeds = ", ".join(str(s.seed) for s in lost)
    head = (f"{len(lost)} of {len(saved)} images were NOT saved (seed {seeds}): they are only on this page. "
            if kept else f"None of the {len(saved)} images was saved (seed {seeds}): they are only on this page. ")
    return head + (lost[0].error or "") + (f". Saved: {', '.join(str(s.path) for s in kept)}." if kept else "")


def black_note(result: Any) -> str | None:
    """What the notes say of images that came out all black, which is what NaN latents decode to (a LoRA
    weight far from 1, an extreme cfg, an fp16 VAE overflowing): saved as they are, but never as if fine."""
    seeds = [seed for image, seed in zip(result.images, result.request.seeds)
             if image.convert("L").getextrema() == (0, 0)]
    if not seeds:
        return None
    return (f"⚠️ Image{'s' if len(seeds) > 1 else ''} of seed {', '.join(map(str, seeds))} came out all black: the "
            "model's numbers overflowed (NaN), usually from a LoRA weight far from 1 or a very high cfg. Saved as "
            "they are; lower the weight or cfg and generate again.")


@dataclass
class Pending:
    """A generation's PNGs written and not yet stored: its journal marker (outputs/.pending), what each image
    became, and the written ones with their chunks and CLIP vectors (when the caller had them)."""

    folder: Path
    marker: Path | None
    saved: list[SavedImage]
    written: list[tuple[SavedImage, dict[str, Any], Image.Image]]
    vectors: list[Any] | None


def save_pending(result: Any, folder: Path, lineage: Lineage, image_vectors: Any = None,
                 write: Callable[..., Path] = write_png) -> Pending:
    """Step 1 of a write-back: the marker, then the PNGs (a failure on each SavedImage and in the notes)."""
    marker = journal.write_back_started(folder)
    entries = save_outputs(result, folder, lineage, write)
    saved = [s for s, _, _ in entries]
    if (black := black_note(result)) is not None and hasattr(result, "notes"):
        result.notes.append(black)
    if (note := unsaved_note(saved)) is not None and hasattr(result, "notes"):
        result.notes.append(note)
    written = [(i, e) for i, e in enumerate(entries) if e[0].written]
    if not written:
        journal.write_back_done(marker)
    vectors = None if image_vectors is None else [list(image_vectors)[i] for i, _ in written]
    return Pending(Path(folder), marker, saved, [e for _, e in written], vectors)


def store_pending(pending: Sequence[Pending], connect: Callable[[], tuple[PromptStore, Any]]) -> None:
    """Step 2, for one generation or several at once (a grid stores a row's cells in one pass: one ingest's
    fixed cost instead of four): their records, then their markers cleared. A failure is said on each image."""
    todo = [p for p in pending if p.written]
    if not todo:
        return
    items = [(chunk, img, s.path) for p in todo for (s, chunk, img) in p.written]
    vectors = None if any(p.vectors is None for p in todo) else [v for p in todo for v in p.vectors or []]
    folder = todo[0].folder
    try:
        store, embedder = connect()
        store_outputs(items, store, embedder, image_vectors=vectors)
        for p in todo:
            journal.write_back_done(p.marker)
    except Exception as exc:  # Chroma down or corrupt, disk full, a model missing: the PNGs are safe on disk
        what = (disk_full_message(folder, "adding it to the store", f"run `python -m studio ingest {folder}`")
                if disk_full(exc, free_bytes(folder)) else
                f"{type(exc).__name__}: {exc}. The image is saved; run `python -m studio ingest {folder}` to add it "
                "to the store.")
        for p in todo:
            for s, _, _ in p.written:
                s.error = what
        return
    for p in todo:
        for s, _, _ in p.written:
            s.stored = True


def write_back(result: Any, folder: Path, lineage: Lineage,
               connect: Callable[[], tuple[PromptStore, Any]], image_vectors: Any = None,
               write: Callable[..., Path] = write_png) -> list[SavedImage]:
    """Save every image, then store those written. A failure is reported on each SavedImage (and, for
    images not written, in the result's notes), not raised: the files hold everything, and the next start (or
    `python -m studio ingest <outputs>`) adds them. A marker in outputs/.pending/ lives from before the PNGs to
    after their records: a write-back cut off by a crash leaves it, and the next start completes it
    (studio.upkeep.resume)."""
    pending = save_pending(result, folder, lineage, image_vectors, write)
    store_pending([pending], connect)
    return pending.saved
