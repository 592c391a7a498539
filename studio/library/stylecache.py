"""Mined styles read from a store in pages (one streaming pass each) and cached until the prompt count changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from studio.library.styles import Mined, Style, mine

PAGE = 5_000


def pages(store: Any, kind: str) -> Iterator[Any]:
    """Every record of a collection, a page at a time (memory holds one page)."""
    offset = 0
    while True:
        records = store.get(kind, limit=PAGE, offset=offset)
        yield from records
        if len(records) < PAGE:
            return
        offset += PAGE


def mined_styles(store: Any, cache: Path, *, refresh: bool = False, limit: int = 24) -> Mined:
    total = store.count("prompts")
    key = {"prompts": total, "images": store.count("images"), "limit": limit, "version": 1}
    if not refresh and cache.is_file():
        try:
            raw = json.loads(cache.read_text(encoding="utf-8"))
            if raw.get("key") == key:
                return Mined(raw["prompts"], raw["counts"], [Style(**s) for s in raw["styles"]], raw["passes"],
                             raw["pruned"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is mined again
    mined = mine(lambda: (r.document or "" for r in pages(store, "prompts")),
                 lambda: ((r.document or "", r.id, r.metadata.get("file") or "") for r in pages(store, "images")),
                 limit=limit)
    cache.parent.mkdir(parents=True, exist_ok=True)
    keep = dict(sorted(mined.counts.items(), key=lambda kv: -kv[1])[:5_000])  # the cache stays small
    cache.write_text(json.dumps({"key": key, "prompts": mined.prompts, "counts": keep, "passes": mined.passes,
                                 "pruned": mined.pruned, "styles": [s.to_dict() for s in mined.styles]}),
                     encoding="utf-8")
    return mined
