"""PromptStore: the `prompts` and `images` collections in Chroma, one pair per CLIP model."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlparse

import numpy as np

from studio.errors import StoreDamagedError, StoreMismatchError, StoreUnavailableError, StudioError
from studio.search import counts, health, lock, newest

KINDS = ("prompts", "images")
SCHEMA = 1
# bench/hnsw.py at 1M stand-in prompts on 2 cores: Chroma's defaults (max_neighbors 16) plateau at recall@10
# 0.947 (ef_search 800 and 1600 alike; 0.868 at 200) adding 865/s; max_neighbors 32 reaches 0.968 at ef_search
# 400 and 0.979 at 800 (p95 4.5 / 7.4 ms raw) adding 707/s. On the full 1.52M store (bench/scale.py --ef) recall@10
# is 0.944 / 0.978 / 0.979 at ef_search 400 / 800 / 1200 (raw p95 5.0 / 6.3 / 9.3 ms): 800 is the knee.
# Stores made before keep their graph and get this ef_search when opened (deepen()).
HNSW = {"space": "cosine", "ef_search": 800, "max_neighbors": 32}
PROBE_RECORDS = 4  # stored prompts re-encoded to check an index made before fingerprints
PROBE_AGREEMENT = 0.98  # the same model gives ~1.0 (fp16 vs fp32 ~0.999); another gives ~0


@dataclass
class Record:
    """One stored record as Chroma returns it; distance is cosine distance (0 = same direction)."""

    id: str
    document: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    distance: float | None = None


def normalise(prompt: str) -> str:
    """The dedupe key: Unicode-normalised, whitespace collapsed, lower case."""
    return " ".join(unicodedata.normalize("NFKC", prompt).split()).lower()


def prompt_id(prompt: str) -> str:
    """A prompt record's id: one record per normalised prompt text."""
    return "p-" + hashlib.sha1(normalise(prompt).encode("utf-8")).hexdigest()[:24]


def model_key(clip_model: str) -> str:
    """A collection-name-safe key for a CLIP model: its last path part ('clip-vit-base-patch32')."""
    name = Path(clip_model.rstrip("/\\")).name or clip_model
    key = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "clip"
    return key[:200]


def close_client(store_dir: Path) -> None:
    """Stop Chroma's cached system for an embedded store (it keeps the index in memory) and let the store go, so
    another process may write it; opening it again in this process reads it afresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.pop(str(store_dir), None)
    SharedSystemClient._identifier_to_refcount.pop(str(store_dir), None)
    if system is not None:
        system.stop()
    lock.release(store_dir)


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def open_client(store_dir: Path, chroma_url: str | None = None) -> Any:
    """The embedded PersistentClient under store_dir, held by this process (studio.search.lock) and refused when
    its files are damaged (studio.search.health), or an HttpClient when chroma_url is set."""
    import chromadb

    try:
        if chroma_url:
            url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
            port = url.port or (443 if url.scheme == "https" else 8000)
            client = chromadb.HttpClient(
                host=url.hostname or "127.0.0.1", port=port, ssl=url.scheme == "https", settings=_chroma_settings()
            )
            client.heartbeat()
            return client
        store_dir.mkdir(parents=True, exist_ok=True)
        lock.claim(store_dir)  # before Chroma reads a byte: a second process would overwrite the index
        problem = health.damaged_files(store_dir)
        if problem:  # opened as it is, Chroma would start a new, empty database over the old index
            raise StoreDamagedError(f"{problem} {health.REPAIR_HINT}")
        return chromadb.PersistentClient(path=str(store_dir), settings=_chroma_settings())
    except StudioError:
        raise
    except Exception as exc:
        where = f"the Chroma server at {chroma_url}" if chroma_url else f"the store in {store_dir}"
        hint = (
            "Start it with `chroma run --path DIR --host 127.0.0.1 --port PORT`, or unset STUDIO_CHROMA_URL."
            if chroma_url
            else "Check that the folder is writable and not used by another Chroma version."
        )
        raise StoreUnavailableError(f"Could not open {where} ({type(exc).__name__}: {exc}). {hint}") from exc


class PromptStore:
    """Chroma collections for one CLIP model; refuses stores built with another model."""

    def __init__(self, client: Any, clip_model: str, dim: int, create: bool = True, fingerprint: str | None = None,
                 probe: Callable[[list[str]], np.ndarray] | None = None) -> None:
        """fingerprint: the CLIP's (studio.search.embed.fingerprint); an index made by another is refused.
        probe: the CLIP's text encoder, to check an index made before fingerprints were recorded."""
        self.client = client
        self.clip_model = clip_model
        self.dim = dim
        self.fingerprint = fingerprint
        self.probe = probe
        self.key = model_key(clip_model)
        self.names = {kind: f"{kind}__{self.key}" for kind in KINDS}
        self._check_model(create)
        self.collections = {kind: self._collection(kind, create) for kind in KINDS}
        self.max_batch = int(client.get_max_batch_size())

    # -- opening -------------------------------------------------------------------------
    def _check_model(self, create: bool) -> None:
        existing = {c.name: c for c in self.client.list_collections()}
        mine = existing.get(self.names["prompts"])
        if mine is not None:
            meta = mine.metadata or {}
            if int(meta.get("dim", self.dim)) != self.dim:
                raise StoreMismatchError(
                    f"This store's index for {self.key!r} holds {meta.get('dim')}-d vectors, but the CLIP model "
                    f"{self.clip_model!r} makes {self.dim}-d ones: the weights in that folder changed. "
                    f"Point STUDIO_HOME at a new folder, or restore the model that built it ({meta.get('clip_model')})."
                )
            self._check_fingerprint(mine)
            return
        others = [c.metadata or {} for name, c in existing.items() if name.startswith("prompts__")]
        if others and not create:
            made_by = ", ".join(sorted({f"{m.get('clip_model')} ({m.get('dim')}-d)" for m in others}))
            raise StoreMismatchError(
                f"This store was built with CLIP {made_by}, not {self.clip_model!r}. Set STUDIO_CLIP_MODEL to "
                f"that model to search it, or run `python -m studio ingest SOURCE` to build an index for "
                f"{self.clip_model!r} beside it (vectors of two models never mix)."
            )

    def _check_fingerprint(self, col: Any) -> None:
        """Same folder name is not same model: refuse an index another CLIP made. An index from before
        fingerprints is checked by re-encoding a few of its prompts, then gets this model's fingerprint."""
        meta = col.metadata or {}
        theirs = meta.get("fingerprint")
        if self.fingerprint is None or theirs == self.fingerprint:
            return
        if theirs is None:
            agree = self._probe(col)
            if agree is not None and agree < PROBE_AGREEMENT:
                raise StoreMismatchError(self._mismatch(meta, f"its stored vectors do not match what this model "
                                                              f"makes (similarity {agree:.2f} on its own prompts)"))
            for kind in KINDS:  # recorded now: the next open is a string compare
                other = self.client.get_or_create_collection(f"{kind}__{self.key}", embedding_function=None)
                other.modify(metadata={**(other.metadata or {}), "fingerprint": self.fingerprint})
            return
        raise StoreMismatchError(self._mismatch(meta, f"it was built by a CLIP with fingerprint {theirs}, and "
                                                      f"this one has {self.fingerprint}"))

    def _probe(self, col: Any) -> float | None:
        """The lowest cosine between a few stored prompt vectors and this model's vectors of their text."""
        if self.probe is None:
            return None
        got = col.get(limit=PROBE_RECORDS, include=["documents", "embeddings"])
        pairs = [(d, e) for d, e in zip(got.get("documents") or [], got.get("embeddings") if got.get("embeddings")
                                        is not None else []) if d]
        if not pairs:
            return None
        fresh = np.asarray(self.probe([d for d, _ in pairs]), np.float32)
        stored = np.asarray([e for _, e in pairs], np.float32)
        stored /= np.linalg.norm(stored, axis=1, keepdims=True).clip(1e-12)
        return float((fresh * stored).sum(axis=1).min())

    def _mismatch(self, meta: dict[str, Any], why: str) -> str:
        return (f"The index {self.names['prompts']!r} in this store was made with {meta.get('clip_model')!r}, but "
                f"STUDIO_CLIP_MODEL is {self.clip_model!r} with other weights: {why}. Vectors of two models never "
                f"mix, so nothing was changed. Point STUDIO_CLIP_MODEL back at the model that built it, or let the "
                f"new model build its own index beside the old: give its folder another name (for example "
                f"{self.key}-v2) and ingest again.")

    def check_aligned(self, name: str, dim: int, clip_model: str | None, fingerprint: str | None,
                      said_by: str) -> None:
        """Refuse a query encoder (the multilingual one) whose vectors are not in this index's CLIP space:
        another size, or distilled from another CLIP (by fingerprint where it gives one, else by name)."""
        off = "or unset STUDIO_MULTILINGUAL_MODEL to search with CLIP alone; nothing was searched"
        other = f"use a multilingual model distilled from {self.clip_model!r}"
        if dim != self.dim:
            raise StoreMismatchError(
                f"The multilingual model {name!r} makes {dim}-d vectors, but this store's index "
                f"{self.names['prompts']!r} holds CLIP {self.clip_model!r}'s {self.dim}-d ones: it was distilled "
                f"from another CLIP. {other[0].upper()}{other[1:]} (for openai/clip-vit-base-patch32: "
                f"sentence-transformers/clip-ViT-B-32-multilingual-v1), {off}.")
        if fingerprint and self.fingerprint:
            if fingerprint == self.fingerprint:
                return
            raise StoreMismatchError(
                f"The multilingual model {name!r} was distilled from a CLIP with fingerprint {fingerprint} "
                f"({clip_model}, as {said_by} says), but this store's vectors come from {self.clip_model!r} "
                f"(fingerprint {self.fingerprint}): its vectors would land in another space. Point STUDIO_CLIP_MODEL "
                f"at the CLIP it was distilled from, {other}, {off}.")
        if not clip_model:
            raise StoreMismatchError(
                f"The multilingual model {name!r} does not say which CLIP it was distilled from (no "
                f"clip_alignment.json in its folder, and not a model we know), so its vectors may not be in this "
                f"store's space. If it was distilled from this store's CLIP, set STUDIO_MULTILINGUAL_CLIP="
                f"{self.clip_model}; else {other}, {off}.")
        if model_key(clip_model) != self.key:
            raise StoreMismatchError(
                f"The multilingual model {name!r} was distilled from {clip_model!r} (as {said_by} says), but this "
                f"store's vectors come from CLIP {self.clip_model!r}: its vectors would land in another space. Set "
                f"STUDIO_CLIP_MODEL={clip_model} to search that CLIP's index, {other}, {off}. If {self.clip_model!r} "
                f"is that same model under another name, set STUDIO_MULTILINGUAL_CLIP={self.clip_model}.")

    def _collection(self, kind: str, create: bool) -> Any:
        name = self.names[kind]
        if not create:
            try:
                return deepen(self.client.get_collection(name, embedding_function=None))
            except Exception:
                pass  # empty store: create it (nothing to mismatch with)
        col = self.client.get_or_create_collection(
            name,
            configuration={"hnsw": HNSW},
            embedding_function=None,
            metadata={"clip_model": self.clip_model, "dim": self.dim, "schema": SCHEMA, "kind": kind,
                      **({"fingerprint": self.fingerprint} if self.fingerprint else {})},
        )
        counts.start(col)
        if kind == "images":
            newest.start(col)
        return deepen(col)

    # -- writing -------------------------------------------------------------------------
    def upsert(
        self,
        kind: str,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
        documents: Sequence[str] | None = None,
    ) -> None:
        col = self.collections[kind]
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            col.upsert(
                ids=list(ids[start:end]),
                embeddings=np.asarray(embeddings[start:end], dtype=np.float32),
                metadatas=[_clean(m) for m in metadatas[start:end]],
                documents=list(documents[start:end]) if documents is not None else None,
            )

    def add(self, kind: str, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict[str, Any]],
            documents: Sequence[str] | None = None) -> None:
        """Records not stored before (the ingest pipeline checked): added, then counted by source."""
        with counts.LOCK:
            col = self.collections[kind]
            for start in range(0, len(ids), self.max_batch):
                end = start + self.max_batch
                col.add(ids=list(ids[start:end]), embeddings=np.asarray(embeddings[start:end], dtype=np.float32),
                        metadatas=[_clean(m) for m in metadatas[start:end]],
                        documents=list(documents[start:end]) if documents is not None else None)
            counts.add(self.client, self.names[kind], (m.get("source") for m in metadatas))
            if kind == "images":  # History's newest first, by when each was made
                newest.note(self.client, self.names[kind], ids, metadatas)

    def flush_counts(self) -> None:
        """Write the counts added since the last write (an ingest calls this when it ends)."""
        with counts.LOCK:
            for name in self.names.values():
                counts.flush(self.client, name)

    def delete(self, kind: str, ids: Sequence[str]) -> None:
        """Records removed, and uncounted from their sources."""
        with counts.LOCK:
            gone = self.get(kind, ids)
            if gone:
                self.collections[kind].delete(ids=[r.id for r in gone])
                counts.remove(self.client, self.names[kind], (r.metadata.get("source") for r in gone))
                if kind == "images":
                    newest.forget(self.client, self.names[kind], [r.id for r in gone])

    def update_metadata(self, kind: str, ids: Sequence[str], metadatas: Sequence[dict[str, Any]],
                        drop: Sequence[str] = (), was: Sequence[Any] | None = None) -> None:
        """Chroma merges metadata: keys not given stay; `drop` names keys to remove. `was`: the records'
        sources before, when this update changes them (the counters move from the old source to the new)."""
        col = self.collections[kind]
        gone = dict.fromkeys(drop)
        with counts.LOCK:
            for start in range(0, len(ids), self.max_batch):
                end = start + self.max_batch
                col.update(ids=list(ids[start:end]),
                           metadatas=[{**gone, **_clean(m)} for m in metadatas[start:end]])
            if was is not None:
                counts.remove(self.client, self.names[kind], was)
                counts.add(self.client, self.names[kind], (m.get("source") for m in metadatas))
                counts.flush(self.client, self.names[kind])

    # -- reading -------------------------------------------------------------------------
    def get(self, kind: str, ids: Iterable[str] | None = None, where: dict | None = None,
            limit: int | None = None, embeddings: bool = False, offset: int | None = None) -> list[Record]:
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        ids = list(ids) if ids is not None else None
        if ids is not None and not ids:
            return []
        records: list[Record] = []
        col = self.collections[kind]
        chunks = [ids[i : i + self.max_batch] for i in range(0, len(ids), self.max_batch)] if ids else [None]
        for chunk in chunks:
            got = col.get(ids=chunk, where=where, limit=limit, offset=offset, include=include)
            for i, rid in enumerate(got["ids"]):
                rec = Record(rid, (got.get("documents") or [None] * len(got["ids"]))[i], got["metadatas"][i] or {})
                if embeddings:
                    rec.metadata = dict(rec.metadata, _embedding=np.asarray(got["embeddings"][i], np.float32))
                records.append(rec)
        return records

    def existing_ids(self, kind: str, ids: Sequence[str]) -> set[str]:
        col = self.collections[kind]
        found: set[str] = set()
        for start in range(0, len(ids), self.max_batch):
            found.update(col.get(ids=list(ids[start : start + self.max_batch]), include=[])["ids"])
        return found

    def query(self, kind: str, vector: np.ndarray, n: int, where: dict | None = None) -> list[Record]:
        col = self.collections[kind]
        # Chroma returns fewer than n_results when it holds fewer: no count() (a scan) per query.
        res = col.query(
            query_embeddings=np.asarray(vector, np.float32).reshape(1, -1),
            n_results=max(1, n),
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        docs = (res.get("documents") or [[None] * len(res["ids"][0])])[0]
        return [
            Record(rid, docs[i], res["metadatas"][0][i] or {}, float(res["distances"][0][i]))
            for i, rid in enumerate(res["ids"][0])
        ]

    def newest_generated(self, rebuild: bool = False) -> list[str]:
        """Ids of our generations, newest first by when each was made (at most newest.KEEP), from the writers'
        index: one metadata read. Rebuilt by one scan when missing (a store from before it), behind the counts (a
        process killed between its write and the index's), or when asked (rebuild: the ids read went stale)."""
        name = self.names["images"]
        with counts.LOCK:
            kept = newest.read(self.client, name)
        _, by_source, exact = counts.read(self.client, name)
        behind = kept is None or not exact or (kept[0] and len(kept[1]) != by_source.get(newest.SOURCE, 0))
        if behind or rebuild or kept is None:
            with counts.LOCK:
                return newest.rebuild(self.client.get_collection(name, embedding_function=None))
        return kept[1]

    def count(self, kind: str, where: dict | None = None) -> int:
        col = self.collections[kind]
        if where is None:
            return int(col.count())
        return len(col.get(where=where, include=[])["ids"])


def deepen(col: Any) -> Any:
    """A collection made with a shallower ef_search (by an older studio, or Chroma's default 100) gets
    HNSW's: it is saved, and an index loads with it (one already loaded keeps its own until reopened).
    The graph's max_neighbors and ef_construction are fixed when a collection is made."""
    try:
        current = int(((col.configuration or {}).get("hnsw") or {}).get("ef_search") or 0)
        if current < HNSW["ef_search"]:
            col.modify(configuration={"hnsw": {"ef_search": HNSW["ef_search"]}})
    except Exception:  # a server too old to change it: searches still work, at its depth
        pass
    return col


def _clean(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma keeps str, int, float and bool: drop None and NaN, turn numpy scalars into Python ones."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None or key.startswith("_"):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value != value:  # NaN
            continue
        out[key] = value
    return out
