"""Our generations' newest-first index: the KEEP newest by `created`, kept by the writers in the images collection's
metadata, so History's first page is one metadata read and a get by ids, whatever order the records came in."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

KEY = "newest_generated"
SOURCE = "generated"  # History's "mine"
KEEP = 600  # History's largest page (500, Compare's list of earlier comparisons) and a margin


def _stored(meta: dict[str, Any] | None) -> tuple[bool, dict[str, float]] | None:
    """(whether it holds every record of SOURCE, {id: created}); None when not kept (a store from before)."""
    raw = (meta or {}).get(KEY)
    try:
        data = json.loads(raw) if raw else None
        return (bool(data["all"]), {str(i): float(c) for c, i in data["newest"]}) if data else None
    except (TypeError, ValueError, KeyError):
        return None


def _write(col: Any, every: bool, created: dict[str, float]) -> None:
    order = sorted(created.items(), key=lambda kv: (-kv[1], kv[0]))
    meta = dict(col.metadata or {})
    meta[KEY] = json.dumps({"all": every and len(order) <= KEEP, "newest": [[c, i] for i, c in order[:KEEP]]},
                           separators=(",", ":"))
    col.modify(metadata=meta)


def start(col: Any) -> None:
    """A new, empty collection: the index starts empty and complete."""
    if _stored(col.metadata) is None and col.count() == 0:
        _write(col, True, {})


def note(client: Any, name: str, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
    """Records just added (call under counts.LOCK, right after the add): ours enter the index when they are
    among the KEEP newest (an old PNG ingested late goes in its place, or, older than all kept, nowhere)."""
    new = {str(i): float((m or {}).get("created") or 0.0) for i, m in zip(ids, metadatas)
           if (m or {}).get("source") == SOURCE}
    if not new:
        return
    col = client.get_collection(name, embedding_function=None)  # fresh: other processes write too
    kept = _stored(col.metadata)
    if kept is None:
        return  # not kept yet: the first History read builds it
    every, created = kept
    if not every and len(created) >= KEEP and max(new.values()) < min(created.values()):
        return  # older than every kept one: the index is unchanged
    _write(col, every, created | new)


def forget(client: Any, name: str, ids: Iterable[str]) -> None:
    """Records just deleted (call under counts.LOCK)."""
    col = client.get_collection(name, embedding_function=None)
    kept = _stored(col.metadata)
    gone = set(ids)
    if kept is not None and gone & kept[1].keys():
        _write(col, kept[0], {i: c for i, c in kept[1].items() if i not in gone})


def rebuild(col: Any) -> list[str]:
    """Read every record of SOURCE (the one slow path: a store from before the index, or one a killed
    process left behind) and keep the newest; returns their ids, newest first."""
    metas = col.get(where={"source": SOURCE}, include=["metadatas"])
    created = {str(i): float((m or {}).get("created") or 0.0) for i, m in zip(metas["ids"], metas["metadatas"])}
    _write(col, True, created)
    return [i for i, _ in sorted(created.items(), key=lambda kv: (-kv[1], kv[0]))]


def read(client: Any, name: str) -> tuple[bool, list[str]] | None:
    """(whether these are all of SOURCE, their ids newest first, at most KEEP); None when not kept."""
    kept = _stored(client.get_collection(name, embedding_function=None).metadata)
    if kept is None:
        return None
    every, created = kept
    return every, [i for i, _ in sorted(created.items(), key=lambda kv: (-kv[1], kv[0]))]
