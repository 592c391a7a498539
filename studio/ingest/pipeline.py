"""The one ingest pipeline: rows (any source, our outputs and write-back included) -> dedupe -> CLIP
embed -> Chroma upsert; encoding and writing overlap; resumable."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from studio.search.results import SETTING_KEYS
from studio.ingest import feed
from studio.ingest.cells import exact_seed
from studio.ingest.dedupe import PromptCounts
from studio.ingest.row import Row
from studio.search.store import PromptStore, normalise, prompt_id

T = TypeVar("T")
# Settings kept on both prompt and image records (those of the prompt's representative image).
IMAGE_KEYS = SETTING_KEYS + ("image_nsfw", "prompt_nsfw", "part_id", "user_name", "timestamp")


@dataclass
class PromptGroup:
    """One unique prompt of a source: the first row that used it, and image counts per part (one batch
    of these is in memory at a time)."""

    id: str
    first: Row
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class IngestReport:
    source: str
    rows: int = 0
    prompts_new: int = 0
    prompts_updated: int = 0
    prompts_unchanged: int = 0
    images_new: int = 0
    images_unchanged: int = 0
    skipped_rows: int = 0  # empty prompts (rows without an image)
    images: int = 0  # rows that are an image (a file, a zip member, a dataset cell), unreadable ones included
    images_without_prompt: int = 0  # embedded all the same (findable by image), under no prompt
    unreadable: int = 0  # files that could not be opened as images at all (named in `failed`)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, why) for unreadable images
    cells_left_out: int = 0  # table cells not of their type (seed 'x'): left out, never stored as text
    cell_notes: list[str] = field(default_factory=list)  # the first few of them, said in the summary
    seconds: float = 0.0

    def summary(self) -> str:
        if self.images and self.images == self.rows:  # a folder of images: what each one held
            kinds = [f"{self.images - self.unreadable - self.images_without_prompt} with a prompt"]
            kinds += [f"{self.images_without_prompt} without"] if self.images_without_prompt else []
            kinds += [f"{self.unreadable} unreadable"] if self.unreadable else []
            text = f"{self.source}: {plural(self.images, 'image')}: {', '.join(kinds)} ->"
        else:
            text = f"{self.source}: {plural(self.rows, 'row')} ->"
        text += (f" {plural(self.prompts_new, 'new prompt')}, {self.prompts_updated} updated, {self.prompts_unchanged}"
                 f" already stored; {plural(self.images_new, 'new image')}, {self.images_unchanged} already stored")
        if self.images_without_prompt and self.images != self.rows:
            text += f"; {plural(self.images_without_prompt, 'image')} without a prompt (embedded, findable by image)"
        if self.skipped_rows:
            text += f"; {plural(self.skipped_rows, 'row')} with an empty prompt skipped"
        if self.cells_left_out:
            shown = "; ".join(self.cell_notes[:3])
            text += f"; {self.cells_left_out} cells of the wrong type left out ({shown}{' ...' if self.cells_left_out > 3 else ''})"
        if self.failed:
            shown = "; ".join(f"{name}: {why}" for name, why in self.failed[:5])
            text += f"; {len(self.failed)} unreadable images not stored ({shown}{' ...' if len(self.failed) > 5 else ''})"
        return text + f" in {self.seconds:.1f} s."


RowSource = Callable[[], Iterable[Row]]


def rereadable(rows: Iterable[Row] | RowSource, limit: int | None = None) -> RowSource:
    """A source read once per pass. A callable is called again each time (a table is streamed each pass);
    a one-shot iterable (write-back's few rows) is held as a list."""
    if callable(rows):
        make = rows
    else:
        held = list(rows)
        make = lambda: held  # noqa: E731
    return (lambda: islice(make(), limit)) if limit else make


def count_prompts(rows: Iterable[Row], report: IngestReport) -> PromptCounts:
    """Pass 1: every row counted (report.rows, images with and without a prompt, unreadable files, empty
    prompts, wrong-typed cells), prompts deduped compactly."""
    counts = PromptCounts()
    for row in rows:
        report.rows += 1
        report.images += row.location is not None or row.error is not None
        if row.error is not None:  # not stored as an image; a dataset row's prompt is still kept
            report.unreadable += 1
            report.failed.append((row.image_name, row.error))
        if row.notes:
            report.cells_left_out += len(row.notes)
            report.cell_notes.extend(row.notes[: max(0, 20 - len(report.cell_notes))])
        if not normalise(row.prompt):
            if row.location is not None:  # an image with no prompt: embedded in the images pass, findable by image
                report.images_without_prompt += 1
                counts.image_rows += 1
            elif row.error is None:
                report.skipped_rows += 1
            continue
        counts.add(prompt_id(row.prompt), row.part)
        if row.location is not None:
            counts.image_rows += 1
    return counts


def first_rows(rows: Iterable[Row], counts: PromptCounts) -> Iterator[PromptGroup]:
    """Pass 2: each unique prompt once, at its first row (which gives its settings), with its counts."""
    for row in rows:
        if not normalise(row.prompt):
            continue
        pid = prompt_id(row.prompt)
        if (by_part := counts.pop(pid)) is not None:
            yield PromptGroup(pid, row, by_part)


def image_rows(rows: Iterable[Row]) -> Iterator[Row]:
    """Pass 3: one row per image that has pixels (or a location to read them from), with a prompt or not."""
    seen: set[str] = set()
    for row in rows:
        if row.location is not None and row.error is None and row.image_name not in seen:
            seen.add(row.image_name)
            yield row


def prompt_metadata(group: PromptGroup, source: str, old: dict[str, Any] | None,
                    incremental: bool = False) -> dict[str, Any]:
    """Counts merge by part (set, never add), so running a source twice changes nothing. `incremental`
    (write-back: rows of new images only) adds to a part's count instead."""
    counts = json.loads(old.get("counts", "{}")) if old else {}
    for part, n in group.counts.items():
        counts[part] = counts.get(part, 0) + n if incremental else n
    if old:  # the representative image and its settings are set once
        before = json.loads(old.get("counts", "{}"))
        brought = [part for part in group.counts if part not in before]  # a part read again keeps its owner
        return {**old, **shared_parts(old, brought, group.first.source or source),
                "counts": json.dumps(counts, sort_keys=True), "image_count": sum(counts.values())}
    s = group.first.settings
    meta: dict[str, Any] = {key: s.get(key) for key in SETTING_KEYS}
    meta.update(
        image_id=group.first.image_name,
        prompt_nsfw=s.get("prompt_nsfw"),
        image_nsfw=s.get("image_nsfw"),
        source=group.first.source or source,
        counts=json.dumps(counts, sort_keys=True),
        image_count=sum(counts.values()),
    )
    meta.update({k: v for k, v in group.first.extra.items() if k not in ("profile", "timestamp")})
    return exact_seed(meta)


def shared_parts(old: dict[str, Any], parts: Iterable[str], source: str) -> dict[str, Any]:
    """A stored prompt that another source also holds: which of its parts that source brought (`part_sources`,
    {part: source}) and the sources that share it (`shared`, a list a `where` can find), so removing a source
    takes back exactly its parts (studio/library/removal.py). Nothing when the source is the record's own."""
    if source == old.get("source") or not parts:
        return {}
    owners = json.loads(old.get("part_sources") or "{}")
    owners.update({part: source for part in parts})
    return {"part_sources": json.dumps(owners, sort_keys=True), "shared": sorted(set(owners.values()))}


def plural(n: int, word: str) -> str:
    """'1 row', '2 rows', '0 rows'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def image_metadata(row: Row, source: str) -> dict[str, Any]:
    meta = {key: row.settings.get(key) for key in IMAGE_KEYS}
    meta.update(prompt_id=prompt_id(row.prompt) if normalise(row.prompt) else None, prompt=row.prompt.strip(),
                file=row.location, source=row.source or source, part=row.part)
    meta.update(row.extra)
    return exact_seed(meta)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Run a producer in a thread, `depth` items ahead (reading overlaps encoding)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        q.put(done)

    threading.Thread(target=produce, daemon=True, name="ingest-reader").start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class Writer:
    """Upserts in a background thread (writing overlaps encoding); errors surface on close()."""

    def __init__(self, store: PromptStore, depth: int = 2) -> None:
        self.store = store
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="ingest-writer")
        self.thread.start()

    def _run(self) -> None:
        while (job := self.q.get()) is not None:
            if self.error is None:
                try:
                    job()
                except BaseException as exc:
                    self.error = exc

    def put(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(job)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _bar(total: int, desc: str, unit: str, show: bool = True) -> Any:
    from tqdm.auto import tqdm

    # Passed only to turn bars off: an explicit disable=False would override TQDM_DISABLE=1 (benches, CI logs).
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, **({} if show else {"disable": True}))


def ingest_rows(
    rows: Iterable[Row],
    store: PromptStore,
    embedder: Any,
    source: str = "diffusiondb",
    label: str = "source",
    batch_size: int = 64,
    limit: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    incremental: bool = False,
    bars: bool = True,
    keys: RowSource | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Write rows into the store: prompts first, then images; what is already stored is not re-embedded.
    rows: a callable giving a fresh iterator (read in up to three streaming passes: counts, prompts,
    images, so memory holds compact counts and a batch, never the source) or a list of rows.
    incremental: the rows are new images only (write-back), so their counts add to the stored ones.
    bars: tqdm bars on stderr (off for the few images of a write-back).
    keys: the same rows made lighter for the counting pass (prompt, part, location and notes are all it
    reads: read_table's light rows), when the source can make them.
    workers: image decode threads (None: feed.default_workers for the embedder's device; 0: no pool)."""
    report = IngestReport(label)
    start = time.perf_counter()
    read = rereadable(rows, limit)
    counts = count_prompts((rereadable(keys, limit) if keys is not None else read)(), report)
    try:
        _ingest_prompts(first_rows(read(), counts), len(counts), store, embedder, source, batch_size, report,
                        progress, incremental, bars)
        if counts.image_rows:
            _ingest_images(image_rows(read()), counts.image_rows, store, embedder, source, max(1, batch_size // 2),
                           report, progress, bars,
                           feed.default_workers(getattr(embedder, "device", "cpu")) if workers is None else workers)
    finally:
        store.flush_counts()
    report.seconds = time.perf_counter() - start
    return report


def _ingest_prompts(groups: Iterable[PromptGroup], total: int, store: PromptStore, embedder: Any, source: str,
                    batch_size: int, report: IngestReport, progress: Callable | None, incremental: bool = False,
                    bars: bool = True) -> None:
    def prepare() -> Iterator[tuple[list[PromptGroup], dict[str, dict]]]:
        for chunk in batched(groups, batch_size):
            stored = store.existing_ids("prompts", [g.id for g in chunk])  # ids only: most are new
            old = {r.id: r.metadata for r in store.get("prompts", sorted(stored))} if stored else {}
            yield chunk, old

    writer = Writer(store)
    bar, done = _bar(total, "prompts", "prompt", bars), 0
    try:
        for chunk, old in prefetch(prepare()):
            new = [g for g in chunk if g.id not in old]
            changed = [(g.id, prompt_metadata(g, source, old[g.id], incremental)) for g in chunk if g.id in old]
            changed = [(pid, meta) for pid, meta in changed if meta != old[pid]]
            report.prompts_unchanged += len(chunk) - len(new) - len(changed)
            report.prompts_updated += len(changed)
            if changed:
                writer.put(lambda c=changed: store.update_metadata("prompts", [i for i, _ in c], [m for _, m in c]))
            if new:
                texts = [g.first.prompt.strip() for g in new]
                vectors = embedder.embed_texts(texts, batch_size=batch_size)
                metas = [prompt_metadata(g, source, None) for g in new]
                writer.put(lambda i=[g.id for g in new], v=vectors, m=metas, d=texts: store.add("prompts", i, v, m, d))
                report.prompts_new += len(new)
            bar.update(len(chunk))
            done += len(chunk)  # not bar.n: a disabled bar (TQDM_DISABLE) does not count
            if progress:
                progress("prompts", done, total)
    finally:
        bar.close()
        writer.close()


def _ingest_images(rows: Iterable[Row], total: int, store: PromptStore, embedder: Any, source: str,
                   batch_size: int, report: IngestReport, progress: Callable | None, bars: bool = True,
                   workers: int = 0) -> None:
    """workers > 0: images decoded and preprocessed in that many threads, a few batches ahead of the encoder
    (feed.pooled); 0: decoded one by one in the reader thread (feed.serial), the encoder preprocessing."""
    def batches() -> Iterator[tuple[list[Row], set[str]]]:
        for chunk in batched(rows, batch_size):
            yield chunk, set(store.existing_ids("images", [r.image_name for r in chunk]))

    # Only an embedder with both halves (ClipEmbedder) is fed tensors; any other gets decoded images.
    split = hasattr(embedder, "preprocess_images") and hasattr(embedder, "encode_pixels")
    preprocess = embedder.preprocess_images if workers and split else None
    loaded = feed.pooled(prefetch(batches()), workers, preprocess) if workers else prefetch(feed.serial(batches()))
    writer = Writer(store)
    bar, done = _bar(total, "images", "image", bars), 0
    try:
        for chunk in loaded:
            report.images_unchanged += chunk.stored
            report.failed.extend(chunk.failed)
            if chunk.todo:
                vectors = _image_vectors(chunk.todo, chunk.pixels, embedder, batch_size, preprocess is not None)
                metas = [image_metadata(r, source) for r in chunk.todo]
                writer.put(lambda c=chunk.todo, v=vectors, m=metas: store.add(
                    "images", [r.image_name for r in c], v, m, [r.prompt.strip() for r in c]))
                report.images_new += len(chunk.todo)
            bar.update(chunk.seen)
            done += chunk.seen
            if progress:
                progress("images", done, max(total, done))
    finally:
        getattr(loaded, "close", lambda: None)()  # an interrupted ingest stops the decode workers too
        bar.close()
        writer.close()


def _image_vectors(rows: Sequence[Row], pixels: Sequence[Any], embedder: Any, batch_size: int,
                   preprocessed: bool = False) -> Any:
    """CLIP vectors for rows, in order: those a row brings (compare has them) and the rest embedded now, from
    decoded images or (preprocessed) from pixel tensors, in the same batches either way."""
    import numpy as np

    if not pixels:
        fresh = iter([])
    elif preprocessed:
        import torch

        fresh = iter(np.concatenate([embedder.encode_pixels(torch.stack(list(pixels[s : s + batch_size])))
                                     for s in range(0, len(pixels), batch_size)]))
    else:
        fresh = iter(embedder.embed_images(pixels, batch_size=batch_size))
    return np.stack([np.asarray(r.vector, np.float32) if r.vector is not None else next(fresh) for r in rows])
