"""Write-back: each generated image saved as a PNG first, then stored (image + prompt, with lineage)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from studio.images import open_image
from studio.ingest import IngestReport, batched, prompt_id
from studio.results import SETTING_KEYS
from studio.pngmeta import Parameters, write_png
from studio.sources import read_outputs
from studio.store import PromptStore

OUTPUTS_PART = "outputs"  # the `counts` key of generated images on a prompt record


@dataclass
class Lineage:
    """Where a generation came from; stored on its records and in its PNG."""

    idea: str | None = None  # what the user typed before any rewrite
    retrieved_ids: list[str] = field(default_factory=list)  # prompt ids given to the LLM as context
    llm_model: str | None = None
    parent: str | None = None  # the record this generation derives from (a prompt or image id)
    comparison_id: str | None = None  # shared by the images of one compare()
    variant: str | None = None  # in a comparison: "original" | "retrieved" | "rewritten"
    score: float | None = None  # CLIP similarity of the image to the idea


@dataclass
class SavedImage:
    """One written image: the file always; `stored` once its records are in Chroma."""

    path: Path
    image_id: str
    prompt_id: str
    seed: int
    stored: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def chunk_for(result: Any, index: int, lineage: Lineage, now: datetime) -> dict[str, Any]:
    """Our JSON chunk for image `index` of a GenerationResult: settings, model and lineage."""
    req = result.request
    return {"app": "prompt-studio", "image_id": str(uuid.uuid4()), "prompt": req.prompt,
            "negative_prompt": req.negative_prompt, "seed": req.seeds[index], "steps": req.steps, "cfg": req.cfg,
            "sampler": req.scheduler, "width": req.width, "height": req.height, "profile": req.profile,
            "model": result.model, "timestamp": now.isoformat(timespec="milliseconds"), "lineage": asdict(lineage)}


def parameters_for(chunk: dict[str, Any]) -> Parameters:
    from studio.generate import model_label

    return Parameters(chunk["prompt"], chunk.get("negative_prompt") or "", chunk["steps"], chunk["sampler"],
                      chunk["cfg"], chunk["seed"], chunk["width"], chunk["height"], model_label(chunk["model"]))


def save_outputs(result: Any, folder: Path, lineage: Lineage) -> list[tuple[SavedImage, dict[str, Any], Image.Image]]:
    """Step 1: the PNG files, each with A1111 `parameters` and our lineage chunk. Nothing is lost after this."""
    now = datetime.now(timezone.utc)
    saved = []
    for i, image in enumerate(result.images):
        chunk = chunk_for(result, i, lineage, now)
        name = f"{now:%Y%m%d-%H%M%S}-{chunk['seed']}-{chunk['image_id'][:8]}.png"
        path = write_png(image, Path(folder) / name, parameters_for(chunk), chunk)
        saved.append((SavedImage(path, chunk["image_id"], prompt_id(chunk["prompt"]), chunk["seed"]), chunk, image))
    return saved


def _flat_lineage(chunk: dict[str, Any]) -> dict[str, Any]:
    lin = dict(chunk.get("lineage") or {})
    lin["retrieved_ids"] = json.dumps(lin.get("retrieved_ids") or [])  # Chroma keeps scalars only
    lin["sdxl_model"] = chunk.get("model")
    return lin


def _created(chunk: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(chunk["timestamp"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def image_metadata(chunk: dict[str, Any], path: Path, source: str = "generated") -> dict[str, Any]:
    meta = {key: chunk.get(key) for key in SETTING_KEYS}
    meta.update(_flat_lineage(chunk), prompt_id=prompt_id(chunk["prompt"]), prompt=chunk["prompt"],
                negative_prompt=chunk.get("negative_prompt") or None, file=str(Path(path).resolve()), source=source,
                part=OUTPUTS_PART, profile=chunk.get("profile"), timestamp=chunk.get("timestamp"),
                created=_created(chunk))
    return meta


def prompt_metadata(chunk: dict[str, Any], old: dict[str, Any] | None, generated: int,
                    source: str = "generated") -> dict[str, Any]:
    """A new prompt gets the settings and lineage of its first image; a stored one (DiffusionDB's,
    say) keeps its own and only learns how many images we generated from it."""
    counts = json.loads(old.get("counts", "{}")) if old else {}
    counts[OUTPUTS_PART] = generated  # set, never add: writing the same image twice changes nothing
    if old:
        return {**old, "counts": json.dumps(counts, sort_keys=True), "image_count": sum(counts.values())}
    meta = {key: chunk.get(key) for key in SETTING_KEYS}
    meta.update(_flat_lineage(chunk), image_id=chunk["image_id"], source=source, created=_created(chunk),
                negative_prompt=chunk.get("negative_prompt") or None, counts=json.dumps(counts, sort_keys=True),
                image_count=generated)
    return meta


def store_outputs(items: Sequence[tuple[dict[str, Any], Image.Image, Path]], store: PromptStore, embedder: Any,
                  source: str = "generated", image_vectors: Any = None) -> None:
    """Step 2: image records, then prompt records (so a prompt record never lacks its image).
    Idempotent: ids come from the PNG, counts are recounted, so a repeat or a repair changes nothing.
    `image_vectors`: the images' CLIP vectors when the caller has them already (compare scores with them)."""
    if not items:
        return
    if image_vectors is None:
        image_vectors = embedder.embed_images([img for _, img, _ in items])
    store.upsert("images", [c["image_id"] for c, _, _ in items], image_vectors,
                 [image_metadata(c, p, source) for c, _, p in items], [c["prompt"] for c, _, _ in items])
    firsts: dict[str, dict[str, Any]] = {}
    for chunk, _, _ in items:
        firsts.setdefault(prompt_id(chunk["prompt"]), chunk)
    old = {r.id: r.metadata for r in store.get("prompts", list(firsts))}
    metas = {}
    for pid, chunk in firsts.items():
        generated = store.count("images", where={"$and": [{"prompt_id": pid}, {"part": OUTPUTS_PART}]})
        metas[pid] = prompt_metadata(chunk, old.get(pid), generated, source)
    new = [pid for pid in firsts if pid not in old]
    if new:
        texts = [firsts[pid]["prompt"] for pid in new]
        store.upsert("prompts", new, embedder.embed_texts(texts), [metas[pid] for pid in new], texts)
    kept = [pid for pid in firsts if pid in old]
    if kept:
        store.update_metadata("prompts", kept, [metas[pid] for pid in kept])


def write_back(result: Any, folder: Path, lineage: Lineage,
               connect: Callable[[], tuple[PromptStore, Any]], image_vectors: Any = None) -> list[SavedImage]:
    """Save every image, then store them. A store failure is reported on each SavedImage, not
    raised: the files hold everything, and `python -m studio ingest <outputs>` adds them later."""
    saved = save_outputs(result, folder, lineage)
    try:
        store, embedder = connect()
        store_outputs([(chunk, img, s.path) for s, chunk, img in saved], store, embedder, image_vectors=image_vectors)
    except Exception as exc:  # Chroma down, disk full, a model missing: the PNGs are safe on disk
        why = (f"{type(exc).__name__}: {exc}. The image is saved; run `python -m studio ingest {folder}` "
               "to add it to the store.")
        for s, _, _ in saved:
            s.error = why
        return [s for s, _, _ in saved]
    for s, _, _ in saved:
        s.stored = True
    return [s for s, _, _ in saved]


def repair(folder: Path, store: PromptStore, embedder: Any, batch_size: int = 16,
           progress: Callable[[str, int, int], None] | None = None) -> IngestReport:
    """Ingest an outputs folder: store every image (and its prompt) not yet stored, from the PNGs' own metadata."""
    report = IngestReport(str(folder))
    start = time.perf_counter()
    rows = list(read_outputs(Path(folder)))
    report.rows = len(rows)
    have_images = store.existing_ids("images", [r.image_name for r in rows])
    have_prompts = store.existing_ids("prompts", list({prompt_id(r.prompt) for r in rows}))
    todo = [r for r in rows if r.image_name not in have_images or prompt_id(r.prompt) not in have_prompts]
    report.images_unchanged = len(rows) - len([r for r in todo if r.image_name not in have_images])
    for done, chunk_rows in enumerate(batched(todo, batch_size), 1):
        items = []
        for row in chunk_rows:
            try:
                items.append((row.settings["studio"], open_image(row.location or ""), Path(row.location or "")))
            except Exception as exc:  # one unreadable file must not stop the rest
                report.failed.append((row.image_name, str(exc)))
        new_prompts = {prompt_id(c["prompt"]) for c, _, _ in items} - have_prompts
        by_source: dict[str, list] = {}
        for item in items:
            by_source.setdefault("generated" if item[0].get("app") == "prompt-studio" else "user", []).append(item)
        for source, group in by_source.items():
            store_outputs(group, store, embedder, source)
        have_prompts |= new_prompts
        report.images_new += len([c for c, _, _ in items if c["image_id"] not in have_images])
        report.prompts_new += len(new_prompts)
        if progress:
            progress("images", min(done * batch_size, len(todo)), len(todo))
    report.prompts_unchanged = len({prompt_id(r.prompt) for r in rows}) - report.prompts_new
    report.seconds = time.perf_counter() - start
    return report

