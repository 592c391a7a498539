"""StoreStats: what the store holds, per collection and source, from the writers' counters (no scan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from studio.search import counts

KINDS = ("prompts", "images")


def kind_of(collection: str) -> str:
    """A collection's kind from its name (`prompts__<clip>`), for collections made before `kind` metadata."""
    return collection.split("__")[0]


def has_prompts(client: Any) -> bool:
    """Any prompts collection at all (of any CLIP): False for a new store, which first launch fills."""
    return any(kind_of(c.name) == "prompts" for c in client.list_collections())


@dataclass(frozen=True)
class IndexStats:
    """One collection: its kind, CLIP model, records, and records per source (exact=False: counters lag and a
    recount is under way)."""

    collection: str
    kind: str
    clip_model: str | None
    dim: int | None
    count: int
    by_source: dict[str, int] = field(default_factory=dict)
    exact: bool = True

    def named_sources(self) -> dict[str, int]:
        """by_source without the records that carried no source (counted as counts.UNKNOWN_SOURCE)."""
        return {s: n for s, n in self.by_source.items() if s != counts.UNKNOWN_SOURCE}


@dataclass(frozen=True)
class StoreStats:
    """Where the store is (a folder or a server's URL) and each of its collections."""

    store: str
    indexes: tuple[IndexStats, ...] = ()

    def sources(self, kind: str | None = None) -> set[str]:
        """Every named source held (in collections of this kind, or all)."""
        return {s for ix in self.indexes if kind in (None, ix.kind) for s in ix.named_sources()}

    def by_source(self, kind: str) -> dict[str, int]:
        """Records per source over every collection of this kind (named sources only)."""
        out: dict[str, int] = {}
        for ix in self.indexes:
            if ix.kind == kind:
                for s, n in ix.named_sources().items():
                    out[s] = out.get(s, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape `stats --json` and the Library's raw view have always had."""
        return {"store": self.store, "indexes": [
            {"collection": ix.collection, "kind": ix.kind, "clip_model": ix.clip_model, "dim": ix.dim,
             "count": ix.count, "by_source": dict(ix.by_source), "exact": ix.exact} for ix in self.indexes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StoreStats":
        return cls(data["store"], tuple(IndexStats(**ix) for ix in data.get("indexes") or []))


def read_stats(client: Any, where: str, wait: bool = False) -> StoreStats:
    """Counts per collection and source; counters that lag are recounted in the background (wait: now)."""
    indexes = []
    for col in client.list_collections():
        meta = col.metadata or {}
        total, by_source, exact = counts.read(client, col.name, background=not wait)
        indexes.append(IndexStats(col.name, meta.get("kind") or kind_of(col.name), meta.get("clip_model"),
                                  meta.get("dim"), total, by_source, exact))
    return StoreStats(where, tuple(indexes))
