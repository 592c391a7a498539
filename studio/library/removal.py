"""Removing a source ingested by mistake: its images and prompts go, prompts other sources share stay with
their own counts, and the store's counters stay exact; paged through `where` filters, never the whole store."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from studio.errors import InputError
from studio.ingest.outputs import OUTPUTS_PART
from studio.search.store import PromptStore, Record

PAGE = 2_000  # records a page: a page's ids and metadata in memory at a time, whatever the source's size
SHARING = ("part_sources", "shared")  # the keys shared_parts() (studio/ingest/pipeline.py) writes
Progress = Callable[[str, int, int], None]


@dataclass
class RemovalReport:
    source: str
    images_removed: int = 0
    prompts_removed: int = 0
    prompts_kept: int = 0  # prompts another source also holds: kept, without this source's parts

    def summary(self) -> str:
        from studio.ingest.pipeline import plural

        text = (f"Removed {self.source}: {plural(self.prompts_removed, 'prompt')} and "
                f"{plural(self.images_removed, 'image')}")
        if self.prompts_kept:
            text += (f"; {plural(self.prompts_kept, 'prompt')} that other sources also hold kept, "
                     f"without {self.source}'s counts")
        return text + "."


def _pages(store: PromptStore, kind: str, where: dict[str, Any]) -> Any:
    """The first PAGE records matching `where`, again and again: each page's records must leave the filter
    (deleted or changed) before the next is read, so a page that comes back the same stops the loop."""
    seen: list[str] | None = None
    while page := store.get(kind, where=where, limit=PAGE):
        ids = [r.id for r in page]
        if ids == seen:
            raise RuntimeError(f"removing records of {where}: a page of {kind} was not changed")
        seen = ids
        yield page


def _counts(meta: dict[str, Any]) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(meta.get("counts") or "{}").items()}
    except (TypeError, ValueError):
        return {}


def _owners(meta: dict[str, Any]) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in json.loads(meta.get("part_sources") or "{}").items()}
    except (TypeError, ValueError):
        return {}


def remove_source(store: PromptStore, source: str, progress: Progress | None = None) -> RemovalReport:
    """Every image of `source`, then every prompt whose parts were all its own; a prompt that other sources
    also brought keeps their parts (and takes one of them as its source)."""
    source = (source or "").strip()
    if not source:
        raise InputError("Pick the source to remove.")
    report = RemovalReport(source)
    tick = progress or (lambda phase, done, total: None)
    # 1. Its images. Images under a prompt of another source took one count each under `outputs` (write-backs
    # and the user's folders add, never set): those counts go back one by one.
    for page in _pages(store, "images", {"source": source}):
        minus = Counter(r.metadata["prompt_id"] for r in page
                        if r.metadata.get("prompt_id") and str(r.metadata.get("part") or OUTPUTS_PART) == OUTPUTS_PART)
        store.delete("images", [r.id for r in page])
        report.images_removed += len(page)
        _uncount_outputs(store, minus)
        tick("images removed", report.images_removed, 0)
    # 2. Prompts that are its own (their `source`), then prompts of others it shares.
    for where in ({"source": source}, {"shared": {"$contains": source}}):
        for page in _pages(store, "prompts", where):
            _prompts(store, page, source, report)
            tick("prompts removed", report.prompts_removed + report.prompts_kept, 0)
    return report


def _uncount_outputs(store: PromptStore, minus: Counter) -> None:
    if not minus:
        return
    ids, metas = [], []
    for rec in store.get("prompts", sorted(minus)):
        by_part = _counts(rec.metadata)
        by_part[OUTPUTS_PART] = max(0, by_part.get(OUTPUTS_PART, 0) - minus[rec.id])
        by_part = {k: v for k, v in by_part.items() if v}
        ids.append(rec.id)
        metas.append({"counts": json.dumps(by_part, sort_keys=True), "image_count": sum(by_part.values())})
    store.update_metadata("prompts", ids, metas)


def _prompts(store: PromptStore, page: list[Record], source: str, report: RemovalReport) -> None:
    """One page: a prompt left with no other source's parts goes; one left with some is kept, without
    `source`'s parts, under the source of its largest remaining part when `source` was its own."""
    gone: list[str] = []
    kept: list[tuple[str, dict[str, Any], list[str], str | None]] = []  # (id, metadata, keys to drop, old source)
    for rec in page:
        meta, owners = rec.metadata, _owners(rec.metadata)
        own = meta.get("source")
        by_part = _counts(meta)
        # A part is the removed source's when it says so, or when unclaimed on a record that is its own; its
        # `outputs` counts were taken back image by image above.
        for part in list(by_part):
            mine = owners.get(part, own) == source
            if mine and part != OUTPUTS_PART:
                del by_part[part]
        by_part = {k: v for k, v in by_part.items() if v}
        owners = {p: s for p, s in owners.items() if s != source and p in by_part}
        if not by_part:
            gone.append(rec.id)
            continue
        new_source = own
        if own == source:
            biggest = max(by_part, key=lambda p: by_part[p])
            new_source = owners.get(biggest) or _image_source(store, rec.id) or source
            if new_source == source:  # counts no other source backs: nothing of anyone else's to keep
                gone.append(rec.id)
                continue
        owners = {p: s for p, s in owners.items() if s != new_source}
        out: dict[str, Any] = {"counts": json.dumps(by_part, sort_keys=True), "image_count": sum(by_part.values()),
                               "source": new_source}
        drop = list(SHARING)
        if owners:
            out.update(part_sources=json.dumps(owners, sort_keys=True), shared=sorted(set(owners.values())))
            drop = []
        if own == source and meta.get("image_id") and not store.existing_ids("images", [meta["image_id"]]):
            drop.append("image_id")  # its representative image was the removed source's (gone above)
        kept.append((rec.id, out, drop, own if new_source != own else None))
    if gone:
        store.delete("prompts", gone)
        report.prompts_removed += len(gone)
    for rid, out, drop, was in kept:  # one by one: each drops its own keys
        store.update_metadata("prompts", [rid], [out], drop=drop, was=None if was is None else [was])
    report.prompts_kept += len(kept)


def _image_source(store: PromptStore, prompt_id: str) -> str | None:
    """The source of one stored image of this prompt (a prompt whose `outputs` images were the user's and ours)."""
    found = store.get("images", where={"prompt_id": prompt_id}, limit=1)
    return str(found[0].metadata.get("source")) if found and found[0].metadata.get("source") else None
