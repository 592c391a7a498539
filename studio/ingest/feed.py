"""Ingest's image feed: batches of image rows decoded (and preprocessed for CLIP) ahead of the encoder."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from studio.errors import InputError
from studio.images import open_image, read_location
from studio.ingest.row import Row

# PIL images -> one pixel tensor, first axis per image (ClipEmbedder.preprocess_images).
Preprocess = Callable[[Sequence[Any]], Any]
# Batches decoded ahead of the one the encoder is waiting for: enough to keep every worker busy while the encoder
# runs a batch, few enough that memory stays a few batches of 224 px tensors whatever the source's size (2M rows).
LOOKAHEAD = 2


def default_workers(device: str = "cpu") -> int:
    """Decode threads. Pillow's decoding and resizing and numpy's arithmetic release the GIL, so threads run in
    parallel. One PNG decodes at ~140/s on a core here while a GPU encodes CLIP ViT-B/32 at thousands a second,
    so on a GPU every core but the one feeding the GPU decodes (up to 16). On a CPU the encoder's own torch
    threads want the same cores: two workers keep ahead of it without starving it (bench/ingest.py --feed)."""
    cores = os.cpu_count() or 1
    return max(1, min(16, cores - 1)) if device == "cuda" else max(1, min(2, cores))


@dataclass
class Loaded:
    """One batch of image rows, ready for the encoder."""

    seen: int  # rows in the batch (progress counts them all)
    stored: int  # of those, already in the store: neither read nor embedded again
    todo: list[Row] = field(default_factory=list)  # rows to store, in order
    pixels: list[Any] = field(default_factory=list)  # for todo rows without a vector: PIL images, or tensors
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, why): unreadable, in row order


@dataclass
class _Failed:
    why: str


def _load(row: Row, preprocess: Preprocess | None) -> Any:
    """A row's image decoded (then preprocessed, when asked); an unreadable one comes back as _Failed. Errors of
    the preprocessing itself are not the file's fault: they propagate, as they did when the encoder ran it."""
    try:
        image = row.pixels if row.pixels is not None else open_image(read_location(row.location or ""),
                                                                     name=row.image_name)
    except (InputError, OSError, KeyError) as exc:
        return _Failed(str(exc))
    return preprocess([image])[0] if preprocess is not None else image


def _assemble(rows: list[Row], stored: set[str], loaded: Iterable[Any]) -> Loaded:
    out = Loaded(len(rows), len(stored))
    for row, item in zip([r for r in rows if r.image_name not in stored], loaded):
        if isinstance(item, _Failed):
            out.failed.append((row.image_name, item.why))
            continue
        if row.vector is None:
            out.pixels.append(item)
        out.todo.append(row)
    return out


def serial(batches: Iterable[tuple[list[Row], set[str]]]) -> Iterator[Loaded]:
    """One image at a time, where the batches are read (the reader thread); the encoder preprocesses."""
    for rows, stored in batches:
        todo = [r for r in rows if r.image_name not in stored]
        yield _assemble(rows, stored, [None if r.vector is not None else _load(r, None) for r in todo])


def pooled(batches: Iterable[tuple[list[Row], set[str]]], workers: int, preprocess: Preprocess | None = None,
           lookahead: int = LOOKAHEAD) -> Iterator[Loaded]:
    """Decode + preprocess in `workers` threads, up to `lookahead` batches ahead of the one handed out; batches
    come out in order. A batch is taken from `batches` only when one is handed out, so at most lookahead + 1
    batches are being decoded or held. Close the iterator to stop (queued work is cancelled)."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ingest-decode")
    pending: deque[tuple[list[Row], set[str], list[Future | None]]] = deque()

    def collect(rows: list[Row], stored: set[str], futures: list[Future | None]) -> Loaded:
        return _assemble(rows, stored, [None if f is None else f.result() for f in futures])

    try:
        for rows, stored in batches:
            todo = [r for r in rows if r.image_name not in stored]
            pending.append((rows, stored, [None if r.vector is not None else pool.submit(_load, r, preprocess)
                                           for r in todo]))
            if len(pending) > lookahead:
                yield collect(*pending.popleft())
        while pending:
            yield collect(*pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
